"""environment.yml must list exactly the pins of requirements.txt."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower().replace("_", "-")


def test_environment_yml_matches_requirements():
    reqs = [l.split("#")[0].strip() for l in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = sorted(_norm(r) for r in reqs if r)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pip = sorted(_norm(p) for p in pip if not p.startswith("-e"))
    assert pip == reqs


def test_known_good_pins_present():
    text = (ROOT / "requirements.txt").read_text()
    for pin in ("torch==2.14.1", "torchvision==0.29.1", "open_clip_torch==3.3.0"):
        assert pin in text
