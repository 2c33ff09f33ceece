"""The tiny zoo's build recipes: :data:`CONFIGS` (one per size), the optional recipe keys and their defaults, and
:func:`recipe_with` (a recipe with ``SECTION.KEY=VALUE`` changes, for probe builds)."""

from __future__ import annotations

import copy
import json
from typing import Dict, Sequence

ALPHAS = [round(0.05 * k, 2) for k in range(1, 21)]

CONFIGS: Dict[str, dict] = {
    "default": dict(
        benchmark="tiny",
        seed=0,
        data=dict(seed=0, n_train=4000, n_val=500, n_test=1000),
        model=dict(image_size=32, patch_size=8, width=192, layers=5, heads=6, mlp_ratio=4.0, output_dim=128),
        pretrain=dict(
            n_source=80000,
            easy_frac=0.4,
            steps=4000,
            batch=128,
            lr=7e-4,
            wd=0.05,
            warmup=100,
            label_smoothing=0.1,
            cls_scale=16.0,
            colour_weight=1.0,
            seed=1,
        ),
        heads=dict(logit_scale=30.0, shots=8),  # 8 exemplars per class: θ0 at CLIP ViT-B/32's zero-shot level
        finetune=dict(steps=300, batch=64, lr=3e-4, wd=0.0, warmup=30, seed=2),
        mtl=dict(steps=1000, batch_per_task=12, lr=3e-4, wd=0.0, warmup=50, seed=3, fused_batch=True),
        merge=dict(alphas=ALPHAS),
    ),
}
CONFIGS["large"] = copy.deepcopy(CONFIGS["default"])
CONFIGS["large"].update(benchmark="tiny-large")
CONFIGS["large"]["model"].update(width=256, layers=6, heads=8, output_dim=192)

# Recipe keys that the training code reads but the shipped recipes leave out, with the value that applies when a
# recipe has none (so the shipped recipes, and their cache keys, stay as they were built). Read via :func:`option`.
OPTIONAL_KEYS: Dict[str, Dict[str, object]] = {
    "pretrain": {"labels": "glyph", "attribute_weight": 0.0},
    "heads": {"seed": 0},
}


def option(section: dict, name: str, key: str):
    """``section[key]`` of the recipe section called ``name``, or its default from :data:`OPTIONAL_KEYS`."""
    return section.get(key, OPTIONAL_KEYS[name][key])


def recipe_with(size: str, changes: Sequence[str], error=None) -> dict:
    """A copy of ``CONFIGS[size]`` with ``"SECTION.KEY=VALUE"`` changes applied (VALUE parsed as JSON, so a string
    needs quotes: ``pretrain.labels="glyph_family"``). KEY must be one the recipe has or :data:`OPTIONAL_KEYS`
    names, so that a misspelt key is an error rather than a build of the unchanged recipe."""
    cfg = copy.deepcopy(CONFIGS[size])
    sections = sorted(k for k, v in cfg.items() if isinstance(v, dict))
    for item in changes:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        try:
            if section not in sections or not name:
                raise ValueError(f"expected SECTION.KEY=VALUE with SECTION one of {sections}")
            known = sorted(set(cfg[section]) | set(OPTIONAL_KEYS.get(section, {})))
            if name not in known:
                raise ValueError(f"no key {name!r} in section {section!r}; its keys: {', '.join(known)}")
            try:
                cfg[section][name] = json.loads(value)
            except json.JSONDecodeError as e:
                hint = (
                    f"; VALUE is JSON, so a string needs quotes: --set '{key}=\"{value}\"'"
                    if value.replace("_", "").replace("-", "").isalpha()
                    else ""
                )
                raise ValueError(f"VALUE {value!r} is not JSON ({e}){hint}") from None
        except ValueError as e:
            msg = f"recipe change {item!r}: {e}"
            if error is None:
                raise ValueError(msg) from None
            error(msg)
    return cfg
