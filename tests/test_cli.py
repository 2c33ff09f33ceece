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
    out = subprocess.run([sys.executable, "-m", "catlib", "evaluate", "--benchmark", "tiny", "--method",
                          "task_arithmetic", "--alpha", "0.3", "--tasks", *tasks, "--json"],
                         capture_output=True, text=True, cwd=ROOT, env={"CATLIB_PROGRESS": "0", "PATH": ""})
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["method"] == "task_arithmetic" and set(res["per_task"]) == set(tasks)
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
    args = ["evaluate", "--benchmark", "openclip", "--model-name", roots["model_name"], "--layout", layout,
            "--checkpoint-root", roots[which], "--data-root", roots["data_root"], "--cache-dir", str(tmp_path),
            "--tasks", *roots["tasks"], "--device", "cpu", "--batch-size", "16", "--method", "ties", "--json"]
    assert main(args) == 0
    res = json.loads(capsys.readouterr().out)
    bench = catlib.load_benchmark("openclip", model_name=roots["model_name"], layout=layout,
                                  checkpoint_root=roots[which], data_root=roots["data_root"], tasks=roots["tasks"],
                                  device="cpu", cache_dir=tmp_path)
    direct = catlib.evaluate(bench, catlib.merge("ties", bench.pretrained, bench.finetuned_list()))
    assert res["per_task"] == pytest.approx(direct, abs=1e-3)


def test_openclip_benchmark_needs_a_model_name(roots):
    with pytest.raises(SystemExit, match="needs --model-name"):
        main(["evaluate", "--benchmark", "openclip", "--checkpoint-root", roots["checkpoint_root"],
              "--data-root", roots["data_root"], "--method", "ties", "--json"])
    with pytest.raises(SystemExit, match="fixes its architecture"):
        main(["evaluate", "--benchmark", "vit-b-32", "--model-name", "ViT-B-16", "--checkpoint-root",
              roots["checkpoint_root"], "--data-root", roots["data_root"], "--method", "ties", "--json"])
