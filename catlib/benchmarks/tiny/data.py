"""Procedural 32x32 RGB tasks of the tiny benchmark, and the pretraining source.

Eight tasks, each an analogue of one of the paper's eight vision datasets, each with its own visual statistics
(renderer, palette, background, scale), as the real datasets have:

============  ==========  =======  =============================================================================
task          analogue    classes  what an image is
============  ==========  =======  =============================================================================
scenes        SUN397      20       a landscape: sky (day, dusk, night, overcast) x ground (grass, sand, snow,
                                   water, city), with clutter (clouds, trees, buildings)
vehicles      Cars        12       side view of a vehicle body type on a road, random paint, scale and facing
aerial        RESISC45    15       crisp top-down geometric scene (farmland, runway, parking lot, ...), any
                                   rotation
landcover     EuroSAT     10       blurry low-resolution satellite tile with a "multispectral" palette
streetnum     SVHN        10       a font digit in the centre of a coloured crop, neighbouring digits and clutter
signs         GTSRB       32       a traffic sign (shape x colour scheme x pictogram) on a blurred street backdrop
handwritten   MNIST       10       sklearn's real 8x8 handwritten digits, upscaled, white on black
textures      DTD         24       procedural textures (striped, honeycombed, cracked, ...), random palette/rotation
============  ==========  =======  =============================================================================

Everything is deterministic given the seed. Images are ``uint8`` arrays ``(N, 32, 32, 3)``; labels ``int64``.

The pretraining source (:func:`make_source`) renders glyphs (Latin, Greek, Cyrillic letters, symbols and shapes:
none of the tasks' classes) in a mixture of all the tasks' styles, with the foreground and background colours as
regression targets, so the pretrained encoder sees colour, texture and layout primitives the tasks share.
"""

from __future__ import annotations

import functools
import os
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

S = 32  # image side

# ------------------------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------------------------


def _font_dir() -> str:
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


FONT_FILES = [
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
]
DEJAVU = FONT_FILES[:9]


@functools.lru_cache(maxsize=None)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(os.path.join(_font_dir(), name), size)


@functools.lru_cache(maxsize=None)
def _cmap(name: str) -> frozenset:
    from fontTools.ttLib import TTFont

    return frozenset(TTFont(os.path.join(_font_dir(), name)).getBestCmap().keys())


def _fonts_for(text: str, fonts=FONT_FILES) -> List[str]:
    return [f for f in fonts if all(ord(c) in _cmap(f) for c in text)]


def _glyph_mask(text: str, font: str, size: int, rot: float = 0.0, box: int = 48) -> Image.Image:
    m = Image.new("L", (box, box), 0)
    ImageDraw.Draw(m).text((box / 2, box / 2), text, font=_font(font, size), fill=255, anchor="mm")
    if rot:
        m = m.rotate(rot, resample=Image.BILINEAR)
    return m


def _paste_glyph(img: Image.Image, text: str, font: str, size: int, cx: float, cy: float, color, rot=0.0):
    box = 48 if size <= 30 else 64
    m = _glyph_mask(text, font, size, rot, box)
    img.paste(tuple(int(c) for c in color), (int(round(cx - box / 2)), int(round(cy - box / 2))), m)


def _rgb(rng, lo=0, hi=255):
    return rng.integers(lo, hi + 1, size=3)


def _contrasting(rng, c, min_dist=150):
    for _ in range(50):
        d = _rgb(rng)
        if np.abs(d.astype(int) - np.asarray(c, int)).sum() >= min_dist:
            return d
    return 255 - np.asarray(c)


def _jitter(rng, c, amount=25):
    return np.clip(np.asarray(c, float) + rng.normal(0, amount, 3), 0, 255)


def _upsample(a: np.ndarray, size: int = S, resample=Image.BILINEAR) -> np.ndarray:
    """(h, w, 3) float 0..255 -> (size, size, 3) float."""
    a8 = np.clip(a, 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(a8).resize((size, size), resample), dtype=np.float32)


def _noise_field(rng, res: int, size: int = S) -> np.ndarray:
    """smooth noise in [0, 1], (size, size)."""
    a = rng.random((res, res)) * 255
    img = Image.fromarray(a.astype(np.uint8)).resize((size, size), Image.BICUBIC)
    return np.asarray(img, np.float32) / 255.0


def _mix(mask: np.ndarray, c0, c1) -> np.ndarray:
    m = mask[..., None]
    return (1 - m) * np.asarray(c0, np.float32) + m * np.asarray(c1, np.float32)


def _gradient(rng, c0, c1, size=S, angle=None):
    angle = rng.uniform(0, 2 * np.pi) if angle is None else angle
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    t = (np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5)) / 0.71 * 0.5 + 0.5
    return _mix(np.clip(t, 0, 1), c0, c1)


def _finish(a: np.ndarray, rng, noise=4.0, bright=(0.85, 1.15)) -> np.ndarray:
    a = np.asarray(a, np.float32) * rng.uniform(*bright) + rng.normal(0, noise, a.shape)
    return np.clip(a, 0, 255).astype(np.uint8)


def _to_np(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32)


# ------------------------------------------------------------------------------------------------------------------
# task renderers: f(rng, label) -> uint8 (32, 32, 3)
# ------------------------------------------------------------------------------------------------------------------

# --- scenes (SUN397) ---------------------------------------------------------------------------------------------
SKIES = ["day", "dusk", "night", "overcast"]
GROUNDS = ["grassland", "beach", "snowfield", "lake", "city"]
SCENE_CLASSES = [f"{s} {g}" for s in SKIES for g in GROUNDS]


