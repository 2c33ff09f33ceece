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


def _rekey_setup(tmp_path, monkeypatch, old_side):
    """A bundle of three results of an 'older' code (a copy of catlib with one changed comment), and rekey's two
    recomputations faked: this code's gives the bundled values, the older code's gives ``old_side(value)``."""
    import shutil
    import subprocess

    tree = tmp_path / "tree"
    shutil.copytree(RC.REPO / "catlib", tree / "catlib", ignore=shutil.ignore_patterns("__pycache__"))
    checks = tree / "catlib" / "core" / "checks.py"
    checks.write_text(checks.read_text() + "\n# an older revision\n")
    old = RC.code_fingerprint((), tree / "catlib")
    key = {"v": RC.CACHE_VERSION, "bench": "B", "code": old, "split": "val", "tasks": ["a"], "eval_tasks": ["a"]}
    rows = [
        {"kind": "run", "key": {**key, "what": "run", "method": "ties", "hparams": {}}, "value": {"a": 50.0}},
        {"kind": "run", "key": {**key, "what": "run", "method": "pcb", "hparams": {}}, "value": {"a": 60.0}},
        {"kind": "premise", "key": {**key, "what": "premise", "method": "cat"}, "value": {"x": 1}},
        {
            "kind": "testtime",
            "key": {**key, "what": "testtime", "method": "adamerging", "hparams": {}, "seed": 0},
            "value": {"accuracy": {"a": 40.0}, "seconds": 3.0, "coefficients": [0.3]},
        },
    ]
    bundle = tmp_path / "b.jsonl.xz"
    bundle.write_bytes(lzma.compress(("\n".join(json.dumps(r) for r in rows) + "\n").encode()))
    monkeypatch.setattr(RC, "revision_tree", lambda rev, dest: tree)
    monkeypatch.setattr(RC, "embedded_sessions", lambda names=RC.EMBEDDED: {"B": None})
    monkeypatch.setattr(RC, "recompute_rows", lambda rs, sessions=None: [RC.accuracy_of(r) for r in rs])

    def child(cmd, env, check):  # the older code's recomputation, in rekey's child process
        assert env["CATLIB_CODE_ROOT"] == str(tree)
        out = Path(cmd[cmd.index("--out") + 1])
        out.write_text(
            json.dumps(
                [old_side(RC.accuracy_of(r)) for r in json.loads(Path(cmd[cmd.index("--rows") + 1]).read_text())]
            )
        )
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", child)
    return bundle, old


def test_rekey_carries_over_only_results_both_codes_compute_identically(tmp_path, monkeypatch):
    bundle, old = _rekey_setup(tmp_path, monkeypatch, lambda v: v)
    assert RC.rekey("OLD", 2, 0.0, drop=("pcb",), bundle=bundle) == 0
    rows = RC.read(bundle)
    assert [(r["kind"], r["key"]["method"], r["key"]["code"]) for r in rows] == [
        ("run", "ties", RC.code_fingerprint(())),
        ("testtime", "adamerging", RC.code_fingerprint(())),
    ]
    assert rows[1]["value"]["seconds"] == 3.0  # carried whole: accuracy, seconds and λ
    assert old != RC.code_fingerprint(())  # the premise entry (not recomputable here) and the dropped pcb are gone


def test_rekey_writes_nothing_when_the_codes_disagree(tmp_path, monkeypatch):
    bundle, _ = _rekey_setup(tmp_path, monkeypatch, lambda v: {t: a + 0.5 for t, a in v.items()})
    before = bundle.read_bytes()
    assert RC.rekey("OLD", 2, 0.0, bundle=bundle) == 1
    assert bundle.read_bytes() == before


def test_a_test_time_entry_is_recomputed_from_its_key(tmp_path):
    """rekey's recomputation of a bundled AdaMerging run (kind "testtime") gives the accuracy the run cached."""
    S = Session(load_benchmark("control"), cache=ResultCache(tmp_path))
    r = S.test_time("adamerging", {"granularity": "task", "steps": 2}, split="val")
    (path,) = (tmp_path / "testtime").glob("*.json")
    row = {"kind": "testtime", **json.loads(path.read_text())}
    assert RC.accuracy_of(row) == r["accuracy"]
    assert RC.recompute_rows([row], {S.fingerprint: Session(S.bench, cache=None)}) == [r["accuracy"]]


def test_the_bundle_covers_every_embedded_benchmarks_code():
    """Results on glue-tiny and vl-tiny carry a code fingerprint over their own code too: the bundle must keep
    them."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import result_cache as RC

    from catlib.benchmarks.glue_tiny.benchmark import GlueTinyBenchmark
    from catlib.protocol.cache import code_fingerprint

    from catlib.benchmarks.vl_tiny.benchmark import VLTinyBenchmark

    assert code_fingerprint(GlueTinyBenchmark.code_files) in RC.current_codes()
    assert code_fingerprint(VLTinyBenchmark.code_files) in RC.current_codes()
    assert {"glue-tiny", "vl-tiny"} <= set(RC.EMBEDDED)
