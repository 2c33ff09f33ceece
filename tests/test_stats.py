"""Statistics collection: hooks see exactly the inputs of each linear map; Grams stream correctly."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from catlib.core.stats import Gram, classify_parameters, collect_statistics, mha_head_outputs
from conftest import tiny_vit


def test_gram_streams_rows_then_dense():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 8, generator=g)
    acc = Gram(8)
    for s in range(0, 50, 3):
        acc.add(X[s : s + 3])
    assert not acc.low_rank and acc.n == 50
    assert torch.allclose(acc.matrix(), X.double().T @ X.double(), atol=1e-8)
    F_ = acc.factor().double()
    assert torch.allclose(F_.T @ F_, X.double().T @ X.double(), atol=1e-4)
    small = Gram(8)
    small.add(X[:5])
    assert small.low_rank and torch.equal(small.factor(), X[:5])


def test_mha_head_outputs_reproduce_out_proj_input():
    m = tiny_vit().transformer.resblocks[0].attn
    x = torch.randn(2, 5, 32)
    z = mha_head_outputs(m, x)
    ref = m(x, x, x, need_weights=False)[0]
    assert torch.allclose(F.linear(z, m.out_proj.weight, m.out_proj.bias), ref, atol=1e-5)


def test_classification_of_vit_parameters():
    info = classify_parameters(tiny_vit())
    assert info["conv1.weight"].kind == "linear"
    assert info["transformer.resblocks.0.attn.in_proj_weight"].kind == "linear"
    assert info["transformer.resblocks.0.attn.out_proj.weight"].kind == "linear"
    assert info["transformer.resblocks.0.mlp.c_fc.weight"].kind == "linear"
    assert info["proj"].kind == "linear" and info["proj"].transposed
    assert info["ln_pre.weight"].kind == "norm_scale"
    assert info["ln_pre.bias"].kind == "shift" and info["class_embedding"].kind == "shift"
    assert info["positional_embedding"].kind == "other"


def test_collected_grams_match_manual_features(vit_setup):
    s = vit_setup
    m, p, fts, ex = s["module"], s["pretrained"], s["finetuned"], s["exemplars"]
    st = collect_statistics(m, p, fts, ex)
    # recompute task 1's inputs by hand on the expert
    expert = tiny_vit()
    expert.load_state_dict(fts[1])
    x = ex[1]
    cols = F.unfold(x, 4, stride=4).transpose(1, 2).reshape(-1, 48)
    assert torch.allclose(st.grams[1]["conv1.weight"].matrix(), cols.double().T @ cols.double(), atol=1e-6)
    h = expert._embeds(x)
    blk = expert.transformer.resblocks[0]
    ln1 = blk.ln_1(h)
    X = ln1.reshape(-1, 32).double()
    assert torch.allclose(st.grams[1]["transformer.resblocks.0.attn.in_proj_weight"].matrix(), X.T @ X, atol=1e-5)
    xhat = F.layer_norm(h, (32,)).reshape(-1, 32).double()
    assert torch.allclose(st.norm_sq[1]["transformer.resblocks.0.ln_1.weight"], (xhat**2).sum(0), atol=1e-5)
    pooled = expert.ln_post(expert.transformer(h))[:, 0].double()
    assert torch.allclose(st.grams[1]["proj"].matrix(), pooled.T @ pooled, atol=1e-5)
    assert st.counts[1]["transformer.resblocks.0.ln_1.weight"] == x.shape[0] * 17


def test_module_is_not_modified_and_statistics_deterministic(vit_setup):
    s = vit_setup
    before = {k: v.clone() for k, v in s["module"].state_dict().items()}
    a = collect_statistics(s["module"], s["pretrained"], s["finetuned"], s["exemplars"], needs=("gram",))
    b = collect_statistics(s["module"], s["pretrained"], s["finetuned"], s["exemplars"], needs=("gram",))
    after = s["module"].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(a.grams[0][k].matrix(), b.grams[0][k].matrix()) for k in a.grams[0])


def test_fisher_and_gradient_statistics(vit_setup):
    s = vit_setup
    st = collect_statistics(
        s["module"],
        s["pretrained"],
        s["finetuned"],
        s["labelled"],
        needs=("fisher", "grad_abs"),
        heads=s["heads"],
        fisher_estimator="empirical",
    )
    f = st.fisher[0]
    assert set(f) == {k for k, _ in s["module"].named_parameters()}
    assert all(bool((v >= 0).all()) for v in f.values()) and sum(float(v.sum()) for v in f.values()) > 0
    # empirical Fisher of one example = its squared gradient
    m = tiny_vit()
    m.load_state_dict(s["finetuned"][0])
    x, y = s["labelled"][0]
    total = {k: torch.zeros_like(p) for k, p in m.named_parameters()}
    for i in range(x.shape[0]):
        m.zero_grad()
        F.cross_entropy(s["heads"][0](m(x[i : i + 1])), y[i : i + 1]).backward()
        for k, p in m.named_parameters():
            total[k] += p.grad**2
    assert torch.allclose(f["proj"], total["proj"] / x.shape[0], rtol=1e-4, atol=1e-10)
    assert set(st.grad_abs[2]) == set(f)


class _TinyDecoder(nn.Module):
    """Next-token logits (B, T, V) of a bag-of-tokens model: an embedding then a linear map."""

    def __init__(self, vocab: int = 7, dim: int = 4):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(vocab, dim)
        self.out = nn.Linear(dim, vocab)

    def forward(self, answer_ids):
        return self.out(self.emb(answer_ids))


def test_sequence_loss_fisher_and_gradients():
    """Sequence targets: the empirical Fisher is the squared gradient of the summed NLL of the counted tokens (-100
    skipped), TATR's mean |gradient| that of the mean cross-entropy; the exact Fisher is refused with a reason."""
    model = _TinyDecoder()
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x = {"answer_ids": torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])}
    y = torch.tensor([[2, 3, 6, -100], [5, 6, -100, -100]])
    head = nn.Identity()
    st = collect_statistics(
        model, sd, [sd], [(x, y)], needs=("fisher", "grad_abs"), heads=[head], losses=["sequence"],
        fisher_estimator="empirical",
    )  # fmt: skip
    want_f = {k: torch.zeros_like(v) for k, v in sd.items()}
    want_g = {k: torch.zeros_like(v) for k, v in sd.items()}
    for i in range(2):
        m = _TinyDecoder()
        m.load_state_dict(sd)
        logits = m(x["answer_ids"][i : i + 1])[0]
        keep = y[i] != -100
        nll = -torch.log_softmax(logits, -1)[keep].gather(1, y[i][keep][:, None]).sum()
        for k, g in zip(dict(m.named_parameters()), torch.autograd.grad(nll, list(m.parameters()), retain_graph=True)):
            want_f[k] += g**2 / 2
        ce = nll / keep.sum()
        for k, g in zip(dict(m.named_parameters()), torch.autograd.grad(ce, list(m.parameters()))):
            want_g[k] += g.abs() / 2
    for k in sd:
        torch.testing.assert_close(st.fisher[0][k], want_f[k])
        torch.testing.assert_close(st.grad_abs[0][k], want_g[k])
    sampled = collect_statistics(model, sd, [sd], [(x, y)], needs=("fisher",), heads=[head], losses=["sequence"])
    assert all(torch.isfinite(v).all() for v in sampled.fisher[0].values())
    with pytest.raises(ValueError, match="exact Fisher of a sequence"):
        collect_statistics(
            model, sd, [sd], [(x, y)], needs=("fisher",), heads=[head], losses=["sequence"], fisher_estimator="exact"
        )
    with pytest.raises(ValueError, match="next-token logits"):
        collect_statistics(
            nn.Linear(3, 2), {"weight": torch.zeros(2, 3), "bias": torch.zeros(2)},
            [{"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}], [(torch.zeros(2, 3), y)], needs=("fisher",),
            heads=[head], losses=["sequence"], fisher_estimator="empirical",
        )  # fmt: skip