def render_scene(rng, label):
    sky, ground = SKIES[label // len(GROUNDS)], GROUNDS[label % len(GROUNDS)]
    H = int(rng.integers(11, 22))
    sky_cols = {
        "day": ((90, 150, 235), (170, 210, 250)),
        "dusk": ((90, 50, 120), (250, 150, 70)),
        "night": ((5, 10, 40), (30, 40, 90)),
        "overcast": ((140, 140, 150), (190, 190, 195)),
    }[sky]
    img = _gradient(rng, _jitter(rng, sky_cols[0], 15), _jitter(rng, sky_cols[1], 15), angle=np.pi / 2)
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(pil)
    if sky == "night":
        for _ in range(int(rng.integers(3, 10))):
            x, y = rng.integers(0, S), rng.integers(0, H)
            d.point((int(x), int(y)), fill=(255, 255, 220))
        if rng.random() < 0.5:
            x, y = rng.integers(3, 29), rng.integers(2, max(3, H - 3))
            d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(240, 240, 210))
    elif sky == "day" and rng.random() < 0.5:
        x, y = rng.integers(3, 29), rng.integers(2, max(3, H - 3))
        d.ellipse([x - 2, y - 2, x + 3, y + 3], fill=(255, 245, 170))
    if sky in ("day", "overcast"):
        for _ in range(int(rng.integers(0, 4 if sky == "day" else 6))):
            x, y, w = rng.integers(-4, 30), rng.integers(0, max(1, H - 4)), rng.integers(5, 12)
            g = int(rng.integers(215, 250)) if sky == "day" else int(rng.integers(110, 170))
            d.ellipse([x, y, x + w, y + w // 2 + 1], fill=(g, g, g))
    gcol = {
        "grassland": (70, 140, 50),
        "beach": (225, 205, 150),
        "snowfield": (235, 240, 250),
        "lake": (40, 90, 160),
        "city": (95, 95, 100),
    }[ground]
    if sky == "night":
        gcol = tuple(int(c * 0.35) for c in gcol)
    elif sky == "dusk":
        gcol = tuple(int(c * 0.7 + 20) for c in gcol)
    if ground == "city":
        x = int(rng.integers(-3, 2))
        while x < S:
            w, h = int(rng.integers(3, 7)), int(rng.integers(4, 15))
            g = int(rng.integers(50, 130)) * (0.5 if sky == "night" else 1.0)
            d.rectangle([x, H - h, x + w - 1, H], fill=(int(g), int(g), int(g * 1.05)))
            if sky in ("night", "dusk"):
                for _ in range(int(rng.integers(0, 4))):
                    d.point((x + int(rng.integers(0, w)), H - int(rng.integers(1, h + 1))), fill=(250, 220, 120))
            x += w + int(rng.integers(0, 3))
    d.rectangle([0, H, S, S], fill=tuple(int(c) for c in _jitter(rng, gcol, 12)))
    if ground == "lake":
        for _ in range(int(rng.integers(3, 8))):
            y, x, w = rng.integers(H + 1, S), rng.integers(-5, 28), rng.integers(3, 10)
            c = tuple(int(min(255, v + 50)) for v in gcol)
            d.line([int(x), int(y), int(x + w), int(y)], fill=c)
        if rng.random() < 0.6:  # far shore
            d.rectangle([0, H, S, H + 1], fill=(60, 100, 50) if sky != "night" else (20, 30, 20))
    if ground == "grassland":
        for _ in range(int(rng.integers(0, 5))):
            x, y = int(rng.integers(0, 32)), int(rng.integers(H - 2, S))
            h = int(rng.integers(4, 9))
            c = (20, 90, 30) if sky != "night" else (10, 30, 12)
            d.polygon([(x, y - h), (x - h // 2 - 1, y), (x + h // 2 + 1, y)], fill=c)
    if ground == "beach":
        y = int(rng.integers(H + 2, S - 3))
        d.rectangle([0, H, S, y], fill=(40, 110, 170) if sky != "night" else (10, 30, 60))
    if ground == "snowfield":
        for _ in range(int(rng.integers(0, 3))):
            x = int(rng.integers(0, 32))
            h = int(rng.integers(5, 12))
            d.polygon([(x, H - h), (x - h, H), (x + h, H)], fill=(200, 205, 220) if sky != "night" else (60, 60, 80))
    a = _to_np(pil)
    a = a + (_noise_field(rng, 8)[..., None] - 0.5) * 30
    return _finish(a, rng, noise=5)


# --- vehicles (Cars) ---------------------------------------------------------------------------------------------
# body outline (x, y) in a unit box, y down; wheels: list of (x, radius); all facing right
VEHICLES: Dict[str, Tuple[list, list]] = {
    "sedan": (
        [
            (0, 0.55),
            (0.05, 0.42),
            (0.27, 0.38),
            (0.37, 0.12),
            (0.68, 0.12),
            (0.8, 0.38),
            (1, 0.45),
            (1, 0.75),
            (0, 0.75),
        ],
        [(0.2, 0.13), (0.8, 0.13)],
    ),
    "hatchback": (
        [(0, 0.5), (0.05, 0.4), (0.3, 0.35), (0.42, 0.08), (0.9, 0.08), (1, 0.35), (1, 0.75), (0, 0.75)],
        [(0.2, 0.14), (0.82, 0.14)],
    ),
    "wagon": (
        [(0, 0.5), (0.05, 0.4), (0.25, 0.35), (0.35, 0.1), (1, 0.1), (1, 0.75), (0, 0.75)],
        [(0.18, 0.13), (0.82, 0.13)],
    ),
    "coupe": (
        [(0, 0.6), (0.1, 0.5), (0.35, 0.45), (0.5, 0.2), (0.7, 0.2), (0.9, 0.5), (1, 0.55), (1, 0.75), (0, 0.75)],
        [(0.2, 0.12), (0.8, 0.12)],
    ),
    "pickup": (
        [(0, 0.45), (0.05, 0.35), (0.25, 0.3), (0.3, 0.05), (0.5, 0.05), (0.52, 0.38), (1, 0.38), (1, 0.75), (0, 0.75)],
        [(0.18, 0.14), (0.8, 0.14)],
    ),
    "van": ([(0, 0.45), (0.12, 0.05), (1, 0.05), (1, 0.75), (0, 0.75)], [(0.2, 0.13), (0.8, 0.13)]),
    "bus": ([(0, 0.08), (1, 0.08), (1, 0.78), (0, 0.78)], [(0.15, 0.11), (0.8, 0.11)]),
    "box truck": (
        [(0, 0.35), (0.05, 0.25), (0.22, 0.25), (0.25, 0.0), (1, 0.0), (1, 0.75), (0, 0.75)],
        [(0.14, 0.12), (0.68, 0.12), (0.86, 0.12)],
    ),
    "sports car": (
        [(0, 0.65), (0.3, 0.55), (0.45, 0.38), (0.65, 0.38), (0.85, 0.55), (1, 0.62), (1, 0.78), (0, 0.78)],
        [(0.2, 0.11), (0.82, 0.11)],
    ),
    "suv": (
        [(0, 0.4), (0.05, 0.3), (0.2, 0.28), (0.28, 0.02), (0.95, 0.02), (1, 0.25), (1, 0.72), (0, 0.72)],
        [(0.2, 0.16), (0.8, 0.16)],
    ),
    "limousine": (
        [(0, 0.55), (0.04, 0.45), (0.15, 0.42), (0.22, 0.2), (0.82, 0.2), (0.9, 0.42), (1, 0.48), (1, 0.75), (0, 0.75)],
        [(0.1, 0.1), (0.9, 0.1)],
    ),
    "tractor": (
        [(0, 0.5), (0.45, 0.5), (0.5, 0.0), (0.85, 0.0), (0.85, 0.4), (1, 0.45), (1, 0.7), (0, 0.7)],
        [(0.18, 0.12), (0.72, 0.28)],
    ),
}
VEHICLE_CLASSES = list(VEHICLES)
VEHICLE_ASPECT = {
    "bus": 0.42,
    "box truck": 0.5,
    "limousine": 0.28,
    "van": 0.5,
    "suv": 0.48,
    "tractor": 0.6,
    "sports car": 0.3,
}


# body length in pixels (bus, limousine, box truck: 26-31). Version 1 drew 22-30: the small cars lost the outline
# details that tell a coupe from a sports car at 32x32 (Individual 73%, below Cars' ~78% with ViT-B/32).
VEHICLE_WIDTH = (25, 31)


def render_vehicle(rng, label):
    name = VEHICLE_CLASSES[label]
    body, wheels = VEHICLES[name]
    horizon = int(rng.integers(8, 16))
    sky = _gradient(rng, _jitter(rng, (150, 190, 230), 30), _jitter(rng, (210, 220, 235), 20), angle=np.pi / 2)
    road = np.asarray(_jitter(rng, (110, 110, 115), 20))
    a = sky.copy()
    a[horizon:] = road + (_noise_field(rng, 12)[horizon:, :, None] - 0.5) * 25
    a[horizon : horizon + 2] = _jitter(rng, (80, 130, 70), 20)
    pil = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(pil)
    W = (
        float(rng.uniform(*VEHICLE_WIDTH))
        if name not in ("bus", "limousine", "box truck")
        else float(rng.uniform(26, 31))
    )
    Hh = W * VEHICLE_ASPECT.get(name, 0.36) * rng.uniform(0.92, 1.08)
    x0 = rng.uniform(0, max(0.1, S - W)) if W < S else (S - W) / 2
    base = rng.uniform(24, 30)
    y0 = base - Hh
    flip = rng.random() < 0.5
    fx = (lambda u: x0 + (1 - u) * W) if flip else (lambda u: x0 + u * W)
    paint = tuple(int(c) for c in _rgb(rng, 20, 235))
    d.polygon([(fx(u), y0 + v * Hh) for u, v in body], fill=paint)
    # windows: a band under the roof, lighter
    win = (170, 200, 225) if rng.random() < 0.8 else (60, 70, 80)
    top = min(v for _, v in body)
    if name not in ("tractor",):
        pts = [(u, v) for u, v in body if v <= top + 0.05]
        if len(pts) >= 2:
            us = [u for u, _ in pts]
            ua, ub = min(us) + 0.04, max(us) - 0.04
            d.rectangle(
                [
                    min(fx(ua), fx(ub)),
                    y0 + (top + 0.08) * Hh,
                    max(fx(ua), fx(ub)),
                    y0 + (top + 0.08) * Hh + max(1.5, 0.18 * Hh),
                ],
                fill=win,
            )
    for u, r in wheels:
        rr = r * W * 0.5 + 1.2
        cx, cy = fx(u), y0 + 0.75 * Hh
        d.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=(20, 20, 20))
        d.ellipse([cx - rr / 2.5, cy - rr / 2.5, cx + rr / 2.5, cy + rr / 2.5], fill=(170, 170, 170))
    return _finish(_to_np(pil), rng, noise=4)


# --- aerial (RESISC45) -------------------------------------------------------------------------------------------
AERIAL_CLASSES = [
    "farmland",
    "circular farmland",
    "sparse residential",
    "dense residential",
    "forest",
    "lake",
    "river",
    "freeway",
    "intersection",
    "parking lot",
    "runway",
    "beach",
    "desert",
    "harbor",
    "roundabout",
]


def render_aerial(rng, label):
    name = AERIAL_CLASSES[label]
    B = 48
    grass = tuple(int(c) for c in _jitter(rng, (95, 135, 70), 18))
    pil = Image.new("RGB", (B, B), grass)
    d = ImageDraw.Draw(pil)
    road = tuple(int(c) for c in _jitter(rng, (120, 120, 120), 15))
    water = tuple(int(c) for c in _jitter(rng, (40, 85, 130), 15))
    sand = tuple(int(c) for c in _jitter(rng, (215, 195, 145), 15))
    if name == "farmland":
        w = int(rng.integers(4, 9))
        x = 0
        while x < B:
            c = tuple(
                int(v) for v in _jitter(rng, [(150, 170, 80), (170, 140, 90), (90, 140, 60)][rng.integers(3)], 15)
            )
            d.rectangle([x, 0, x + w - 1, B], fill=c)
            x += w
    elif name == "circular farmland":
        pil.paste((165, 150, 110), (0, 0, B, B))
        for cx in (12, 36):
            for cy in (12, 36):
                r = int(rng.integers(8, 12))
                c = tuple(int(v) for v in _jitter(rng, (90, 150, 70), 25))
                d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=c)
    elif name in ("sparse residential", "dense residential"):
        dense = name.startswith("dense")
        step = 7 if dense else 12
        for y in range(0, B, 16 if not dense else 12):
            d.rectangle([0, y, B, y + 2], fill=road)
        for y in range(4, B, 16 if not dense else 12):
            for x in range(int(rng.integers(0, 4)), B, step):
                if dense or rng.random() < 0.6:
                    rc = tuple(
                        int(v)
                        for v in _jitter(rng, [(170, 80, 60), (150, 150, 150), (200, 190, 170)][rng.integers(3)], 15)
                    )
                    d.rectangle([x, y, x + 4, y + 5], fill=rc)
    elif name == "forest":
        pil.paste(tuple(int(c) for c in _jitter(rng, (40, 80, 40), 10)), (0, 0, B, B))
        for _ in range(120):
            x, y, r = rng.integers(0, B), rng.integers(0, B), rng.integers(2, 5)
            c = tuple(int(v) for v in _jitter(rng, (50, 100, 45), 20))
            d.ellipse([int(x - r), int(y - r), int(x + r), int(y + r)], fill=c)
    elif name == "lake":
        pts = [
            (24 + np.cos(t) * rng.uniform(10, 18), 24 + np.sin(t) * rng.uniform(10, 18))
            for t in np.linspace(0, 2 * np.pi, 10, endpoint=False)
        ]
        d.polygon(pts, fill=water)
    elif name == "river":
        y = rng.uniform(15, 33)
        ph = rng.uniform(0, 6)
        w = rng.uniform(3, 6)
        pts = [(x, y + 6 * np.sin(x / 8 + ph)) for x in range(0, B + 1, 2)]
        d.line(pts, fill=water, width=int(w * 2))
    elif name == "freeway":
        d.rectangle([16, 0, 31, B], fill=road)
        d.rectangle([23, 0, 24, B], fill=(90, 110, 70))
        for y in range(0, B, 6):
            d.line([(19, y), (19, y + 2)], fill=(230, 230, 230))
            d.line([(28, y), (28, y + 2)], fill=(230, 230, 230))
    elif name == "intersection":
        d.rectangle([19, 0, 28, B], fill=road)
        d.rectangle([0, 19, B, 28], fill=road)
        for y in range(0, B, 5):
            if not 18 < y < 29:
                d.point((24, y), fill=(230, 230, 230))
                d.point((y, 24), fill=(230, 230, 230))
    elif name == "parking lot":
        pil.paste(road, (0, 0, B, B))
        for y in range(2, B, 9):
            for x in range(1, B, 4):
                if rng.random() < 0.75:
                    d.rectangle([x, y, x + 2, y + 5], fill=tuple(int(c) for c in _rgb(rng, 30, 240)))
    elif name == "runway":
        pil.paste(tuple(int(c) for c in _jitter(rng, (150, 150, 110), 15)), (0, 0, B, B))
        d.rectangle([17, 0, 30, B], fill=tuple(int(c) * 7 // 10 for c in road))
        for y in range(0, B, 8):
            d.rectangle([23, y, 24, y + 4], fill=(240, 240, 240))
        d.rectangle([5, 0, 7, B], fill=road)
    elif name == "beach":
        pil.paste(sand, (0, 0, B, B))
        x0 = rng.uniform(18, 30)
        ph = rng.uniform(0, 6)
        pts = [(x0 + 3 * np.sin(y / 5 + ph), y) for y in range(0, B + 1, 2)] + [(B, B), (B, 0)]
        d.polygon(pts, fill=water)
        d.line([(x0 + 3 * np.sin(y / 5 + ph), y) for y in range(0, B + 1, 2)], fill=(235, 240, 245), width=2)
    elif name == "desert":
        pil.paste(sand, (0, 0, B, B))
        ph, f = rng.uniform(0, 6), rng.uniform(0.25, 0.45)
        for y0 in range(-6, B, 7):
            pts = [(x, y0 + 3 * np.sin(f * x + ph + y0)) for x in range(0, B + 1, 2)]
            d.line(pts, fill=tuple(int(c * 0.8) for c in sand), width=2)
    elif name == "harbor":
        pil.paste(water, (0, 0, B, B))
        d.rectangle([0, 0, B, 8], fill=road)
        for x in range(4, B, 10):
            d.rectangle([x, 8, x + 2, 36], fill=(200, 200, 200))
            for y in range(12, 34, 6):
                if rng.random() < 0.7:
                    d.rectangle([x + 4, y, x + 7, y + 3], fill=(240, 240, 240))
    elif name == "roundabout":
        d.rectangle([21, 0, 26, B], fill=road)
        d.rectangle([0, 21, B, 26], fill=road)
        d.ellipse([12, 12, 36, 36], fill=road)
        d.ellipse([18, 18, 30, 30], fill=tuple(int(c) for c in _jitter(rng, (70, 140, 60), 10)))
    pil = pil.rotate(float(rng.uniform(0, 360)), resample=Image.BILINEAR)
    sc = rng.uniform(0.85, 1.15)
    c = int(round(S * sc / 2))
    pil = pil.crop((24 - c, 24 - c, 24 + c, 24 + c)).resize((S, S), Image.BILINEAR)
    return _finish(_to_np(pil), rng, noise=3)


# --- landcover (EuroSAT) -----------------------------------------------------------------------------------------
LANDCOVER_CLASSES = [
    "annual crop",
    "forest",
    "herbaceous vegetation",
    "highway",
    "industrial",
    "pasture",
    "permanent crop",
    "residential",
    "river",
    "sea or lake",
]


def render_landcover(rng, label):
    name = LANDCOVER_CLASSES[label]
    R = 16
    n = _noise_field(rng, 6, R)
    fine = rng.random((R, R)).astype(np.float32)
    y, x = np.mgrid[0:R, 0:R].astype(np.float32)
    th = rng.uniform(0, np.pi)
    u = np.cos(th) * x + np.sin(th) * y
    v = -np.sin(th) * x + np.cos(th) * y
    green = _jitter(rng, (75, 105, 60), 12)
    if name == "annual crop":
        a = _mix(
            (np.sin(u * rng.uniform(0.8, 1.2)) > 0).astype(np.float32) * 0.8 + fine * 0.2,
            _jitter(rng, (150, 130, 95), 15),
            _jitter(rng, (120, 145, 75), 15),
        )
    elif name == "forest":
        a = _mix(n * 0.5 + fine * 0.5, _jitter(rng, (25, 55, 30), 8), _jitter(rng, (45, 85, 45), 8))
    elif name == "herbaceous vegetation":
        a = _mix(n * 0.6 + fine * 0.4, _jitter(rng, (95, 105, 60), 12), _jitter(rng, (140, 130, 85), 12))
    elif name == "highway":
        a = _mix(n * 0.6 + fine * 0.4, green, _jitter(rng, (130, 120, 90), 12))
        off = rng.uniform(-4, 4)
        road = (np.abs(v - (np.cos(th) * 8 * 0 + v.mean() + off)) < rng.uniform(0.7, 1.3)).astype(np.float32)
        a = a * (1 - road[..., None]) + road[..., None] * _jitter(rng, (165, 160, 160), 10)
    elif name == "industrial":
        a = np.zeros((R, R, 3), np.float32) + _jitter(rng, (130, 125, 120), 10)
        for _ in range(int(rng.integers(3, 7))):
            x0, y0, w, h = rng.integers(0, R, 4)
            a[y0 : y0 + 2 + h // 2, x0 : x0 + 2 + w // 2] = _jitter(rng, (200, 200, 205), 20)
        a += (fine[..., None] - 0.5) * 30
    elif name == "pasture":
        a = _mix(n * 0.8 + fine * 0.2, _jitter(rng, (105, 150, 70), 10), _jitter(rng, (130, 165, 90), 10))
    elif name == "permanent crop":
        dots = ((np.sin(u * 1.6) > 0.3) & (np.sin(v * 1.6) > 0.3)).astype(np.float32)
        a = _mix(dots * 0.8 + fine * 0.2, _jitter(rng, (150, 135, 95), 12), _jitter(rng, (60, 100, 50), 12))
    elif name == "residential":
        a = _mix((fine > 0.55).astype(np.float32), _jitter(rng, (150, 140, 130), 12), _jitter(rng, (180, 110, 95), 20))
        a = a * 0.8 + green * 0.2
    elif name == "river":
        a = _mix(n * 0.6 + fine * 0.4, green, _jitter(rng, (110, 125, 70), 10))
        c = v.mean() + rng.uniform(-3, 3) + 2.5 * np.sin(u / rng.uniform(2, 4) + rng.uniform(0, 6))
        riv = (np.abs(v - c) < rng.uniform(0.9, 1.6)).astype(np.float32)[..., None]
        a = a * (1 - riv) + riv * _jitter(rng, (45, 70, 95), 10)
    else:  # sea or lake
        a = _mix(n * 0.7 + fine * 0.3, _jitter(rng, (20, 45, 80), 10), _jitter(rng, (35, 70, 100), 10))
    a = _upsample(a, S)
    return _finish(a, rng, noise=3, bright=(0.8, 1.2))


# --- streetnum (SVHN) --------------------------------------------------------------------------------------------
DIGIT_CLASSES = [str(i) for i in range(10)]


def render_streetnum(rng, label):
    bg = _rgb(rng)
    fg = _contrasting(rng, bg, 180)
    a = _gradient(rng, _jitter(rng, bg, 20), _jitter(rng, bg, 40))
    pil = Image.fromarray(a.astype(np.uint8))
    font = DEJAVU[rng.integers(len(DEJAVU))]
    size = int(rng.integers(20, 30))
    cx, cy = 16 + rng.uniform(-2, 2), 16 + rng.uniform(-2, 2)
    sp = size * rng.uniform(0.55, 0.75)
    rot = rng.uniform(-8, 8)
    for k in (-1, 1):
        if rng.random() < 0.75:
            _paste_glyph(pil, str(rng.integers(10)), font, size, cx + k * sp, cy, fg, rot)
    _paste_glyph(pil, str(label), font, size, cx, cy, fg, rot)
    d = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(0, 3))):
        y = int(rng.integers(0, S))
        d.line([0, y, S, y + int(rng.integers(-4, 5))], fill=tuple(int(c) for c in _rgb(rng)), width=1)
    if rng.random() < 0.4:
        pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    return _finish(_to_np(pil), rng, noise=6)


# --- signs (GTSRB) -----------------------------------------------------------------------------------------------
_SIGN_SPEC = (
    [("circle", "prohibit", s) for s in ["20", "30", "50", "60", "70", "80", "100", "120"]]
    + [("circle", "prohibit", s) for s in ["⇄", "✕", "P", "⚡"]]
    + [("triangle", "warning", s) for s in ["!", "↯", "≈", "☂", "❄", "⚠", "↰", "≋"]]
    + [("circle", "mandatory", s) for s in ["↑", "→", "←", "↱", "↻", "⇡"]]
    + [
        ("octagon", "stop", ""),
        ("invtriangle", "yield", ""),
        ("diamond", "priority", ""),
        ("circle", "noentry", ""),
        ("square", "info", "P"),
        ("circle", "end", ""),
    ]
)
SIGN_CLASSES = [
    f"{kind} {sym}".strip()
    if kind not in ("stop", "yield", "priority", "noentry", "end")
    else {
        "stop": "stop",
        "yield": "yield",
        "priority": "priority road",
        "noentry": "no entry",
        "end": "end of restrictions",
    }[kind]
    for _, kind, sym in _SIGN_SPEC
]
SIGN_CLASSES = [n.replace("prohibit ", "limit ") if n.split(" ")[-1].isdigit() else n for n in SIGN_CLASSES]
SIGN_CLASSES = [n.replace("info P", "parking").replace("prohibit P", "no parking") for n in SIGN_CLASSES]


def _poly(shape, cx, cy, r):
    if shape == "triangle":
        ang = [-90, 30, 150]
    elif shape == "invtriangle":
        ang = [90, 210, 330]
    elif shape == "octagon":
        ang = [22.5 + 45 * k for k in range(8)]
    elif shape == "diamond":
        ang = [0, 90, 180, 270]
    else:  # square
        ang = [45, 135, 225, 315]
    return [(cx + r * np.cos(np.radians(a)), cy + r * np.sin(np.radians(a))) for a in ang]


def render_sign(rng, label):
    shape, kind, sym = _SIGN_SPEC[label]
    a = _upsample(rng.integers(40, 200, size=(4, 4, 3)).astype(np.float32), S, Image.BICUBIC)
    pil = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(pil)
    r = rng.uniform(9, 14)
    cx, cy = 16 + rng.uniform(-2.5, 2.5), 16 + rng.uniform(-2.5, 2.5)
    red, white, blue, yellow, black = (200, 30, 35), (245, 245, 245), (30, 70, 180), (245, 200, 30), (20, 20, 20)
    jit = lambda c: tuple(int(v) for v in _jitter(rng, c, 12))  # noqa: E731
    fg = black
    if shape == "circle":
        box = [cx - r, cy - r, cx + r, cy + r]
        if kind == "prohibit":
            d.ellipse(box, fill=jit(red))
            rr = r * 0.72
            d.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=jit(white))
        elif kind == "mandatory":
            d.ellipse(box, fill=jit(blue))
            fg = white
        elif kind == "noentry":
            d.ellipse(box, fill=jit(red))
            d.rectangle([cx - r * 0.7, cy - r * 0.18, cx + r * 0.7, cy + r * 0.18], fill=white)
        elif kind == "end":
            d.ellipse(box, fill=jit(white))
            d.line([cx - r * 0.7, cy + r * 0.7, cx + r * 0.7, cy - r * 0.7], fill=black, width=2)
    elif kind == "warning":
        d.polygon(_poly("triangle", cx, cy + r * 0.2, r * 1.1), fill=jit(red))
        d.polygon(_poly("triangle", cx, cy + r * 0.2, r * 0.7), fill=jit(white))
    elif kind == "stop":
        d.polygon(_poly("octagon", cx, cy, r), fill=jit(red))
        d.rectangle([cx - r * 0.6, cy - 1.5, cx + r * 0.6, cy + 1.5], fill=white)
    elif kind == "yield":
        d.polygon(_poly("invtriangle", cx, cy - r * 0.2, r * 1.1), fill=jit(red))
        d.polygon(_poly("invtriangle", cx, cy - r * 0.2, r * 0.65), fill=jit(white))
    elif kind == "priority":
        d.polygon(_poly("diamond", cx, cy, r), fill=jit(white))
        d.polygon(_poly("diamond", cx, cy, r * 0.7), fill=jit(yellow))
    elif kind == "info":
        d.polygon(_poly("square", cx, cy, r * 1.2), fill=jit(blue))
        fg = white
    if sym:
        fonts = _fonts_for(sym, DEJAVU[:2] + DEJAVU[7:9]) or _fonts_for(sym)
        size = int(r * (1.0 if len(sym) == 1 else (0.85 if len(sym) == 2 else 0.62)))
        if kind == "warning":
            size = int(r * 0.8)
        _paste_glyph(
            pil, sym, fonts[rng.integers(len(fonts))], size, cx, cy + (r * 0.3 if kind == "warning" else 0), fg
        )
        if kind == "prohibit" and not sym.isdigit():
            d.line([cx - r * 0.5, cy - r * 0.5, cx + r * 0.5, cy + r * 0.5], fill=red, width=2)
    if rng.random() < 0.5:
        pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return _finish(_to_np(pil), rng, noise=5, bright=(0.55, 1.25))


# --- handwritten (MNIST): sklearn digits -------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _sk_digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)


def render_handwritten_from(rng, img8: np.ndarray, augment: bool):
    big = Image.fromarray((img8 * 255).astype(np.uint8)).resize((20, 20), Image.BILINEAR)
    if augment:
        big = big.rotate(float(rng.uniform(-12, 12)), resample=Image.BILINEAR)
        s = int(rng.integers(18, 23))
        big = big.resize((s, s), Image.BILINEAR)
    canvas = Image.new("L", (S, S), 0)
    off = (S - big.size[0]) // 2
    dx, dy = rng.integers(-2, 3, 2) if augment else (0, 0)
    canvas.paste(big, (int(off + dx), int(off + dy)))
    a = np.asarray(canvas, np.float32)[..., None].repeat(3, axis=2)
    return np.clip(a, 0, 255).astype(np.uint8)


# --- textures (DTD) ----------------------------------------------------------------------------------------------
TEXTURE_CLASSES = [
    "banded",
    "striped",
    "zigzagged",
    "chequered",
    "grid",
    "crosshatched",
    "dotted",
    "polka-dotted",
    "bubbly",
    "honeycombed",
    "swirly",
    "spiralled",
    "marbled",
    "blotchy",
    "sprinkled",
    "veined",
    "cracked",
    "woven",
    "scaly",
    "wavy",
    "stratified",
    "fibrous",
    "pleated",
    "knitted",
]


# Version 1 drew periods of 4.5-7.5 px with any two colours 140 apart in L1: finer than an 8-px patch resolves and
# often nearly equal in luminance (Individual 55%, far below DTD's ~79% with ViT-B/32). Version 2: a coarser period
# and colours that differ in luminance (Individual 83%, θ0 40% as CLIP's ~44% zero-shot on DTD).
TEXTURE_PERIOD = (7.5, 12.0)  # pattern period in pixels
TEXTURE_LUM_CONTRAST = 80  # minimum luminance difference of the two colours


def render_texture(rng, label):
    name = TEXTURE_CLASSES[label]
    y, x = np.mgrid[0:S, 0:S].astype(np.float32)
    th = rng.uniform(0, 2 * np.pi)
    u = np.cos(th) * x + np.sin(th) * y + rng.uniform(0, 50)
    v = -np.sin(th) * x + np.cos(th) * y + rng.uniform(0, 50)
    p = rng.uniform(*TEXTURE_PERIOD)  # period in pixels
    tau = 2 * np.pi
    if name == "banded":
        m = (np.sin(tau * u / (p * 2.6)) > 0).astype(np.float32)
    elif name == "striped":
        m = (np.sin(tau * u / (p * 0.7)) > 0).astype(np.float32)
    elif name == "zigzagged":
        tri = np.abs(((v / p) % 2) - 1) * p
        m = (np.sin(tau * (u + tri) / p) > 0).astype(np.float32)
    elif name == "chequered":
        m = ((np.sin(tau * u / (2 * p)) > 0) ^ (np.sin(tau * v / (2 * p)) > 0)).astype(np.float32)
    elif name == "grid":
        m = ((np.abs(np.sin(np.pi * u / p)) < 0.25) | (np.abs(np.sin(np.pi * v / p)) < 0.25)).astype(np.float32)
    elif name == "crosshatched":
        a1, a2 = (u + v) / 1.41, (u - v) / 1.41
        m = ((np.abs(np.sin(np.pi * a1 / (p * 0.6))) < 0.3) | (np.abs(np.sin(np.pi * a2 / (p * 0.6))) < 0.3)).astype(
            np.float32
        )
    elif name == "dotted":
        m = (((u % p) - p / 2) ** 2 + ((v % p) - p / 2) ** 2 < 1.4).astype(np.float32)
    elif name == "polka-dotted":
        q = p * 1.8
        m = (((u % q) - q / 2) ** 2 + ((v % q) - q / 2) ** 2 < (q * 0.3) ** 2).astype(np.float32)
    elif name == "bubbly":
        m = np.zeros((S, S), np.float32)
        for _ in range(int(rng.integers(6, 12))):
            cx, cy, r = rng.uniform(0, S), rng.uniform(0, S), rng.uniform(2.5, 7)
            dd = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
            m = np.maximum(m, (np.abs(dd - r) < 0.8).astype(np.float32))
    elif name == "honeycombed":
        k = tau / (p * 1.2)
        h = sum(np.cos(k * (np.cos(a) * u + np.sin(a) * v)) for a in (0, tau / 3, 2 * tau / 3))
        m = (h < -0.6).astype(np.float32)
    elif name in ("swirly", "spiralled"):
        cx, cy = rng.uniform(8, 24, 2)
        r = np.sqrt((x - cx) ** 2 + (y - cy) ** 2) + 1e-3
        ang = np.arctan2(y - cy, x - cx)
        if name == "spiralled":
            m = (np.sin(ang * 2 + tau * r / p) > 0).astype(np.float32)
        else:
            m = (np.sin(tau * u / (p * 1.5) + 3 * np.sin(tau * v / (p * 3))) > 0).astype(np.float32) * 0 + (
                np.sin(3 * ang + 5 * np.sin(r / 3)) > 0
            ).astype(np.float32)
    elif name == "marbled":
        m = 0.5 + 0.5 * np.sin(tau * u / (p * 2) + 7 * _noise_field(rng, 4))
    elif name == "blotchy":
        m = (_noise_field(rng, 5) > 0.5).astype(np.float32)
    elif name == "sprinkled":
        m = (rng.random((S, S)) < 0.08).astype(np.float32)
    elif name == "veined":
        m = (np.abs(_noise_field(rng, 5) - 0.5) < 0.04).astype(np.float32)
    elif name == "cracked":
        pts = rng.uniform(-4, S + 4, size=(14, 2))
        dd = np.sort(np.sqrt((x[..., None] - pts[:, 0]) ** 2 + (y[..., None] - pts[:, 1]) ** 2), axis=-1)
        m = (dd[..., 1] - dd[..., 0] < 1.0).astype(np.float32)
    elif name == "woven":
        cu, cv = np.floor(u / p), np.floor(v / p)
        horiz = ((cu + cv) % 2) == 0
        m = np.where(horiz, np.sin(tau * v / (p / 2.5)) > 0, np.sin(tau * u / (p / 2.5)) > 0).astype(np.float32)
    elif name == "scaly":
        q = p * 1.3
        row = np.floor(v / q)
        uu = u + (row % 2) * q / 2
        dd = np.sqrt(((uu % q) - q / 2) ** 2 + (v % q) ** 2)
        m = (np.abs(dd - q * 0.55) < 0.7).astype(np.float32)
    elif name == "wavy":
        m = (np.sin(tau * u / p + 2.5 * np.sin(tau * v / (p * 3))) > 0).astype(np.float32)
    elif name == "stratified":
        m = ((v + 4 * _noise_field(rng, 4)) / (p * 1.3)) % 1.0
    elif name == "fibrous":
        pil = Image.new("L", (S, S), 0)
        dr = ImageDraw.Draw(pil)
        a0 = rng.uniform(0, np.pi)
        for _ in range(40):
            cx, cy = rng.uniform(0, S, 2)
            a = a0 + rng.normal(0, 0.25)
            L = rng.uniform(4, 10)
            dr.line([cx, cy, cx + L * np.cos(a), cy + L * np.sin(a)], fill=255)
        m = np.asarray(pil, np.float32) / 255
    elif name == "pleated":
        m = (u / (p * 1.2)) % 1.0
    else:  # knitted: rows of small chevrons
        q = p * 0.9
        m = (np.abs(((u / q) % 1.0) - 0.5) * 2 * q * 0.6 + (v % q) < q * 0.6).astype(np.float32)
    c0 = _rgb(rng)
    c1 = _contrasting_lum(rng, c0, TEXTURE_LUM_CONTRAST)
    a = _mix(np.clip(m, 0, 1).astype(np.float32), c0, c1)
    a = a * (0.85 + 0.3 * _noise_field(rng, 3)[..., None])
    return _finish(a, rng, noise=6)


# ------------------------------------------------------------------------------------------------------------------
# task table
# ------------------------------------------------------------------------------------------------------------------

TASKS: Dict[str, dict] = {
    "scenes": dict(
        analogue="SUN397",
        classes=SCENE_CLASSES,
        render=render_scene,
        description="landscapes: sky type x ground type, with clouds, trees, buildings and noise",
    ),
    "vehicles": dict(
        analogue="Stanford Cars",
        classes=VEHICLE_CLASSES,
        render=render_vehicle,
        version=2,
        description="side views of vehicle body types on a road; paint, size, position, facing vary",
    ),
    "aerial": dict(
        analogue="RESISC45",
        classes=AERIAL_CLASSES,
        render=render_aerial,
        description="crisp top-down geometric scenes at any rotation and a range of scales",
    ),
    "landcover": dict(
        analogue="EuroSAT",
        classes=LANDCOVER_CLASSES,
        render=render_landcover,
        description="blurry 16x16-resolution satellite tiles upsampled to 32x32, muted palette",
    ),
    "streetnum": dict(
        analogue="SVHN",
        classes=DIGIT_CLASSES,
        render=render_streetnum,
        description="centre font digit with neighbouring digits, clutter lines, blur, any colours",
    ),
    "signs": dict(
        analogue="GTSRB",
        classes=SIGN_CLASSES,
        render=render_sign,
        description="traffic signs (shape x colour scheme x pictogram) on blurred backdrops, strong brightness changes",
    ),
    "handwritten": dict(
        analogue="MNIST",
        classes=DIGIT_CLASSES,
        render=None,
        description="sklearn's real 8x8 handwritten digits upscaled, white on black; train "
        "images augmented (shift, rotation, scale), val/test originals held out",
    ),
    "textures": dict(
        analogue="DTD",
        classes=TEXTURE_CLASSES,
        render=render_texture,
        version=2,
        description="procedural textures with random two-colour palettes (contrasting in "
        "luminance), rotation and period (7.5-12 px)",
    ),
}
TASK_NAMES: List[str] = list(TASKS)
SOURCE_VERSION = 1  # bump when the pretraining source renderer changes (part of the pretraining stage's cache key)


def task_version(task: str) -> int:
    """The version of a task's renderer (``"version"`` in :data:`TASKS`, 1 if absent): bump it when the renderer
    changes, so cached data is regenerated; cached fine-tunes are keyed by the data's sha256."""
    return int(TASKS[task].get("version", 1))


def task_info() -> Dict[str, dict]:
    """name -> {name, analogue, n_classes, description, class_names} (what the book's table shows)."""
    return {
        t: dict(
            name=t,
            analogue=v["analogue"],
            n_classes=len(v["classes"]),
            description=v["description"],
            class_names=list(v["classes"]),
        )
        for t, v in TASKS.items()
    }


def _split_seed(seed: int, task: str, split: str) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, TASK_NAMES.index(task), ("train", "val", "test").index(split), 7919])


def generate_split(task: str, split: str, n: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """``n`` images of one task and split (class-balanced, shuffled), deterministic in (task, split, n, seed)."""
    spec = TASKS[task]
    C = len(spec["classes"])
    rng = np.random.default_rng(_split_seed(seed, task, split))
    if task == "handwritten":
        imgs8, tg = _sk_digits()
        # fixed disjoint partition of the 1797 originals: 60% train / 15% val / 25% test per class
        prng = np.random.default_rng(np.random.SeedSequence([seed, 1797]))
        part = {"train": [], "val": [], "test": []}
        for c in range(10):
            idx = prng.permutation(np.flatnonzero(tg == c))
            a, b = int(0.6 * len(idx)), int(0.75 * len(idx))
            part["train"] += list(idx[:a])
            part["val"] += list(idx[a:b])
            part["test"] += list(idx[b:])
        pool = np.array(sorted(part[split]))
        if split == "train":
            pick = pool[rng.integers(0, len(pool), n)]
            X = np.stack([render_handwritten_from(rng, imgs8[i], True) for i in pick])
        else:
            pick = pool[rng.permutation(len(pool))[:n]]
            X = np.stack([render_handwritten_from(rng, imgs8[i], False) for i in pick])
        return X, tg[pick].astype(np.int64)
    y = rng.permutation(np.arange(n) % C).astype(np.int64)
    X = np.stack([spec["render"](rng, int(c)) for c in y])
    return X, y


# ------------------------------------------------------------------------------------------------------------------
# pretraining source: glyphs and shapes (none of the tasks' classes) in all the tasks' styles
# ------------------------------------------------------------------------------------------------------------------

SOURCE_TEXT = (
    list("abcdefghijklmnopqrstuvwxyz")
    + list("ABDEFGHJKLMNQRTUVWXYZ")
    + list("αβγδεζηθλμξπρσφψω")
    + list("бгджзилфцчшщъыюя")
    + list("&@#$%?§¶∞♠♣♥♦★☺♪✓✗☀☎✿♞⌘Ω∑√∫")
)


def _source_fonts():
    return {t: _fonts_for(t) for t in SOURCE_TEXT}


def font_family(font: str) -> str:
    """``"DejaVuSans-BoldOblique.ttf"`` -> ``"DejaVuSans"``: the typeface without weight or slant (4 families)."""
    return font.split("-")[0].replace(".ttf", "").replace("Bol", "").replace("Italic", "")


# How a source image is labelled (``pretrain.labels``): "glyph", the shipped recipe (107 classes), or
# "glyph_family", the glyph and its typeface (DejaVu Sans / Serif / Sans Mono, STIX), 418 classes: a fine-grained
# task (serif against sans, two serif faces) that a small encoder cannot saturate as easily.
SOURCE_LABELS = ("glyph", "glyph_family")


def source_classes(labels: str = "glyph") -> List[str]:
    """Class names of the pretraining source under ``labels`` (:data:`SOURCE_LABELS`), in label order."""
    if labels == "glyph":
        return list(SOURCE_TEXT)
    if labels == "glyph_family":
        fonts = _source_fonts()
        return [f"{t} ({fam})" for t in SOURCE_TEXT for fam in dict.fromkeys(font_family(f) for f in fonts[t])]
    raise ValueError(f"pretrain.labels={labels!r}: expected one of {SOURCE_LABELS}")


# What a caption of a source image would say besides its glyph, one class per attribute, recorded from the
# renderer's own draws (-1 where an attribute does not apply, e.g. the period of a gradient). Pretraining predicts
# them when ``pretrain.attribute_weight`` > 0, so that θ0 also encodes background, pattern and layout.
SOURCE_ATTRIBUTE_VALUES: Dict[str, List[str]] = {
    "style": ["gradient", "blurry field", "periodic", "horizon", "black", "solid"],
    "field resolution": [f"{r}x{r}" for r in range(2, 9)],
    "pattern": ["stripes", "checks"],
    "period": ["3-6 px", "6-9 px", "9-12 px"],
    "orientation": ["0°", "45°", "90°", "135°"],
    "horizon": ["high", "upper middle", "lower middle", "low"],
    "plate": ["none", "disc", "square"],
    "neighbours": ["no", "yes"],
    "glyph size": ["small", "medium", "large"],
    "blur": ["no", "yes"],
}
SOURCE_ATTRIBUTES: List[str] = list(SOURCE_ATTRIBUTE_VALUES)


def _attributes(**values) -> np.ndarray:
    """int64 (len(SOURCE_ATTRIBUTES),): the given attribute classes, -1 for the others."""
    a = np.full(len(SOURCE_ATTRIBUTES), -1, np.int64)
    for k, v in values.items():
        a[SOURCE_ATTRIBUTES.index(k.replace("_", " "))] = v
    return a


def source_caption(attributes: np.ndarray) -> str:
    """The attribute classes of one source image in words, e.g. ``"style: periodic, pattern: checks, ..."``."""
    return ", ".join(f"{k}: {SOURCE_ATTRIBUTE_VALUES[k][v]}" for k, v in zip(SOURCE_ATTRIBUTES, attributes) if v >= 0)


def _source_background(rng, style) -> Tuple[np.ndarray, dict]:
    """(background float (32, 32, 3), its attribute classes)."""
    base = _rgb(rng)
    other = lambda: np.clip(base + rng.normal(0, 45, 3), 0, 255)  # noqa: E731  low-contrast second colour
    if style == 0:  # gradient (street-number like)
        return _gradient(rng, base, other()), {}
    if style == 1:  # blurry low-res field (satellite like)
        res = int(rng.integers(2, 9))
        f = rng.normal(0, 30, size=(res,) * 2 + (3,)) + base
        return _upsample(f.astype(np.float32), S), dict(field_resolution=res - 2)
    if style == 2:  # two-colour periodic pattern (texture like; stripes / checks of random period and angle)
        y, x = np.mgrid[0:S, 0:S].astype(np.float32)
        th = rng.uniform(0, 2 * np.pi)
        p = rng.uniform(3, 12)
        u = np.cos(th) * x + np.sin(th) * y
        v = -np.sin(th) * x + np.cos(th) * y
        m = np.sin(2 * np.pi * u / p) > 0
        checks = rng.random() < 0.5
        if checks:
            m = m ^ (np.sin(2 * np.pi * v / p) > 0)
        attrs = dict(
            pattern=int(checks),
            period=min(2, int((p - 3) // 3)),
            orientation=int(round((th % np.pi) / (np.pi / 4))) % 4,
        )
        return _mix(m.astype(np.float32), base, other()), attrs
    if style == 3:  # horizon split (scene / road like)
        a = _gradient(rng, base, other(), angle=np.pi / 2)
        h = int(rng.integers(6, 26))
        a[h:] = other() + (_noise_field(rng, 8)[h:, :, None] - 0.5) * 30
        return a, dict(horizon=(h - 6) // 5)
    if style == 4:  # black (handwriting like)
        return np.zeros((S, S, 3), np.float32) + rng.uniform(0, 30), {}
    return np.zeros((S, S, 3), np.float32) + base, {}  # solid


def _lum(c):
    return float(np.dot(np.asarray(c, np.float32), [0.299, 0.587, 0.114]))


def _contrasting_lum(rng, c, min_diff=90):
    for _ in range(60):
        d = _rgb(rng)
        if abs(_lum(d) - _lum(c)) >= min_diff:
            return d
    return np.full(3, 255.0 if _lum(c) < 128 else 0.0)


def render_source(rng, label: int, fonts_by_text, easy: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """one source image, its colour targets (fg rgb, bg mean rgb) in [0, 1], its attribute classes
    (:data:`SOURCE_ATTRIBUTES`) and the font file of its glyph. ``easy``: plain background, large upright centred
    glyph, no clutter (a share of these lets the ViT get off its initial plateau quickly)."""
    text = SOURCE_TEXT[label]
    if easy:
        bg = np.zeros((S, S, 3), np.float32) + _rgb(rng)
        pil = Image.fromarray(bg.astype(np.uint8))
        fg = _contrasting_lum(rng, bg[0, 0], 100)
        fonts = fonts_by_text[text]
        font = fonts[rng.integers(len(fonts))]
        size = int(rng.integers(22, 30))  # drawn after the font, as before attributes were recorded
        _paste_glyph(pil, text, font, size, 16 + rng.uniform(-1.5, 1.5), 16 + rng.uniform(-1.5, 1.5), fg)
        img = _finish(_to_np(pil), rng, noise=3)
        attrs = _attributes(style=5, plate=0, neighbours=0, glyph_size=_size_class(size), blur=0)
        return img, np.concatenate([np.asarray(fg, np.float32) / 255, bg[0, 0] / 255]).astype(np.float32), attrs, font
    style = int(rng.integers(0, 6))
    bg, bg_attrs = _source_background(rng, style)
    pil = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    bgm = bg.mean(axis=(0, 1))
    fg = _contrasting_lum(rng, bgm, 80) if style != 4 else np.full(3, rng.integers(200, 256))
    d = ImageDraw.Draw(pil)
    plate = 0
    if rng.random() < 0.25:  # a plate behind the glyph (sign like), contrasting with the glyph
        r = rng.uniform(9, 15)
        c = _contrasting_lum(rng, fg, 80)
        plate = 1 if rng.random() < 0.5 else 2
        fn = d.ellipse if plate == 1 else d.rectangle
        fn([16 - r, 16 - r, 16 + r, 16 + r], fill=tuple(int(v) for v in c))
    fonts = fonts_by_text[text]
    font = fonts[rng.integers(len(fonts))]
    size = int(rng.integers(16, 30))
    neighbours = rng.random() < 0.15
    if neighbours:  # street-number like
        for k in (-1, 1):
            other = SOURCE_TEXT[rng.integers(len(SOURCE_TEXT))]
            of = fonts_by_text[other]
            _paste_glyph(pil, other, of[rng.integers(len(of))], size, 16 + k * size * 0.75, 16, fg)
    _paste_glyph(pil, text, font, size, 16 + rng.uniform(-3, 3), 16 + rng.uniform(-3, 3), fg, rng.uniform(-15, 15))
    blur = rng.random() < 0.2
    if blur:
        pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    img = _finish(_to_np(pil), rng, noise=4)
    target = np.concatenate([np.asarray(fg, np.float32) / 255, bgm.astype(np.float32) / 255])
    attrs = _attributes(
        style=style, plate=plate, neighbours=int(neighbours), glyph_size=_size_class(size), blur=int(blur), **bg_attrs
    )
    return img, target, attrs, font


def _size_class(size: int) -> int:  # glyph size in points: 16-20 small, 21-25 medium, 26-29 large
    return min(2, (size - 16) // 5)


def make_source(
    n: int, seed: int, progress_desc: str = None, easy_frac: float = 0.0, labels: str = "glyph"
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` source images (uint8), labels (int64, into :func:`source_classes` of ``labels``), colour targets
    (float32, (n, 6)) and attribute classes (int64, (n, len(SOURCE_ATTRIBUTES)), -1 where one does not apply); a
    share ``easy_frac`` of them plain (see :func:`render_source`). The images do not depend on ``labels``."""
    from ...core.progress import progress

    names = {c: k for k, c in enumerate(source_classes(labels))}  # validates labels before any rendering
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4242]))
    fonts = _source_fonts()
    y = rng.integers(0, len(SOURCE_TEXT), n).astype(np.int64)
    easy = rng.random(n) < easy_frac
    X = np.empty((n, S, S, 3), np.uint8)
    T = np.empty((n, 6), np.float32)
    A = np.empty((n, len(SOURCE_ATTRIBUTES)), np.int64)
    for i in progress(range(n), desc=progress_desc or "source images", mininterval=2):
        X[i], T[i], A[i], font = render_source(rng, int(y[i]), fonts, easy=bool(easy[i]))
        if labels == "glyph_family":
            y[i] = names[f"{SOURCE_TEXT[y[i]]} ({font_family(font)})"]
    return X, y, T, A


# ------------------------------------------------------------------------------------------------------------------
# example grid (for the book)
# ------------------------------------------------------------------------------------------------------------------


def example_grid_array(task: str, n: int = 8, seed: int = 0, scale: int = 2, classes: int = None) -> np.ndarray:
    """A uint8 image: ``classes`` rows (default: up to 8 classes) of ``n`` examples each, upscaled ``scale``x."""
    spec = TASKS[task]
    C = len(spec["classes"])
    rows = min(C, classes or 8)
    X, y = generate_split(task, "val", max(C * n * 2, 200), seed)
    pad = 2
    tile = S * scale
    out = np.full((rows * (tile + pad) + pad, n * (tile + pad) + pad, 3), 255, np.uint8)
    for r in range(rows):
        imgs = X[y == r][:n]
        for c, im in enumerate(imgs):
            big = np.kron(im, np.ones((scale, scale, 1), np.uint8))
            out[
                pad + r * (tile + pad) : pad + r * (tile + pad) + tile,
                pad + c * (tile + pad) : pad + c * (tile + pad) + tile,
            ] = big
    return out
