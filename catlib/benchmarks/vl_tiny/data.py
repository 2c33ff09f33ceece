"""Procedural image-text data of the vl-tiny benchmark: 48 × 48 scenes of coloured shapes on a background, some with
a sign whose word is rendered in a 3 × 5 pixel font, and six tasks that mirror Table 4's in kind.

=================  ===========  ===================================================================================
task               analogue     what the model must do
=================  ===========  ===================================================================================
``coco_caption``   COCO         caption two shapes and their spatial relation ("a red circle left of a blue square")
``flickr30k``      Flickr30k    caption a group: count, colour, kind and the setting ("two green triangles on the
                                grass")
``textcaps``       TextCaps     caption a sign, reading its word ("a yellow sign that reads zoo")
``okvqa``          OK-VQA       answer with knowledge the image does not show (the fruit of a colour, a shape's
                                corners, the season of a setting); ten annotators' answers, some of them noisy
``textvqa``        TextVQA      answer questions about a sign's word or colour; ten annotators' answers
``scienceqa``      ScienceQA    choose between two numbered options shown in the question (more corners, bigger);
                                the answer is the option's number
=================  ===========  ===================================================================================

θ0 is pretrained on :func:`generic_item`: short answers to generic questions (colour, kind, count, position,
setting, a sign's colour and first letter) about the same kind of scenes, and generic object-list captions under
another prompt: a VQA model that answers the tasks' captioning question badly, as BLIP's VQA checkpoint does.
Every item is a pure function of ``(seed, task, split, index)`` (numpy's generator seeded with those numbers), so a
split is regenerated rather than stored, and any item can be made alone.

Text is word-level (:data:`VOCAB`): a question is ``[CLS] words [SEP]``, an answer ``[DEC] words [SEP]``.
"""

from __future__ import annotations

import hashlib
from typing import Dict, List, Sequence, Tuple

import numpy as np

SIZE = 48
TASKS = ("coco_caption", "flickr30k", "textcaps", "okvqa", "textvqa", "scienceqa")
SPLITS = ("train", "val", "test")
CAPTION_PROMPT = "what does the image describe ?"
PRETRAIN_PROMPT = "describe the image"

COLORS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (50, 80, 220), "yellow": (235, 215, 40),
    "purple": (140, 60, 180), "orange": (245, 140, 30), "white": (245, 245, 245), "black": (20, 20, 20),
}  # fmt: skip
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
CORNERS = {"circle": "0", "triangle": "3", "square": "4", "diamond": "4", "cross": "12"}
SETTINGS = {  # name -> (mean colour, the season it suggests or None)
    "grass": ((90, 160, 70), "spring"), "sand": ((215, 190, 140), "summer"), "snow": ((225, 232, 240), "winter"),
    "leaves": ((170, 100, 40), "autumn"), "sky": ((140, 190, 235), None), "road": ((110, 110, 115), None),
}  # fmt: skip
FRUIT = {
    "red": "apple",
    "yellow": "banana",
    "green": "lime",
    "orange": "orange",
    "purple": "grape",
    "blue": "blueberry",
}
SIGN_WORDS = ("bus", "zoo", "gym", "spa", "inn", "pub", "cab", "bar", "atm", "tea", "art", "ice")
NUMBERS = ("one", "two", "three")

