"""The real Table 3 path (``roberta-glue``) end to end on stand-ins generated here with transformers: a tiny random
RoBERTa θ0 with a byte-level BPE tokenizer, eight RobertaForSequenceClassification experts saved with
``save_pretrained`` (safetensors, one as a torch .bin), and a few rows of each GLUE task in the ``glue`` dataset's
parquet layout or GLUE's original TSV files; then every clear error for what is missing."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import catlib
from catlib.benchmarks.text import GLUE_TASKS
from catlib.core.errors import ArchitectureMismatchError, CheckpointNotFoundError, DatasetMissingError

transformers = pytest.importorskip("transformers")
pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

ROOT = Path(__file__).resolve().parents[1]
WORDS = "the a cat dog sat ran on mat quickly slowly good bad film was not very is are who what where".split()


def _sentence(rng, n=6):
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n))


def make_roots(tmp: Path, tsv=("rte", "stsb", "cola")):
    """checkpoint_root and data_root in the layouts roberta_glue reads; TSV files for the tasks in ``tsv``."""
    import numpy as np
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing

    ck, data = tmp / "ckpt", tmp / "glue"
    theta0 = ck / "roberta-base"
    theta0.mkdir(parents=True)
    rng = np.random.default_rng(0)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [_sentence(rng) for _ in range(200)], vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    bpe._tokenizer.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))  # <s> A </s></s> B </s>
    tok = transformers.RobertaTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
    )  # fmt: skip
    tok.save_pretrained(str(theta0))
    cfg = dict(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=40, pad_token_id=tok.pad_token_id, type_vocab_size=1,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.RobertaForMaskedLM(transformers.RobertaConfig(**cfg)).save_pretrained(str(theta0))
    for i, (name, task) in enumerate(GLUE_TASKS.items()):
        torch.manual_seed(1 + i)
        model = transformers.RobertaForSequenceClassification(transformers.RobertaConfig(**cfg, num_labels=task.labels))
        model.save_pretrained(str(ck / name), safe_serialization=name != "mrpc")  # mrpc: pytorch_model.bin
        folder = data / name
        folder.mkdir(parents=True)
        for split, n in (("train", 30), (task.validation, 12)):
            a = [_sentence(rng) for _ in range(n)]
            b = [_sentence(rng) for _ in range(n)] if task.b else None
            y = rng.uniform(0, 5, n).round(2) if task.labels == 1 else rng.integers(0, task.labels, n)
            if name in tsv:
                _write_tsv(folder, name, split, a, b, y)
            else:
                cols = {task.a: a, **({task.b: b} if task.b else {}), "label": y, "idx": range(n)}
                pd.DataFrame(cols).to_parquet(folder / f"{split}-00000-of-00001.parquet")
    return ck, data


def _write_tsv(folder, name, split, a, b, y):
    """GLUE's original files: CoLA without a header, RTE with label words, STS-B with its many columns."""
    fname = "train.tsv" if split == "train" else "dev.tsv"
    if name == "cola":
        rows = [f"src\t{int(v)}\t*\t{s}" for s, v in zip(a, y)]
    elif name == "rte":
        rows = ["index\tsentence1\tsentence2\tlabel"]
        rows += [
            f"{i}\t{s}\t{t}\t{['entailment', 'not_entailment'][int(v)]}" for i, (s, t, v) in enumerate(zip(a, b, y))
        ]
    else:  # stsb
        rows = ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"]
        rows += [f"{i}\tg\tf\t2012\t{i}\ts\ts\t{s}\t{t}\t{v}" for i, (s, t, v) in enumerate(zip(a, b, y))]
    (folder / fname).write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return make_roots(tmp_path_factory.mktemp("roberta_glue"))


