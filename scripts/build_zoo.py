#!/usr/bin/env python
"""Build the tiny benchmark's data and model zoo from scratch (same as ``python -m catlib.benchmarks.tiny.zoo build``).

.venv/bin/python scripts/build_zoo.py --size default                     # data/tiny/default/, ~60 min, 1 core
.venv/bin/python scripts/build_zoo.py --size large --threads 2 --jobs 2  # data/tiny/large/, ~40 min, 2 cores
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from catlib.benchmarks.tiny.zoo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["build"] + sys.argv[1:]))
