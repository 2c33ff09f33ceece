import os

import pytest
import torch

os.environ.setdefault("CATLIB_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


def tiny_vit(seed: int = 0, width: int = 32, layers: int = 2, output_dim: int = 16):
    """A small open_clip VisionTransformer (the module structure of ViT-B/32)."""
    from open_clip.transformer import VisionTransformer

    torch.manual_seed(seed)
    return VisionTransformer(
        image_size=16, patch_size=4, width=width, layers=layers, heads=4, mlp_ratio=2, output_dim=output_dim
    ).eval()


def perturbed(sd, scale: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    return {
        k: v + scale * torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone() for k, v in sd.items()
    }


@pytest.fixture(scope="session")
def vit_setup():
    """θ0, three fine-tuned state dicts, exemplar batches, heads and labelled batches on a tiny ViT."""
    m = tiny_vit()
    sd0 = {k: v.clone() for k, v in m.state_dict().items()}
    fts = [perturbed(sd0, 0.03, 10 + i) for i in range(3)]
    g = torch.Generator().manual_seed(1)
    ex = [torch.randn(3, 3, 16, 16, generator=g) for _ in range(3)]
    heads = []
    for i in range(3):
        torch.manual_seed(100 + i)
        heads.append(torch.nn.Linear(16, 5).eval())
    labelled = [(x, torch.randint(0, 5, (x.shape[0],), generator=g)) for x in ex]
    return dict(module=m, pretrained=sd0, finetuned=fts, exemplars=ex, heads=heads, labelled=labelled)


@pytest.fixture(scope="session")
def roots(tmp_path_factory):
    """Stand-in checkpoint and dataset roots in every real on-disk layout (generated, never committed)."""
    from standins import make_standin_roots

    return make_standin_roots(tmp_path_factory.mktemp("standins"))


def reduced_zoo_config(n_train: int = 120, alphas=(0.2, 0.5)):
    """The default tiny-zoo recipe shrunk to build in seconds (width 32, 2 layers, a few steps per stage)."""
    import copy

    from catlib.benchmarks.tiny import zoo as Z

    cfg = copy.deepcopy(Z.CONFIGS["default"])
    cfg["data"].update(n_train=n_train, n_val=n_train // 3, n_test=n_train // 3)
    cfg["model"].update(width=32, layers=2, heads=2, output_dim=16)
    cfg["pretrain"].update(
        n_source=256 if n_train >= 120 else 128,
        steps=4 if n_train >= 120 else 3,
        batch=32,
        warmup=1 if n_train < 120 else 2,
    )
    cfg["finetune"].update(steps=3, batch=16, warmup=1)
    cfg["mtl"].update(steps=2, batch_per_task=4, warmup=1)
    cfg["merge"]["alphas"] = list(alphas)
    if "shots" in cfg["heads"]:  # a 60-image split has 1 image in some of the 32 signs classes
        cfg["heads"]["shots"] = 1
    return cfg


@pytest.fixture(scope="session")
def small_zoo(tmp_path_factory):
    """A reduced tiny zoo built once per session (seconds); CATLIB_CACHE points at a temporary folder for its data
    while the session runs."""
    from catlib.benchmarks.tiny import zoo as Z

    cache = tmp_path_factory.mktemp("catlib-cache")
    old = os.environ.get("CATLIB_CACHE")
    os.environ["CATLIB_CACHE"] = str(cache)
    root = tmp_path_factory.mktemp("zoo") / "default"
    Z.build("default", out=root, cfg=reduced_zoo_config(60, alphas=(0.3,)), use_cache=False, log=lambda s: None)
    yield root
    if old is None:
        os.environ.pop("CATLIB_CACHE", None)
    else:
        os.environ["CATLIB_CACHE"] = old


NOTEBOOKS = __import__("pathlib").Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture()
def notebook_env(tmp_path, monkeypatch):
    """A notebook run that writes its results and its merge cache under tmp_path, never over the book's."""
    monkeypatch.setenv("CATLIB_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("CATLIB_REPORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CATLIB_PROGRESS", "0")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    return tmp_path


def run_notebook(name: str, out, parameters: dict) -> dict:
    """Execute notebooks/<name>.ipynb with papermill into ``out`` (kernel "catlib" when installed, else python3)
    and return the executed notebook as JSON."""
    import json

    import papermill as pm
    from jupyter_client.kernelspec import find_kernel_specs

    kernel = "catlib" if "catlib" in find_kernel_specs() else "python3"
    pm.execute_notebook(
        str(NOTEBOOKS / f"{name}.ipynb"),
        str(out),
        parameters=parameters,
        kernel_name=kernel,
        cwd=str(NOTEBOOKS),
        progress_bar=False,
    )
    with open(out) as f:
        return json.load(f)


def run_page_on_standins(page: str, benchmark: str, roots, tmp_path, results_name: str, **extra) -> dict:
    """A Table 3 / Table 4 page (``page``: the notebook's name) on generated stand-in folders ``roots`` =
    (checkpoint root, data root), as a user runs it on real ones, with task arithmetic and CAT on two seeds and
    small grids (``extra``: more parameters). Asserts that no cell failed and that task arithmetic's row agrees with
    catlib's API on the same folders; returns the page's results file's ``results``."""
    import json

    import pytest

    import catlib
    from catlib import report as R

    ck, data = roots
    params = dict(
        benchmark=benchmark,
        checkpoint_root=str(ck),
        data_root=str(data),
        device="cpu",
        methods=["task_arithmetic", "cat"],
        grids={"task_arithmetic": {"alpha": [0.3, 0.6]}, "cat": {"alpha": [0.3]}},
        n_exemplars=2,
        seeds=[0, 1],
        results_name=results_name,
        **extra,
    )
    nb = run_notebook(page, tmp_path / f"{page}.ipynb", params)
    assert not [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    res = json.loads((tmp_path / "results" / f"{results_name}.json").read_text())["results"]
    bench = R.load(benchmark, None, "cpu", str(ck), str(data))
    alpha = res["chosen"]["task_arithmetic"]["alpha"]
    ta = catlib.evaluate(bench, catlib.merge("task_arithmetic", bench.pretrained, bench.finetuned_list(), alpha=alpha))
    assert res["per_task"]["task_arithmetic"] == pytest.approx(ta, abs=1e-3)
    return res
