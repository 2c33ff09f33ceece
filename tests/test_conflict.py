"""Knowledge-conflict diagnostics and the Theorem 4.4 bound on a small network."""

import pytest
import torch

from catlib.analysis import conflict
from catlib.core.statedict import apply


def test_conflict_matrix_definition(vit_setup):
    s = vit_setup
    p, fts, heads, batches = s["pretrained"], s["finetuned"], s["heads"], s["labelled"]
    M = conflict.conflict_matrix(s["module"], heads, p, fts, batches)
    assert torch.equal(M.diagonal(), torch.zeros(3, dtype=torch.float64))
    tau1 = {k: fts[1][k] - p[k] for k in p}
    direct = conflict.loss(s["module"], heads[0], apply(fts[0], tau1), *batches[0]) - conflict.loss(
        s["module"], heads[0], fts[0], *batches[0]
    )
    assert float(M[0, 1]) == pytest.approx(direct, abs=1e-6)


@pytest.mark.parametrize("pair", [(0, 1), (1, 2), (2, 0)])
def test_theorem_44_bound_holds_with_path_constants(vit_setup, pair):
    s = vit_setup
    k, i = pair
    tau_i = {key: s["finetuned"][i][key] - s["pretrained"][key] for key in s["pretrained"]}
    r = conflict.theorem44(s["module"], s["heads"][k], s["finetuned"][k], tau_i, *s["labelled"][k])
    assert r.holds and 0 < r.tightness <= 1
    assert len(r.delta_f_hat) == len(r.stage_names) == 4  # embed, 2 blocks, pool
    # first stage: nothing upstream, so the total shift equals the isolated one
    assert r.delta_f[0] == pytest.approx(r.delta_f_hat[0], rel=1e-6)
    # Lemma 4.2 at every later stage (per-batch means of per-example inequalities)
    for l in range(1, 4):
        assert r.delta_f[l] <= r.gamma[l] * r.delta_f[l - 1] + r.delta_f_hat[l] + 1e-6


def test_jacobian_constants_are_reported(vit_setup):
    s = vit_setup
    tau = {key: s["finetuned"][1][key] - s["pretrained"][key] for key in s["pretrained"]}
    r = conflict.theorem44(s["module"], s["heads"][0], s["finetuned"][0], tau, *s["labelled"][0], lipschitz="jacobian")
    assert r.beta > 0 and all(g > 0 for g in r.gamma[1:])


def test_pair_grid_zero_at_origin(vit_setup):
    s = vit_setup
    p, fts = s["pretrained"], s["finetuned"]
    ta = {k: fts[0][k] - p[k] for k in p}
    tb = {k: fts[1][k] - p[k] for k in p}
    g = conflict.pair_conflict_grid(s["module"], s["heads"][:2], p, (ta, tb), s["labelled"][:2], [0.0, 0.5])
    assert g.shape == (2, 2) and float(g[0, 0]) == 0.0
    # a = 0.5, b = 0: only task b's loss moves, by adding 0.5·T_a to θ0
    m, h, (xb, yb) = s["module"], s["heads"][1], s["labelled"][1]
    expected = conflict.loss(m, h, apply(p, ta, 0.5), xb, yb) - conflict.loss(m, h, p, xb, yb)
    assert float(g[1, 0]) == pytest.approx(expected, abs=1e-6)


def test_ball_constants_do_not_see_the_bounded_perturbation(vit_setup):
    """The default constants come from random probes around the clean inputs: the same for two perturbations
    that leave the stage inputs unchanged, and (being lower bounds of the local constants) free to make the
    bound fail, unlike the "path" constants, which hold by construction."""
    s = vit_setup
    tau = {key: s["finetuned"][1][key] - s["pretrained"][key] for key in s["pretrained"]}
    ball = conflict.theorem44(s["module"], s["heads"][0], s["finetuned"][0], tau, *s["labelled"][0])
    again = conflict.theorem44(s["module"], s["heads"][0], s["finetuned"][0], tau, *s["labelled"][0])
    assert ball.gamma[1:] == again.gamma[1:] and ball.beta == again.beta  # seeded probes: deterministic
    path = conflict.theorem44(s["module"], s["heads"][0], s["finetuned"][0], tau, *s["labelled"][0], lipschitz="path")
    assert path.holds
    assert all(g > 0 for g in ball.gamma[1:]) and ball.beta > 0
    assert ball.gamma[1:] != path.gamma[1:]
    with pytest.raises(ValueError, match="ball"):
        conflict.theorem44(s["module"], s["heads"][0], s["finetuned"][0], tau, *s["labelled"][0], lipschitz="x")


def test_ball_ratio_of_a_linear_map_is_below_its_norm():
    import torch

    A = torch.diag(torch.tensor([10.0] + [0.1] * 63))  # one sharp direction a random probe rarely meets
    r = conflict._ball_ratio(lambda h: h @ A.T, torch.randn(16, 64), probes=8, radii=(0.1,), seed=0)
    assert 0.1 < r < 10.0  # random directions give a lower bound of the Lipschitz constant, here far below it