# 3 x 5 glyphs of the letters the sign words use (rows top to bottom, "#" on)
GLYPHS = {
    "a": ".#.|#.#|###|#.#|#.#", "b": "##.|#.#|##.|#.#|##.", "c": "###|#..|#..|#..|###", "e": "###|#..|##.|#..|###",
    "g": "###|#..|#.#|#.#|###", "i": "###|.#.|.#.|.#.|###", "m": "#.#|###|###|#.#|#.#", "n": "##.|#.#|#.#|#.#|#.#",
    "o": "###|#.#|#.#|#.#|###", "p": "###|#.#|###|#..|#..", "r": "##.|#.#|##.|#.#|#.#", "s": "###|#..|###|..#|###",
    "t": "###|.#.|.#.|.#.|.#.", "u": "#.#|#.#|#.#|#.#|###", "y": "#.#|#.#|.#.|.#.|.#.", "z": "###|..#|.#.|#..|###",
}  # fmt: skip

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]")
PAD, UNK, CLS, SEP, MASK, DEC, ENC = range(len(SPECIALS))
_WORDS = """
a an the of and on in with is are there what which how many where does do this these shape shapes image describe
color colour fruit season corners sign say says reads reading read word written first letter it left right top
bottom above below next to bigger more has have choices ( ) : ? is there yes no some group that background
""".split()
VOCAB: Tuple[str, ...] = tuple(
    dict.fromkeys(
        list(SPECIALS) + _WORDS + list(COLORS) + list(SHAPES) + [s + "s" for s in SHAPES] + list(SETTINGS)
        + [v[1] for v in SETTINGS.values() if v[1]] + list(FRUIT.values()) + ["apples", "fruit", "lemon", "cherry"]
        + list(CORNERS.values()) + ["1", "2", "5", "6"] + list(NUMBERS) + list(SIGN_WORDS) + sorted(GLYPHS)
    )
)  # fmt: skip
INDEX: Dict[str, int] = {w: i for i, w in enumerate(VOCAB)}


def words(text: str) -> List[str]:
    for mark in "?():":
        text = text.replace(mark, f" {mark} ")
    return text.lower().split()


def encode(text: str) -> List[int]:
    return [INDEX.get(w, UNK) for w in words(text)]


def question_ids(text: str) -> List[int]:
    return [CLS] + encode(text) + [SEP]


def answer_ids(text: str) -> List[int]:
    return [DEC] + encode(text) + [SEP]


def decode(ids: Sequence[int]) -> str:
    return " ".join(VOCAB[i] for i in ids if i >= len(SPECIALS) and i < len(VOCAB))


# ----------------------------------------------------------------------------------------------------------------
# drawing
# ----------------------------------------------------------------------------------------------------------------
def _canvas(rng, setting: str) -> np.ndarray:
    base = np.array(SETTINGS[setting][0], dtype=np.float32)
    img = base + rng.normal(0, 12, (SIZE, SIZE, 3))
    return img


def _mask(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if shape == "triangle":
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    if shape == "cross":
        return ((np.abs(dx) <= r * 0.3) & (np.abs(dy) <= r)) | ((np.abs(dy) <= r * 0.3) & (np.abs(dx) <= r))
    raise ValueError(shape)


def _paint(img: np.ndarray, mask: np.ndarray, color: str, rng) -> None:
    img[mask] = np.array(COLORS[color], dtype=np.float32) + rng.normal(0, 8, (int(mask.sum()), 3))


def _sign(img: np.ndarray, rng, word: str, color: str, x0: int, y0: int) -> None:
    """A sign: a rectangle of ``color`` holding ``word`` in the 3 × 5 font at scale 2 (black or white ink)."""
    w, h = len(word) * 8 + 2, 14
    img[y0 : y0 + h, x0 : x0 + w] = np.array(COLORS[color], dtype=np.float32)
    ink = np.array(COLORS["black" if color in ("yellow", "white", "orange") else "white"], dtype=np.float32)
    for k, ch in enumerate(word):
        for r, row in enumerate(GLYPHS[ch].split("|")):
            for c, on in enumerate(row):
                if on == "#":
                    y, x = y0 + 2 + 2 * r, x0 + 2 + 8 * k + 2 * c
                    img[y : y + 2, x : x + 2] = ink
    img[y0 : y0 + h, x0 : x0 + w] += rng.normal(0, 6, (h, w, 3))


def _finish(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0, 255).astype(np.uint8)


def _colors_for(setting: str, rng, n: int, allowed=None) -> List[str]:
    """``n`` distinct shape colours that stand out from ``setting``."""
    clash = {"grass": {"green"}, "snow": {"white"}, "leaves": {"orange"}, "sky": {"blue"}, "road": {"black"},
             "sand": {"yellow"}}  # fmt: skip
    pool = [c for c in (allowed or COLORS) if c not in clash.get(setting, set())]
    return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]


