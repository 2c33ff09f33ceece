"""glue-tiny: the procedural GLUE-like tasks, the encoding convention, the model's keys, and a --smoke build."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest
import torch
from safetensors.torch import load_file
from transformers import RobertaForSequenceClassification

from catlib.benchmarks.glue_tiny import build as B
from catlib.benchmarks.glue_tiny import data as D
from catlib.benchmarks.glue_tiny.model import MAX_LEN, Encoder, Head, tiny_config
from catlib.benchmarks.metrics import GLUE_METRIC

SMALL = dict(n_train=400, n_val=100, n_test=100)


def test_vocabulary_and_special_ids():
    assert D.VOCAB[:4] == ("<s>", "<pad>", "</s>", "<unk>")
    assert D.VOCAB[-1] == "<mask>" and D.MASK == D.VOCAB_SIZE - 1
    assert len(set(D.VOCAB)) == D.VOCAB_SIZE and 300 <= D.VOCAB_SIZE <= 1500


def test_task_table():
    assert list(D.TASKS) == ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"]
    for name, t in D.TASKS.items():
        assert t.metric == name and name in GLUE_METRIC
        assert (t.kind, t.n_labels) == ("regression", 1) if name == "stsb" else t.kind == "classification"
    assert D.TASKS["mnli"].n_labels == 3 and D.TASKS["rte"].n_train < D.TASKS["mnli"].n_train


@pytest.mark.parametrize("task", list(D.TASKS))
def test_determinism_and_kind(task):
    ex, y = D.task_split(task, "val", seed=3, **SMALL)
    assert (ex, y) == D.task_split(task, "val", seed=3, **SMALL)
    assert ex != D.task_split(task, "val", seed=4, **SMALL)[0]
    assert len(ex) == len(y) == SMALL["n_val"]
    single = task in ("cola", "sst2")
    assert all(isinstance(a, str) and a and ((b is None) == single) for a, b in ex)
    assert all(w in D.WORD_ID for a, b in ex for w in (a + " " + (b or "")).split()), "a word outside the vocabulary"
    if D.TASKS[task].kind == "regression":
        assert all(isinstance(v, float) and 0.0 <= v <= 5.0 for v in y)
    else:
        assert all(isinstance(v, int) and 0 <= v < D.TASKS[task].n_labels for v in y)


@pytest.mark.parametrize("task", list(D.TASKS))
def test_splits_are_disjoint(task):
    parts = {s: set(D.task_split(task, s, seed=0, **SMALL)[0]) for s in D.SPLITS}
    assert [len(parts[s]) for s in D.SPLITS] == [SMALL["n_train"], SMALL["n_val"], SMALL["n_test"]]
    assert not parts["train"] & parts["val"] and not parts["train"] & parts["test"] and not parts["val"] & parts["test"]
    # test and val do not move when the training set grows
    assert D.task_split(task, "test", 0, n_train=50, n_val=100, n_test=100) == D.task_split(task, "test", 0, **SMALL)


@pytest.mark.parametrize("task", list(D.TASKS))
def test_label_balance(task):
    t = D.TASKS[task]
    _, y = D.task_split(task, "train", seed=0, n_train=1000, n_val=50, n_test=50)
    if t.kind == "regression":
        mean = sum(y) / len(y)
        assert 1.5 < mean < 3.5 and min(y) < 0.5 and max(y) > 4.5
        return
    counts = Counter(y)
    for c in range(t.n_labels):
        assert 0.8 / t.n_labels < counts[c] / len(y) < 1.2 / t.n_labels, counts


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown task"):
        D.task_split("wnli", "train")
    with pytest.raises(ValueError, match="unknown split"):
        D.task_split("cola", "dev")
    with pytest.raises(ValueError, match="positive integer"):
        D.task_split("cola", "val", n_val=0)
    with pytest.raises(ValueError, match="max_len"):
        D.encode([("the dog runs .", None)], max_len=3)
    with pytest.raises(ValueError):
        D.mlm_corpus(0)


def test_encoding_convention():
    out = D.encode([("the dog runs .", None), ("the cat sleeps .", "who sleeps ?")], max_len=MAX_LEN)
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.dtype == mask.dtype == torch.int64 and ids.shape == mask.shape == (2, 11)
    the, dog, cat = D.WORD_ID["the"], D.WORD_ID["dog"], D.WORD_ID["cat"]
    assert ids[0, :7].tolist() == [0, the, dog, D.WORD_ID["runs"], D.WORD_ID["."], 2, 1]
    assert ids[1, :3].tolist() == [0, the, cat] and ids[1, 5:7].tolist() == [2, 2] and ids[1, -1] == 2
    assert (ids[0, 6:] == 1).all() and (mask[0, 6:] == 0).all() and (mask[0, :6] == 1).all() and (mask[1] == 1).all()
    # truncation: the longer segment loses its last words first; max_len counts the special tokens
    cut = D.encode([("the dog runs in the park every day .", "the cat sleeps .")], max_len=10)["input_ids"][0]
    assert len(cut) == 10 and cut[0] == 0 and cut[-1] == 2 and cut.tolist().count(2) == 3
    assert D.encode([("zebra runs .", None)])["input_ids"][0, 1] == D.UNK


def test_mlm_corpus_deterministic_and_mixed():
    c = D.mlm_corpus(200, seed=1)
    assert c == D.mlm_corpus(200, seed=1) and c != D.mlm_corpus(200, seed=2)
    assert any(b is None for _, b in c) and any(b is not None for _, b in c)


def test_mask_tokens_rule():
    enc = D.encode(D.mlm_corpus(400, 0))
    inputs, labels = B.mask_tokens(enc["input_ids"], enc["attention_mask"], torch.Generator().manual_seed(0))
    picked = labels != -100
    special = (enc["input_ids"] <= 2) | (enc["attention_mask"] == 0)
    assert not (picked & special).any()
    assert 0.12 < picked.sum() / (~special).sum() < 0.18
    masked = (inputs == D.MASK) & picked
    assert 0.75 < masked.sum() / picked.sum() < 0.85
    assert (inputs[~picked] == enc["input_ids"][~picked]).all()


def test_encoder_keys_match_hf_sequence_classification():
    cfg = tiny_config()
    assert cfg.max_position_embeddings >= MAX_LEN + 2 and cfg.vocab_size == D.VOCAB_SIZE and cfg.pad_token_id == 1
    hf = RobertaForSequenceClassification(tiny_config(num_labels=3)).state_dict()
    enc = Encoder(cfg).state_dict()
    assert set(enc) == {k for k in hf if k.startswith("roberta.")}
    assert not any("pooler" in k for k in enc)
    head = Head(cfg.hidden_size, 3).state_dict()
    assert {k: v.shape for k, v in head.items()} == {
        k[len("classifier.") :]: v.shape for k, v in hf.items() if k.startswith("classifier.")
    }


def test_forward_shapes_and_padding():
    torch.manual_seed(0)
    encoder, head = Encoder(tiny_config()).eval(), Head(128, 1).eval()
    batch = D.encode([("the dog runs .", None), ("the cat sleeps in the park every day .", "who sleeps ?")])
    with torch.no_grad():
        h = encoder(**batch)
        alone = encoder(**D.encode([("the dog runs .", None)]))
    assert h.shape == (2, 128) and head(h).shape == (2, 1)
    torch.testing.assert_close(h[:1], alone, atol=1e-5, rtol=1e-4)  # padding does not change the output


def test_smoke_build(tmp_path):
    out = tmp_path / "zoo"
    m = B.build(out, threads=1, smoke=True, log=lambda s: None)
    names = {p.name for p in out.iterdir()}
    assert names == {"pretrained.safetensors", "heads.safetensors", "manifest.json"} | {
        f"finetuned_{t}.safetensors" for t in D.TASKS
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["results"] == json.loads(json.dumps(m["results"]))
    for name, rec in manifest["files"].items():
        data = (out / name).read_bytes()
        assert rec == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert set(manifest["files"]) == names - {"manifest.json"}
    keys = set(Encoder(tiny_config()).state_dict())
    for t in D.TASKS:
        sd = load_file(str(out / f"finetuned_{t}.safetensors"))
        assert set(sd) == keys and all(v.dtype == torch.float16 for v in sd.values())
    heads = load_file(str(out / "heads.safetensors"))
    assert heads["stsb.out_proj.weight"].shape == (1, 128) and heads["mnli.out_proj.weight"].shape == (3, 128)
    assert all(v.dtype == torch.float32 for v in heads.values())
    res = manifest["results"]
    assert len(B.FULL["alphas"]) == 20 and B.FULL["alphas"][0] == 0.05 and B.FULL["alphas"][-1] == 1.0
    assert set(res["task_arithmetic"]["val_curve"]) == {str(a) for a in B.SMOKE["alphas"]}
    for method in ("pretrained", "individual", "weight_averaging", "task_arithmetic"):
        assert set(res[method]["test"]) == set(D.TASKS) | {"avg"}
    assert set(manifest["data_sha256"]) == set(D.TASKS) and not list(tmp_path.glob(".*"))
