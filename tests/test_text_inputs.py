"""Text in catlib's core: statistics from token batches (padding excluded), Fisher and TATR statistics for regression
heads, evaluation with a task's own metric, and every merging method on a RoBERTa encoder (transformers)."""

import pytest
import torch
from torch import nn

import catlib
from catlib.benchmarks.base import Benchmark
from catlib.benchmarks.evaluate import evaluate, metric_names
from catlib.benchmarks.metrics import GLUE_METRIC
from catlib.core.stats import collect_statistics

transformers = pytest.importorskip("transformers")

PAD = 1


class Encoder(nn.Module):
    """A tiny RoBERTa encoder returning the ``<s>`` token's final hidden state (B, hidden), with the state-dict
    keys of a ``RobertaForSequenceClassification`` checkpoint's encoder (``roberta.*``)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        cfg = transformers.RobertaConfig(
            vocab_size=40,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=24,
            pad_token_id=PAD,
            type_vocab_size=1,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        self.roberta = transformers.RobertaModel(cfg, add_pooling_layer=False).eval()

    def forward(self, input_ids, attention_mask):
        return self.roberta(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]


def _sequences(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.cat([torch.tensor([0]), torch.randint(4, 40, (int(L),), generator=g), torch.tensor([2])])
        for L in torch.randint(2, 9, (n,), generator=g)
    ]


def _batch(seqs):
    """Pad to the longest with <pad> (1); attention_mask 1 on real tokens."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), PAD, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = s, 1
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="module")
def zoo():
    enc = Encoder(0)
    theta0 = {k: v.clone() for k, v in enc.state_dict().items()}
    experts = []
    for t in range(3):
        g = torch.Generator().manual_seed(10 + t)
        experts.append(
            {k: v + 0.02 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v for k, v in theta0.items()}
        )
    return enc, theta0, experts


def test_padding_enters_no_statistic(zoo):
    """A padded token batch gives the statistics of its sequences run one by one without padding."""
    enc, theta0, experts = zoo
    seqs = [_sequences(6, 100 + t) for t in range(3)]
    padded = collect_statistics(enc, theta0, experts, [_batch(s) for s in seqs], batch_size=4)
    for t, s in enumerate(seqs):  # one by one, no padding: the per-sequence statistics add up to the padded ones
        parts = [collect_statistics(enc, theta0, [experts[t]], [_batch([x])]) for x in s]
        for key, gram in padded.grams[t].items():
            want = sum(p.grams[0][key].matrix() for p in parts)
            assert torch.allclose(gram.matrix(), want, rtol=1e-4, atol=1e-5), key
            assert padded.grams[t][key].n == sum(p.grams[0][key].n for p in parts)
        for key, v in padded.norm_sq[t].items():
            assert torch.allclose(v, sum(p.norm_sq[0][key] for p in parts), rtol=1e-4, atol=1e-5), key
            assert padded.counts[t][key] == sum(len(x) for x in s)
    keys = set(padded.grams[0])  # the attention and MLP linears of the encoder are hooked
    assert "roberta.encoder.layer.0.attention.self.query.weight" in keys
    assert "roberta.encoder.layer.1.output.dense.weight" in keys