def _two_shapes(rng, setting: str, allowed_colors=None):
    """Two different shapes side by side or one above the other: [(color, shape, cx, cy, r)], relation of the
    first to the second ("left of", "right of", "above", "below")."""
    kinds = [SHAPES[i] for i in rng.choice(len(SHAPES), size=2, replace=False)]
    cols = _colors_for(setting, rng, 2, allowed_colors)
    r1, r2 = rng.uniform(7.5, 10), rng.uniform(7.5, 10)
    a, b = rng.uniform(11, 14), rng.uniform(34, 37)
    c1, c2 = rng.uniform(14, 34), rng.uniform(14, 34)
    first_low = rng.random() < 0.5
    if rng.random() < 0.5:  # horizontal
        (x1, x2) = (a, b) if first_low else (b, a)
        shapes = [(cols[0], kinds[0], x1, c1, r1), (cols[1], kinds[1], x2, c2, r2)]
        rel = "left of" if first_low else "right of"
    else:
        (y1, y2) = (a, b) if first_low else (b, a)
        shapes = [(cols[0], kinds[0], c1, y1, r1), (cols[1], kinds[1], c2, y2, r2)]
        rel = "above" if first_low else "below"
    return shapes, rel


def _draw(rng, setting: str, shapes) -> np.ndarray:
    img = _canvas(rng, setting)
    for color, kind, cx, cy, r in shapes:
        _paint(img, _mask(kind, cx, cy, r), color, rng)
    return img


def _annotators(rng, answer: str, alternatives: Sequence[str], p_noise: float = 0.15) -> List[str]:
    """Ten annotators' answers: ``answer``, each replaced with probability ``p_noise`` by an alternative."""
    return [str(alternatives[rng.integers(len(alternatives))]) if rng.random() < p_noise else answer for _ in range(10)]


def _sign_word(rng) -> str:
    return SIGN_WORDS[rng.integers(len(SIGN_WORDS))]


# ----------------------------------------------------------------------------------------------------------------
# tasks: (image uint8 (H, W, 3), question, training answer, references)
# ----------------------------------------------------------------------------------------------------------------
Item = Tuple[np.ndarray, str, str, List[str]]


def _plural(n: int, shape: str) -> str:
    return shape if n == 1 else shape + "s"


def coco_caption(rng) -> Item:
    setting = str(rng.choice(list(SETTINGS)))
    shapes, rel = _two_shapes(rng, setting)
    (c1, s1, *_), (c2, s2, *_) = shapes
    inverse = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}[rel]
    refs = [
        f"a {c1} {s1} {rel} a {c2} {s2}",
        f"a {c2} {s2} {inverse} a {c1} {s1}",
        f"there is a {c1} {s1} {rel} a {c2} {s2}",
        f"a {c1} {s1} and a {c2} {s2}",
        f"a {c1} {s1} next to a {c2} {s2}",
    ]
    return _finish(_draw(rng, setting, shapes)), CAPTION_PROMPT, refs[int(rng.integers(3))], refs