def test_loads_experts_heads_data_and_scores_each_task_with_its_glue_metric(roots):
    ck, data = roots
    bench = catlib.load_benchmark("roberta-glue", checkpoint_root=ck, data_root=data)
    assert bench.tasks == list(GLUE_TASKS) and bench.pad_id == 1
    keys = set(bench.pretrained)
    assert "roberta.embeddings.word_embeddings.weight" in keys and not any(
        "pooler" in k or "lm_head" in k for k in keys
    )
    assert all(set(sd) == keys for sd in bench.finetuned.values())
    saved = transformers.RobertaForSequenceClassification.from_pretrained(str(ck / "qnli")).state_dict()
    assert torch.equal(bench.finetuned["qnli"]["roberta.encoder.layer.1.output.dense.weight"],
                       saved["roberta.encoder.layer.1.output.dense.weight"])  # fmt: skip
    assert torch.equal(bench.heads["qnli"].out_proj.weight, saved["classifier.out_proj.weight"])
    assert bench.heads["mnli"].out_proj.out_features == 3 and bench.heads["stsb"].out_proj.out_features == 1
    # 10% of the training set held out (seeded) as val, the rest train; GLUE's validation set is the test split
    tr, va, te = (bench.examples("rte", s) for s in ("train", "val", "test"))
    assert (len(tr[0]), len(va[0]), len(te[0])) == (27, 3, 12)
    assert tr[1].dtype == torch.int64 and bench.examples("stsb", "test")[1].dtype == torch.float32
    assert tr[0][0][0] == 0 and tr[0][0][-1] == 2  # <s> ... </s>
    scores = catlib.evaluate(bench, bench.finetuned["cola"], "test")
    assert set(scores) == set(GLUE_TASKS) and all(-100 <= v <= 100 for v in scores.values())
    x, y = bench.exemplars("mnli", 4, seed=1, labelled=True)
    assert x["input_ids"].shape == x["attention_mask"].shape and x["input_ids"].shape[0] == 4 and len(y) == 4


def test_every_kind_of_merge_runs_and_the_cli_names_the_metrics(roots):
    ck, data = roots
    from catlib.protocol import Session

    bench = catlib.load_benchmark("roberta-glue", checkpoint_root=ck, data_root=data, tasks=["cola", "stsb", "mnli"])
    S = Session(bench, cache=None)
    for method in ("cat", "regmean", "fisher", "tatr", "ties"):
        spec = S.spec(method, None, n_exemplars=4)
        merged = catlib.merge(method, bench.pretrained, bench.finetuned_list(), stats=S.statistics(spec), **spec.hp)
        assert set(merged) == set(bench.pretrained)
    out = subprocess.run(
        [sys.executable, "-m", "catlib", "evaluate", "--benchmark", "roberta-glue", "--checkpoint-root", str(ck),
         "--data-root", str(data), "--tasks", "cola", "stsb", "--method", "task_arithmetic", "--alpha", "0.3",
         "--json"],
        capture_output=True, text=True, cwd=ROOT, env={"CATLIB_PROGRESS": "0", "PATH": "", "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["metrics"] == {"cola": "Matthews correlation", "stsb": "mean of Pearson and Spearman"}


def _broken(roots, tmp_path, what):
    ck, data = roots
    c, d = tmp_path / "ck", tmp_path / "data"
    shutil.copytree(ck, c)
    shutil.copytree(data, d)
    if what == "task":
        shutil.rmtree(c / "rte")
    elif what == "head":
        sd = transformers.RobertaForSequenceClassification.from_pretrained(str(c / "sst2")).roberta
        shutil.rmtree(c / "sst2")
        sd.save_pretrained(str(c / "sst2"))
    elif what == "labels":
        shutil.rmtree(c / "stsb")
        shutil.copytree(c / "mnli", c / "stsb")
    elif what == "tokenizer":
        for f in ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"):
            (c / "roberta-base" / f).unlink(missing_ok=True)
    elif what == "data":
        (d / "rte" / "dev.tsv").unlink()
    return c, d


@pytest.mark.parametrize(
    "what, error, match",
    [
        ("task", CheckpointNotFoundError, "no expert for task 'rte'"),
        ("head", CheckpointNotFoundError, "no classification head"),
        ("labels", ArchitectureMismatchError, "STS-B needs 1"),
        ("tokenizer", CheckpointNotFoundError, "no tokenizer"),
        ("data", DatasetMissingError, "RTE validation"),
    ],
)
def test_what_is_missing_is_named(roots, tmp_path, what, error, match):
    c, d = _broken(roots, tmp_path, what)
    with pytest.raises(error, match=match):
        bench = catlib.load_benchmark("roberta-glue", checkpoint_root=c, data_root=d)
        bench.examples("rte", "test")


@pytest.mark.slow
def test_table3_notebook_on_standin_roots(roots, tmp_path, notebook_env):
    """notebooks/14_table3.ipynb with benchmark="roberta-glue", as a user runs it on real folders: its results file
    names each task's metric and agrees with catlib's API on the same roots."""
    from conftest import run_page_on_standins

    res = run_page_on_standins("14_table3", "roberta-glue", roots, tmp_path, "standin_table3", cat_exemplars_check=4)
    assert res["metrics"]["cola"] == "Matthews correlation" and res["metrics"]["stsb"] == "mean of Pearson and Spearman"
    assert not res["replicated"]["task_arithmetic"] and res["replicated"]["cat"]  # one set of checkpoints
    assert set(res["acceptance"]) == {
        "Individual, average",
        "Individual − task arithmetic",
        "best − worst merging method",
    }