def test_regression_fisher_and_gradients():
    """Regression heads: the exact Fisher is the squared gradient of the prediction; the empirical one and TATR's
    mean |gradient| use the squared error to the given targets; a wrong output size is refused."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    head = nn.Linear(2, 1)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(5, 3), torch.randn(5)
    exact = collect_statistics(
        model, sd, [sd], [(x, y)], needs=("fisher",), heads=[head], losses=["regression"], fisher_estimator="exact"
    )
    emp = collect_statistics(
        model,
        sd,
        [sd],
        [(x, y)],
        needs=("fisher", "grad_abs"),
        heads=[head],
        losses=["regression"],
        fisher_estimator="empirical",
    )
    want_exact = {k: torch.zeros_like(v) for k, v in model.named_parameters()}
    want_emp = {k: torch.zeros_like(v) for k, v in model.named_parameters()}
    want_abs = {k: torch.zeros_like(v) for k, v in model.named_parameters()}
    for i in range(5):
        f = head(model(x[i : i + 1]))[0, 0]
        g = torch.autograd.grad(f, list(model.parameters()))
        r = float(f.detach() - y[i])
        for (k, _), gi in zip(model.named_parameters(), g):
            want_exact[k] += gi**2 / 5
            want_emp[k] += (r * gi) ** 2 / 5
            want_abs[k] += (2 * r * gi).abs() / 5  # d/dθ (f − y)² (mean over one element)
    for k in want_exact:
        assert torch.allclose(exact.fisher[0][k], want_exact[k], atol=1e-6), k
        assert torch.allclose(emp.fisher[0][k], want_emp[k], atol=1e-6), k
        assert torch.allclose(emp.grad_abs[0][k], want_abs[k], atol=1e-6), k
    sampled = collect_statistics(model, sd, [sd], [(x, y)], needs=("fisher",), heads=[head], losses=["regression"])
    assert all(torch.isfinite(v).all() for v in sampled.fisher[0].values())
    with pytest.raises(ValueError, match="one value per example"):
        collect_statistics(model, sd, [sd], [(x, y)], needs=("fisher",), heads=[nn.Linear(2, 3)], losses=["regression"])
    with pytest.raises(ValueError, match="losses must name one of"):
        collect_statistics(model, sd, [sd], [(x, y)], needs=("fisher",), heads=[head], losses=["mse"])


class _TextBench(Benchmark):
    """Two tasks on token batches: a 3-class one scored by Matthews correlation, a regression scored by GLUE's
    mean of Pearson and Spearman."""

    def __init__(self, enc, theta0, experts):
        self.name, self.tasks, self.all_tasks = "text", ["cola", "stsb"], ["cola", "stsb"]
        self.pretrained, self.finetuned, self.mtl = theta0, dict(zip(self.tasks, experts[:2])), None
        torch.manual_seed(1)
        self.heads = {"cola": nn.Linear(16, 3), "stsb": nn.Linear(16, 1)}
        self._enc = enc
        self.data = {t: _batch(_sequences(12, 7 + i)) for i, t in enumerate(self.tasks)}
        g = torch.Generator().manual_seed(3)
        self.labels = {"cola": torch.randint(0, 3, (12,), generator=g), "stsb": 5 * torch.rand(12, generator=g)}

    def build_module(self):
        return Encoder(0)

    def loader(self, task, split, batch_size=256):
        x, y, b = self.data[task], self.labels[task], min(batch_size, 5)  # several batches, the last one short
        return [({k: v[i : i + b] for k, v in x.items()}, y[i : i + b]) for i in range(0, 12, b)]

    def exemplars(self, task, n, seed=0, labelled=False):
        x = {k: v[:n] for k, v in self.data[task].items()}
        return (x, self.labels[task][:n]) if labelled else x

    def metric(self, task):
        return GLUE_METRIC[task]

    def loss(self, task):
        return "regression" if task == "stsb" else "classification"


def test_evaluate_reports_each_task_metric_on_token_batches(zoo):
    """evaluate scores each task with its own metric on the loader's token batches: argmax classes for the
    classifier, the one output value for the regression, as a plain forward pass on the whole split gives them."""
    from catlib.benchmarks.evaluate import predict

    enc, theta0, experts = zoo
    bench = _TextBench(enc, theta0, experts)
    got = evaluate(bench, experts[0])
    assert metric_names(bench) == {"cola": "Matthews correlation", "stsb": "mean of Pearson and Spearman"}
    module = bench.build_module()
    module.load_state_dict(experts[0])
    for task in bench.tasks:
        pred, gold = predict(module, bench.heads[task], bench.loader(task, "test"), bench.device, bench.loss(task))
        assert got[task] == pytest.approx(GLUE_METRIC[task][1](pred, gold))
        assert gold == bench.labels[task].tolist()
        with torch.no_grad():
            out = bench.heads[task](module(**bench.data[task]))
        want = out[:, 0] if task == "stsb" else out.argmax(1).float()
        assert torch.allclose(torch.tensor(pred, dtype=torch.float32), want, atol=1e-5)


@pytest.mark.parametrize("method", catlib.methods())
def test_every_method_merges_a_roberta_encoder(zoo, method):
    """Every registered method runs on token batches, with TATR and Fisher using each task's own loss."""
    from catlib.protocol import Session

    enc, theta0, experts = zoo
    bench = _TextBench(enc, theta0, experts)
    S = Session(bench, cache=None)
    spec = S.spec(method, {"steps": 2} if method in ("awd_ta", "awd_ties", "wudi") else None, n_exemplars=4)
    merged = catlib.merge(method, theta0, bench.finetuned_list(), stats=S.statistics(spec), **spec.hp)
    assert set(merged) == set(theta0)
    assert all(torch.isfinite(v).all() for v in merged.values() if v.is_floating_point())


def test_tied_word_embeddings_are_merged_once():
    """A masked-LM RoBERTa ties its decoder to the word embeddings: the merge treats them as one parameter (TIES'
    global threshold counts it once), returns them tied, and equals the merge of the state dict without the alias."""
    from catlib.core.statedict import tied_keys

    cfg = transformers.RobertaConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=24, pad_token_id=PAD, type_vocab_size=1,
    )  # fmt: skip
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(transformers.RobertaForMaskedLM(cfg).state_dict())
    emb, dec = "roberta.embeddings.word_embeddings.weight", "lm_head.decoder.weight"
    assert tied_keys(models[0]) == {dec: emb, "lm_head.decoder.bias": "lm_head.bias"}
    merged = catlib.merge("ties", models[0], models[1:], alpha=0.5, k=0.2)
    assert list(merged) == list(models[0]) and merged[dec] is merged[emb]
    untied = [{k: v for k, v in m.items() if k != dec} for m in models]
    alone = catlib.merge("ties", untied[0], untied[1:], alpha=0.5, k=0.2)
    assert all(torch.equal(alone[k], merged[k]) for k in alone)
