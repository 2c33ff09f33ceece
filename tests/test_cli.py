"""The command line contract: `python -m catlib evaluate ... --json` and `python -m catlib methods`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import catlib
from catlib.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "data" / "tiny" / "default" / "manifest.json"
needs_zoo = pytest.mark.skipif(not ZOO.exists(), reason="default tiny zoo not built")


def test_methods_lists_the_registry(capsys):
    assert main(["methods"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert set(listed) == set(catlib.methods())
    assert listed["cat"]["hyperparameters"]["alpha"] == catlib.methods()["cat"]["hyperparameters"]["alpha"]


def test_unknown_method_is_a_clear_error(capsys):
    assert main(["evaluate", "--benchmark", "tiny", "--method", "nope", "--json"]) == 2
    assert "unknown merge method 'nope'" in capsys.readouterr().err


@needs_zoo
def test_hyperparameter_of_another_method_is_rejected():
    with pytest.raises(SystemExit, match=r"ties has no hyperparameter\(s\) \['c'\]"):
        main(["evaluate", "--benchmark", "tiny", "--method", "ties", "--c", "2", "--json"])


@needs_zoo
def test_evaluate_json_contract_subprocess():
    bench = catlib.load_benchmark("tiny")
    tasks = bench.all_tasks[:2]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "catlib",
            "evaluate",
            "--benchmark",
            "tiny",
            "--method",
            "task_arithmetic",
            "--alpha",
            "0.3",
            "--tasks",
            *tasks,
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"CATLIB_PROGRESS": "0", "PATH": ""},
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["method"] == "task_arithmetic" and set(res["per_task"]) == set(tasks)
    assert res["metrics"] == {t: "accuracy" for t in tasks}  # what each number measures
    assert res["average"] == pytest.approx(sum(res["per_task"].values()) / 2, abs=1e-3)
    assert res["hyperparameters"]["alpha"] == 0.3
    merged = catlib.merge("task_arithmetic", bench.pretrained, bench.finetuned_list(tasks), alpha=0.3)
    direct = catlib.evaluate(bench, merged, "test", tasks)
    assert all(res["per_task"][t] == pytest.approx(direct[t], abs=1e-3) for t in tasks)


@needs_zoo
def test_reference_rows(capsys):
    bench = catlib.load_benchmark("tiny")
    t = bench.all_tasks[0]
    assert main(["evaluate", "--benchmark", "tiny", "--method", "individual", "--tasks", t, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["per_task"][t] == pytest.approx(catlib.evaluate(bench, bench.finetuned[t], "test", [t])[t], abs=1e-3)


@pytest.mark.parametrize("layout,which", [("task_vectors", "checkpoint_root"), ("hf", "hf_root")])
def test_openclip_benchmark_from_the_command_line(roots, layout, which, tmp_path, capsys):
    """`--benchmark openclip --model-name ...` on the generated stand-in roots agrees with the API."""
    args = [
        "evaluate",
        "--benchmark",
        "openclip",
        "--model-name",
        roots["model_name"],
        "--layout",
        layout,
        "--checkpoint-root",
        roots[which],
        "--data-root",
        roots["data_root"],
        "--cache-dir",
        str(tmp_path),
        "--tasks",
        *roots["tasks"],
        "--device",
        "cpu",
        "--batch-size",
        "16",
        "--method",
        "ties",
        "--json",
    ]
    assert main(args) == 0
    res = json.loads(capsys.readouterr().out)
    bench = catlib.load_benchmark(
        "openclip",
        model_name=roots["model_name"],
        layout=layout,
        checkpoint_root=roots[which],
        data_root=roots["data_root"],
        tasks=roots["tasks"],
        device="cpu",
        cache_dir=tmp_path,
    )
    direct = catlib.evaluate(bench, catlib.merge("ties", bench.pretrained, bench.finetuned_list()))
    assert res["per_task"] == pytest.approx(direct, abs=1e-3)


def test_trust_pickle_flag_reaches_the_loader(roots, tmp_path, capsys):
    """A raw pickle.dump'ed model among the checkpoints: refused (exit 2, the message names --trust-pickle) without
    the flag, loaded and evaluated with it."""
    import shutil

    from standins import write_raw_pickled_encoder

    root = tmp_path / "ckpt"
    shutil.copytree(roots["checkpoint_root"], root)
    write_raw_pickled_encoder(root / roots["model_name"] / "DTD" / "finetuned.pt", roots["finetuned"]["DTD"])
    args = ["evaluate", "--benchmark", "openclip", "--model-name", roots["model_name"], "--checkpoint-root"]
    args += [str(root), "--data-root", roots["data_root"], "--cache-dir", str(tmp_path / "heads"), "--tasks"]
    args += ["MNIST", "DTD", "--device", "cpu", "--batch-size", "16", "--method", "task_arithmetic", "--json"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--trust-pickle" in err and "trust_pickle=True" in err and "finetuned.pt" in err, err
    assert main(args + ["--trust-pickle"]) == 0
    assert set(json.loads(capsys.readouterr().out)["per_task"]) == {"MNIST", "DTD"}


def test_openclip_benchmark_needs_a_model_name(roots):
    with pytest.raises(SystemExit, match="needs --model-name"):
        main(
            [
                "evaluate",
                "--benchmark",
                "openclip",
                "--checkpoint-root",
                roots["checkpoint_root"],
                "--data-root",
                roots["data_root"],
                "--method",
                "ties",
                "--json",
            ]
        )
    with pytest.raises(SystemExit, match="fixes its architecture"):
        main(
            [
                "evaluate",
                "--benchmark",
                "vit-b-32",
                "--model-name",
                "ViT-B-16",
                "--checkpoint-root",
                roots["checkpoint_root"],
                "--data-root",
                roots["data_root"],
                "--method",
                "ties",
                "--json",
            ]
        )


@needs_zoo
def test_diagnose_json_matches_the_library_on_the_same_statistics(capsys):
    from catlib.analysis.premise import diagnose
    from catlib.core.statedict import task_vectors
    from catlib.protocol import Session

    tasks = ["scenes", "handwritten"]
    assert main(["diagnose", "--benchmark", "tiny", "--tasks", *tasks, "--exemplars", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tasks"] == tasks and out["benchmark"] == "tiny" and out["exemplars"] == 2
    S = Session(catlib.load_benchmark("tiny", tasks=tasks), cache=None)
    spec = S.spec("cat", {}, None, 2, 0)
    ref = diagnose(task_vectors(S.bench.pretrained, S.bench.finetuned_list()), S.statistics(spec), tasks=tasks)
    assert out["summary"] == pytest.approx(ref["summary"])
    assert 0.0 < out["summary"]["subspace_energy"] < 1.0 and out["summary"]["captured_chance"] < 0.1
    assert main(["diagnose", "--benchmark", "tiny", "--tasks", "nope"]) == 2  # a clear error, no traceback
    assert "nope" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--device", "bogus"], "--device 'bogus' is not a device"),
        (["--tasks"], "--tasks was given without task names"),
        (["--tasks", "scenes", "scenes"], "names ['scenes'] more than once"),
    ],
)
def test_usage_mistakes_are_one_line_and_exit_2(capsys, args, message):
    assert main(["evaluate", "--benchmark", "tiny", "--method", "task_arithmetic", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize("flag", ["--exemplars", "--batch-size"])
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_counts_must_be_positive_integers(capsys, flag, value):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--benchmark", "tiny", "--method", "cat", flag, value])
    assert e.value.code == 2 and "expected a whole number ≥ 1" in capsys.readouterr().err


def test_an_unreadable_zoo_is_an_error_not_a_traceback(tmp_path, capsys, monkeypatch):
    (tmp_path / "default").mkdir()
    (tmp_path / "default" / "manifest.json").write_text('{"files": ')  # truncated
    monkeypatch.setenv("CATLIB_TINY_ROOT", str(tmp_path))
    rc = main(["evaluate", "--benchmark", "tiny", "--method", "task_arithmetic", "--json"])
    err = capsys.readouterr().err
    assert rc in (1, 2) and err.startswith("error: ") and "Traceback" not in err


@needs_zoo
def test_a_broken_pipe_ends_quietly():
    cmd = [sys.executable, "-m", "catlib", "methods"]
    out = subprocess.run(
        f"{' '.join(cmd)} | head -c 1 >/dev/null", shell=True, capture_output=True, text=True, cwd=ROOT
    )
    assert "Traceback" not in out.stderr


def test_checkpoint_root_is_the_tiny_zoo_folder_and_no_root_is_taken_where_none_is_read(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text('{"files": ')  # a truncated zoo: loading it must fail, so it is read
    rc = main(["evaluate", "--benchmark", "tiny", "--method", "task_arithmetic", "--checkpoint-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc in (1, 2) and err.startswith("error: ") and "Traceback" not in err
    rc = main(["evaluate", "--benchmark", "control", "--method", "task_arithmetic", "--data-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "is embedded: it reads no --data-root" in err and err.count("\n") == 1


@needs_zoo
def test_zoo_verify_on_a_damaged_zoo_is_one_line_and_exit_1(tmp_path, capsys):
    from catlib.benchmarks.tiny import zoo

    (tmp_path / "manifest.json").write_text((ROOT / "data" / "tiny" / "default" / "manifest.json").read_text())
    (tmp_path / "pretrained.safetensors").write_bytes(b"\0" * 10)  # truncated; the other files are missing
    assert zoo.main(["verify", "--root", str(tmp_path), "--size", "default"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
