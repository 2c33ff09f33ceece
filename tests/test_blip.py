"""The real Table 4 path (``blip``) end to end on stand-ins generated here with transformers: a tiny random
BlipForQuestionAnswering θ0 with a WordPiece tokenizer and BLIP's image processor, six experts saved with
``save_pretrained`` (safetensors, one as a torch .bin), and a few images and annotations of each dataset in its
published layout (COCO caption JSON, VQA question/annotation pairs, TextVQA's file, ScienceQA's problems.json);
then every merging method on it, the CLI, and the clear errors for what is missing."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import catlib
from catlib.benchmarks.vl import VL_TASKS
from catlib.core.errors import ArchitectureMismatchError, CheckpointNotFoundError, DatasetMissingError

transformers = pytest.importorskip("transformers")
PIL = pytest.importorskip("PIL")

ROOT = Path(__file__).resolve().parents[1]
WORDS = "a the red blue green circle square cat dog on left right of sign reads stop open two three what is".split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"]


def _config(vocab_size: int):
    return transformers.BlipConfig(
        text_config=dict(
            vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=64, pad_token_id=0, bos_token_id=5, sep_token_id=3, encoder_hidden_size=16,
        ),
        vision_config=dict(
            hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=32,
            patch_size=8,
        ),
    )  # fmt: skip


def _image(path: Path, rng) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)


def _sentence(rng, n=4):
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n))


def make_roots(tmp: Path, bin_task: str = "okvqa"):
    """checkpoint_root and data_root in the layouts ``blip`` reads (module docstring of catlib.benchmarks.blip)."""
    ck, data = tmp / "ckpt", tmp / "data"
    theta0 = ck / "blip-vqa-base"
    theta0.mkdir(parents=True)
    (theta0 / "vocab.txt").write_text("\n".join(SPECIALS + WORDS) + "\n")
    # BLIP's tokenizer: BERT's WordPiece with [DEC] (the decoder's start) as bos and [ENC] as an extra special token
    tok = transformers.BertTokenizer.from_pretrained(
        str(theta0), bos_token="[DEC]", additional_special_tokens=["[ENC]"]
    )
    tok.save_pretrained(str(theta0))
    transformers.BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(str(theta0))
    torch.manual_seed(0)
    model = transformers.BlipForQuestionAnswering(_config(len(SPECIALS) + len(WORDS))).eval()
    model.save_pretrained(str(theta0))
    for i, t in enumerate(VL_TASKS):
        torch.manual_seed(1 + i)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.02 * torch.randn_like(p))
        model.save_pretrained(str(ck / t), safe_serialization=(t != bin_task))
        torch.manual_seed(0)
        model = transformers.BlipForQuestionAnswering.from_pretrained(str(theta0)).eval()
    rng = np.random.default_rng(0)
    for t in ("coco_caption", "flickr30k", "textcaps"):  # COCO-style caption files
        for split, year in (("train", "train2014"), ("val", "val2014")):
            n = 12 if split == "train" else 4
            images, anns = [], []
            for j in range(n):
                iid = 100 * (split == "val") + j + 1
                name = f"COCO_{year}_{iid:012d}.jpg"
                _image(data / t / year / name, rng)
                images.append({"id": iid, "file_name": name})
                anns += [{"image_id": iid, "id": 10 * iid + k, "caption": _sentence(rng)} for k in range(2)]
            out = data / t / "annotations" / f"captions_{year}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"images": images, "annotations": anns}))
    for split, year in (("train", "train2014"), ("val", "val2014")):  # OK-VQA: VQA-style pairs
        qs, anns = [], []
        for j in range(12 if split == "train" else 4):
            iid, qid = 200 * (split == "val") + j + 1, 1000 * (split == "val") + j
            _image(data / "okvqa" / year / f"COCO_{year}_{iid:012d}.jpg", rng)
            qs.append({"image_id": iid, "question": _sentence(rng) + "?", "question_id": qid})
            anns.append(
                {"question_id": qid, "image_id": iid, "answers": [{"answer": w} for w in ["red"] * 6 + ["two"] * 4]}
            )
        (data / "okvqa" / f"OpenEnded_mscoco_{year}_questions.json").write_text(json.dumps({"questions": qs}))
        (data / "okvqa" / f"mscoco_{year}_annotations.json").write_text(json.dumps({"annotations": anns}))
    for split in ("train", "val"):  # TextVQA's own file
        rows = []
        for j in range(12 if split == "train" else 4):
            iid = f"{split}{j:04x}"
            _image(data / "textvqa" / f"{split}_images" / f"{iid}.jpg", rng)
            rows.append({"question": "what does the sign read?", "image_id": iid, "answers": ["stop"] * 10})
        (data / "textvqa" / f"TextVQA_0.5.1_{split}.json").write_text(json.dumps({"data": rows}))
    problems = {}
    for j in range(16):  # ScienceQA
        split = "train" if j < 12 else "test"
        pid = str(j + 1)
        problems[pid] = {"question": "which is a circle?", "choices": ["the red circle", "the blue square"],
                         "answer": j % 2, "image": "image.png" if j != 13 else None, "split": split}  # fmt: skip
        if j != 13:
            _image(data / "scienceqa" / "images" / split / pid / "image.png", rng)
    (data / "scienceqa" / "problems.json").write_text(json.dumps(problems))
    return ck, data


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return make_roots(tmp_path_factory.mktemp("blip"))


@pytest.fixture(scope="module")
def bench(roots):
    return catlib.load_benchmark("blip", checkpoint_root=roots[0], data_root=roots[1], device="cpu")


def test_loads_every_layout(bench):
    b = bench
    assert b.tasks == list(VL_TASKS) and b.generative
    assert set(b.pretrained) == set(b.build_module().state_dict())
    # the tied decoder output is θ0's word-embedding tensor itself, as in the module: merged once
    sd = b.pretrained
    assert (
        sd["text_decoder.cls.predictions.decoder.weight"] is sd["text_decoder.bert.embeddings.word_embeddings.weight"]
    )
    assert len(b.examples("coco_caption", "train")) + len(b.examples("coco_caption", "val")) == 2 * 11 + 1
    assert [len(b.examples(t, "test")) for t in VL_TASKS] == [4, 4, 4, 4, 4, 3]  # ScienceQA: test, with an image
    item = b.examples("okvqa", "test")[0]
    assert item.references == ["red"] * 6 + ["two"] * 4 and b.decode(item.answer) == "red"
    assert b.decode(b.examples("scienceqa", "test")[0].answer) in ("the red circle", "the blue square")
    x, y = b.exemplars("textvqa", 3, labelled=True)
    assert x["pixel_values"].shape == (3, 3, 32, 32) and y.shape == (3, x["answer_ids"].shape[1] - 1)
    assert b.metric("coco_caption")[0] == "CIDEr-D (× 100)" and b.metric("okvqa")[0] == "VQA accuracy"


def test_generation_scores_and_padding_free_batches(bench):
    b = bench
    module = b.build_module()
    preds, refs = b.generate(module, "okvqa", "test", batch_size=3)
    assert len(preds) == 4 and all(isinstance(p, str) for p in preds)
    # a question's answer does not depend on the batch it is generated in
    assert b.generate(module, "okvqa", "test", batch_size=1)[0] == preds
    scores = catlib.evaluate(b, b.pretrained, "test")
    assert set(scores) == set(VL_TASKS) and all(np.isfinite(v) for v in scores.values())
    assert all(0 <= v <= 1000 for t, v in scores.items() if VL_TASKS[t].kind == "caption")  # CIDEr-D × 100 ≤ 1000


def test_every_method_merges_the_whole_model(bench):
    """Each registered method on two tasks with 2 exemplars: every tensor of the three parts is merged, the tied
    decoder output stays tied, and the merged model generates."""
    from catlib.protocol import Session

    S = Session(bench, cache=None)
    tasks = ["coco_caption", "okvqa"]
    for method in catlib.methods():
        sd = S.merged(S.spec(method, None, tasks, 2, 0))
        assert set(sd) == set(bench.pretrained), method
        assert torch.equal(
            sd["text_decoder.cls.predictions.decoder.weight"], sd["text_decoder.bert.embeddings.word_embeddings.weight"]
        ), method
        assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point()), method
    out = catlib.evaluate(bench, sd, "val", tasks)
    assert set(out) == set(tasks)


def test_cli_evaluate_json(roots):
    r = subprocess.run(
        [sys.executable, "-m", "catlib", "evaluate", "--benchmark", "blip", "--checkpoint-root", str(roots[0]),
         "--data-root", str(roots[1]), "--method", "cat", "--tasks", "textcaps", "scienceqa", "--exemplars", "2",
         "--device", "cpu", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["metrics"] == {"textcaps": "CIDEr-D (× 100)", "scienceqa": "accuracy"}
    assert set(out["per_task"]) == {"textcaps", "scienceqa"}
    assert out["average"] == pytest.approx(sum(out["per_task"].values()) / 2, abs=1e-3)


def test_clear_errors(roots, tmp_path):
    ck, data = roots
    kw = dict(device="cpu")
    # a missing expert
    bad = tmp_path / "ck"
    shutil.copytree(ck, bad)
    shutil.rmtree(bad / "textvqa")
    with pytest.raises(CheckpointNotFoundError, match="no expert for task 'textvqa'"):
        catlib.load_benchmark("blip", checkpoint_root=bad, data_root=data, **kw)
    # a captioning model (no text encoder) in place of an expert
    shutil.rmtree(bad / "okvqa")
    transformers.BlipForConditionalGeneration(_config(len(SPECIALS) + len(WORDS))).save_pretrained(str(bad / "okvqa"))
    with pytest.raises(ArchitectureMismatchError, match="BlipForConditionalGeneration"):
        catlib.load_benchmark("blip", checkpoint_root=bad, data_root=data, tasks=["okvqa"], **kw)
    # no processor
    bad2 = tmp_path / "ck2"
    shutil.copytree(ck, bad2)
    (bad2 / "blip-vqa-base" / "preprocessor_config.json").unlink()
    with pytest.raises(CheckpointNotFoundError, match="no BLIP processor"):
        catlib.load_benchmark("blip", checkpoint_root=bad2, data_root=data, tasks=["okvqa"], **kw)
    # missing data: a task folder, a caption file, an image
    bad_data = tmp_path / "data"
    shutil.copytree(data, bad_data)
    b = catlib.load_benchmark("blip", checkpoint_root=ck, data_root=bad_data, tasks=["flickr30k", "okvqa"], **kw)
    shutil.rmtree(bad_data / "okvqa")
    with pytest.raises(DatasetMissingError, match="okvqa"):
        b.examples("okvqa", "test")
    (bad_data / "flickr30k" / "annotations" / "captions_val2014.json").unlink()
    with pytest.raises(DatasetMissingError, match="COCO-style caption JSON"):
        b.examples("flickr30k", "test")
    next((bad_data / "flickr30k" / "train2014").glob("*.jpg")).unlink()
    with pytest.raises(DatasetMissingError, match="an image the annotations name"):
        b.examples("flickr30k", "train")
    with pytest.raises(TypeError, match="unknown option"):
        catlib.load_benchmark("blip", checkpoint_root=ck, data_root=data, max_length=3)


@pytest.mark.slow
def test_table4_notebook_on_standin_roots(roots, tmp_path, notebook_env):
    """notebooks/15_table4.ipynb with benchmark="blip", as a user runs it on real folders: its results file names
    each task's metric, counts task-wise wins, and agrees with catlib's API on the same roots."""
    from conftest import run_page_on_standins

    res = run_page_on_standins("15_table4", "blip", roots, tmp_path, "standin_table4")
    assert res["metrics"]["coco_caption"] == "CIDEr-D (× 100)" and res["metrics"]["okvqa"] == "VQA accuracy"
    assert res["wins"]["paper"]["CAT Merging"] == 5  # the paper's "#best", recomputed from its table
    assert sum(res["wins"]["ours"].values()) >= 6  # every task has a best merging method (ties count for each)
    assert len(res["acceptance"]) == 3