def flickr30k(rng) -> Item:
    setting = str(rng.choice(list(SETTINGS)))
    n = int(rng.integers(1, 4))
    kind = SHAPES[rng.integers(len(SHAPES))]
    (color,) = _colors_for(setting, rng, 1)
    slots = [(12, 12), (36, 12), (12, 36), (36, 36), (24, 24)]
    pick = rng.choice(len(slots), size=n, replace=False)
    shapes = [(color, kind, slots[i][0] + rng.uniform(-1.5, 1.5), slots[i][1] + rng.uniform(-1.5, 1.5),
               rng.uniform(6, 7.5)) for i in pick]  # fmt: skip
    num, noun = NUMBERS[n - 1], _plural(n, kind)
    refs = [
        f"{num} {color} {noun} on the {setting}",
        f"{num} {color} {noun} in the {setting}",
        f"the {setting} with {num} {color} {noun}",
        f"{color} {noun} on the {setting}",
        f"{num} {noun} on the {setting}",
    ]
    return _finish(_draw(rng, setting, shapes)), CAPTION_PROMPT, refs[int(rng.integers(3))], refs


def _sign_scene(rng, with_shape: bool = True):
    setting = str(rng.choice(list(SETTINGS)))
    word = _sign_word(rng)
    (sign_color,) = _colors_for(setting, rng, 1)
    shapes = []
    if with_shape and rng.random() < 0.6:
        (c,) = _colors_for(setting, rng, 1)
        shapes = [(c, SHAPES[rng.integers(len(SHAPES))], rng.uniform(10, 38), rng.uniform(34, 40), 5.5)]
    img = _draw(rng, setting, shapes)
    _sign(img, rng, word, sign_color, int(rng.integers(1, SIZE - 27)), int(rng.integers(2, 16)))
    return _finish(img), word, sign_color


def textcaps(rng) -> Item:
    img, word, color = _sign_scene(rng)
    refs = [
        f"a {color} sign that reads {word}",
        f"a {color} sign that says {word}",
        f"the word {word} on a {color} sign",
        f"a sign reading {word}",
        f"{word} written on a {color} sign",
    ]
    return img, CAPTION_PROMPT, refs[int(rng.integers(3))], refs


def okvqa(rng) -> Item:
    kind = int(rng.integers(3))
    if kind == 2:  # the season of a setting
        setting = str(rng.choice([s for s, v in SETTINGS.items() if v[1]]))
    else:
        setting = str(rng.choice(list(SETTINGS)))
    (color,) = _colors_for(setting, rng, 1, FRUIT if kind == 0 else None)
    shape = SHAPES[rng.integers(len(SHAPES))]
    img = _draw(rng, setting, [(color, shape, rng.uniform(18, 30), rng.uniform(18, 30), rng.uniform(9, 12))])
    if kind == 0:
        q, a, alt = "what fruit has the color of this shape ?", FRUIT[color], ["fruit", "apples", "cherry", "lemon"]
    elif kind == 1:
        q, a, alt = "how many corners does this shape have ?", CORNERS[shape], ["1", "2", "5", "6"]
    else:
        q, a, alt = "what season is it ?", SETTINGS[setting][1], ["spring", "summer", "winter", "autumn"]
    return _finish(img), q, a, _annotators(rng, a, alt)


def textvqa(rng) -> Item:
    img, word, color = _sign_scene(rng)
    if rng.random() < 0.7:
        q = ["what does the sign say ?", "what word is on the sign ?", "what is written on the sign ?"][rng.integers(3)]
        a, alt = word, list(SIGN_WORDS)
    else:
        q, a, alt = "what color is the sign ?", color, list(COLORS)
    return img, q, a, _annotators(rng, a, alt)


def scienceqa(rng) -> Item:
    setting = str(rng.choice(list(SETTINGS)))
    while True:
        shapes, _ = _two_shapes(rng, setting)
        (c1, s1, *_), (c2, s2, *_) = shapes
        if CORNERS[s1] != CORNERS[s2]:
            break
    if rng.random() < 0.5:
        q = "which shape has more corners ?"
        win = 0 if int(CORNERS[s1]) > int(CORNERS[s2]) else 1
    else:
        q = "which shape is bigger ?"
        big, small = rng.uniform(10, 11), rng.uniform(5, 6)
        win = int(rng.integers(2))
        shapes = [(c, s, x, y, big if i == win else small) for i, (c, s, x, y, _) in enumerate(shapes)]
    options = [f"the {c1} {s1}", f"the {c2} {s2}"]
    order = [int(i) for i in rng.permutation(2)]
    shown = " ".join(f"( {k + 1} ) {options[i]}" for k, i in enumerate(order))
    answer = str(order.index(win) + 1)  # the number of the right option, as multiple-choice answers are scored
    return _finish(_draw(rng, setting, shapes)), f"{q} choices : {shown}", answer, [answer]


