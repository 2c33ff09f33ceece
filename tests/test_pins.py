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


def test_ci_runs_the_readme_test_command():
    """.ci/run must run the README's test command (the second line of 'The two commands'), nothing else."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## The two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [l.split("#")[0].strip() for l in block.strip().splitlines()]
    assert len(commands) == 2 and commands[1] == "bash scripts/test.sh"
    ci = [
        l.strip()
        for l in (ROOT / ".ci" / "run").read_text().splitlines()
        if l.strip() and not l.startswith("#") and not l.startswith(("set ", "cd "))
    ]
    assert ci == [commands[1]]
