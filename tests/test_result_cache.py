"""scripts/result_cache.py: the committed bundle of the notebooks' results round-trips, never replaces a user's
cached file, drops results of other code, and its check recomputes and catches a changed accuracy."""

import json
import lzma
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import result_cache as RC  # noqa: E402

from catlib import load_benchmark  # noqa: E402
from catlib.protocol import Session  # noqa: E402
from catlib.protocol.cache import ResultCache  # noqa: E402


@pytest.fixture(scope="module")
def control_cache(tmp_path_factory):
    """A result cache holding two real runs on the control benchmark, computed by this code."""
    d = tmp_path_factory.mktemp("cache")
    s = Session(load_benchmark("control"), cache=ResultCache(d))
    s.run("task_arithmetic", {"alpha": 0.3}, split="val")
    s.run("weight_average", {}, split="val")
    return d


def test_pack_unpack_round_trip_and_other_code_is_dropped(control_cache, tmp_path):
    stale = control_cache / "run" / "stale.json"
    key = {"v": 1, "code": "0" * 64, "bench": "x", "what": "run"}
    stale.write_text(json.dumps({"key": key, "value": {"a": 1.0}}))
    try:
        bundle = tmp_path / "b.jsonl.xz"
        assert RC.pack(control_cache, bundle) == 2
        first = bundle.read_bytes()
        assert RC.pack(control_cache, bundle) == 2 and bundle.read_bytes() == first  # same entries, same bytes
        out = tmp_path / "fresh"
        assert RC.unpack(out, bundle) == (2, 2, 2)
        for f in (control_cache / "run").glob("*.json"):
            if f.name != "stale.json":
                assert (out / "run" / f.name).read_text() == f.read_text()
        assert not (out / "run" / "stale.json").exists()
    finally:
        stale.unlink()


def test_unpack_never_replaces_a_file_already_there(control_cache, tmp_path):
    bundle = tmp_path / "b.jsonl.xz"
    RC.pack(control_cache, bundle)
    out = tmp_path / "mine"
    RC.unpack(out, bundle)
    mine = sorted((out / "run").glob("*.json"))[0]
    mine.write_text("my own run")
    assert RC.unpack(out, bundle) == (2, 2, 0)
    assert mine.read_text() == "my own run"


def test_check_recomputes_and_fails_on_a_changed_accuracy(control_cache, tmp_path, capsys):
    bundle = tmp_path / "b.jsonl.xz"
    RC.pack(control_cache, bundle)
    assert RC.check(2, 1.0, bundle, names=("control",)) == 0
    rows = RC.read(bundle)
    task = sorted(rows[0]["value"])[0]
    rows[0]["value"][task] += 1.5
    bundle.write_bytes(lzma.compress("\n".join(json.dumps(r) for r in rows).encode()))
    assert RC.check(2, 1.0, bundle, names=("control",)) == 1
    assert "DIFFERS" in capsys.readouterr().out


def test_an_unreadable_bundle_is_a_clear_error(tmp_path):
    bad = tmp_path / "b.jsonl.xz"
    bad.write_bytes(b"not xz")
    with pytest.raises(SystemExit, match="not a readable xz file"):
        RC.read(bad)