TASK_FN = {"coco_caption": coco_caption, "flickr30k": flickr30k, "textcaps": textcaps, "okvqa": okvqa,
           "textvqa": textvqa, "scienceqa": scienceqa}  # fmt: skip


def _listing(shapes) -> str:
    return " and ".join(f"a {c} {k}" for c, k, *_ in shapes)


def generic_item(rng) -> Tuple[np.ndarray, str, str]:
    """θ0's pretraining: a generic question with a short answer about a random scene, or (a third of the items) a
    generic caption listing the scene's shapes under the prompt :data:`PRETRAIN_PROMPT`: a VQA model whose decoder
    has also written captions, as BLIP's was pretrained with a captioning loss."""
    setting = str(rng.choice(list(SETTINGS)))
    caption = rng.random() < 1 / 3
    if rng.random() < 0.3:
        img, word, color = _sign_scene(rng)
        if caption:
            return img, PRETRAIN_PROMPT, f"a {color} sign"
        q, a = (("what color is the sign ?", color) if rng.random() < 0.5 else
                ("what is the first letter on the sign ?", word[0]))  # fmt: skip
        return img, q, a
    if rng.random() < 0.5:
        shapes, rel = _two_shapes(rng, setting)
    else:
        n = int(rng.integers(1, 4))
        cols = _colors_for(setting, rng, n)
        kinds = [SHAPES[i] for i in rng.choice(len(SHAPES), size=n, replace=False)]
        slots = [(12, 12), (36, 12), (12, 36), (36, 36)]
        pick = rng.choice(4, size=n, replace=False)
        shapes = [(cols[i], kinds[i], slots[p][0], slots[p][1], rng.uniform(6, 9)) for i, p in enumerate(pick)]
    img = _finish(_draw(rng, setting, shapes))
    if caption:
        return img, PRETRAIN_PROMPT, _listing(shapes)
    color, kind, cx, cy, _ = shapes[int(rng.integers(len(shapes)))]
    r = rng.random()
    if r < 0.25:
        return img, f"what color is the {kind} ?", color
    if r < 0.5:
        return img, f"what shape is {color} ?", kind
    if r < 0.7:
        return img, "how many shapes are there ?", NUMBERS[len(shapes) - 1]
    if r < 0.85:
        return img, "what is the background ?", setting
    side = ("left" if cx < 24 else "right") if rng.random() < 0.5 else ("top" if cy < 24 else "bottom")
    if rng.random() < 0.5:  # the opposite side: the answer is no
        side = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}[side]
        return img, f"is the {kind} on the {side} ?", "no"
    return img, f"is the {kind} on the {side} ?", "yes"


def task_item(task: str, split: str, index: int, seed: int) -> Item:
    """Item ``index`` of ``task``'s ``split``: a pure function of its four arguments."""
    rng = np.random.default_rng([seed, TASKS.index(task) + 1, SPLITS.index(split), index])
    return TASK_FN[task](rng)


def pretrain_item(index: int, seed: int) -> Tuple[np.ndarray, str, str]:
    return generic_item(np.random.default_rng([seed, 0, 9, index]))


def split_hash(items: Sequence[Item]) -> str:
    """sha256 over a split's images, questions and references (the manifest's record of the generated data)."""
    h = hashlib.sha256()
    for img, q, a, refs in items:
        h.update(img.tobytes())
        h.update("|".join([q, a] + list(refs)).encode())
    return h.hexdigest()
