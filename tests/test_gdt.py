"""FNN pieces, SGD and GDT (docs/method.md#the-fnn, #gdt) on small in-memory data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from errorless import fnn
from errorless.config import GDTSettings, SGDSettings
from errorless.train import gdt, gdtgroup, gdtmath, gdtstate, sgd

torch.set_num_threads(1)


def blobs(n: int = 300, d: int = 64, c: int = 5, noise: float = 3.5, seed: int = 0):
    """Class centres + noise, scaled like the real transform (max |v| = 1, 4 decimals)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d))
    y = np.arange(n) % c
    x = centres[y] + noise * rng.normal(size=(n, d))
    x = np.round(x / np.abs(x).max(axis=1, keepdims=True), 4).astype(np.float32)
    return x, y.astype(np.int64)


def sgd_start(
    x: np.ndarray, y: np.ndarray, hidden: int = 32, threshold: float = 0.9, seed: int = 1
):
    X, Y = torch.tensor(x), torch.tensor(y)
    p = fnn.init_params([x.shape[1], hidden, int(y.max()) + 1], seed)
    s, _ = sgd.train_sgd(
        p,
        X,
        Y,
        SGDSettings(threshold=threshold, batch_size=32),
        torch.Generator().manual_seed(seed),
    )
    return X, Y, s


# ---------------------------------------------------------------- oracles


def test_param_count_h1_and_full_model():
    sizes = fnn.layer_sizes(900, [256], 25)
    assert fnn.n_params(sizes) == 237_081
    params = fnn.init_params(sizes, 0)
    assert sum(w.numel() + b.numel() for w, b in params) == 237_081
    assert 17 * 40 * 2 * fnn.n_params(sizes) == 322_430_160


def test_step_length_formula():
    a, b = 0.01, 20.0
    for g in (1e-6, 0.1, 1.0, 3.0, 50.0):
        s = math.exp(-g)
        want = a * (1 + b * s / (1 + s)) / g
        got = gdtmath.step_length(torch.tensor(g, dtype=torch.float64), a, b).item()
        assert got == pytest.approx(want, rel=1e-12)
    # the move η·||g|| lies between a and a(1 + b/2) = 0.11
    assert gdtmath.step_length(
        torch.tensor(1e-9, dtype=torch.float64), a, b
    ).item() * 1e-9 == pytest.approx(0.11, rel=1e-6)
    assert gdtmath.step_length(
        torch.tensor(100.0, dtype=torch.float64), a, b
    ).item() * 100 == pytest.approx(0.01, rel=1e-6)
    assert gdtmath.step_length(torch.tensor(0.0), a, b).isfinite()  # zero gradient: no NaN


@pytest.mark.parametrize("loss", ["cross_entropy", "mse_softmax"])
def test_hand_written_gradients_match_autograd(loss):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 12, generator=g)
    y = torch.randint(0, 4, (40,), generator=g)
    params = fnn.init_params([12, 9, 7, 4], 3)
    temp = 0.7
    value, grads = fnn.loss_and_grads(params, x, y, fnn.Loss(loss, temp))
    leaves = [(w.clone().requires_grad_(), b.clone().requires_grad_()) for w, b in params]
    z = fnn.forward(leaves, x)
    if loss == "cross_entropy":
        ref = torch.nn.functional.cross_entropy(z, y)
    else:
        p = torch.softmax(z / temp, dim=1)
        ref = 0.5 * ((p - torch.nn.functional.one_hot(y, 4)) ** 2).sum(dim=1).mean()
    ref.backward()
    assert value.item() == pytest.approx(ref.item(), rel=1e-5)
    for (gw, gb), (w, b) in zip(grads, leaves, strict=True):
        torch.testing.assert_close(gw, w.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(gb, b.grad, rtol=1e-4, atol=1e-6)
    norm = math.sqrt(sum(float((w.grad**2).sum() + (b.grad**2).sum()) for w, b in leaves))
    assert fnn.flat_norm(grads).item() == pytest.approx(norm, rel=1e-4)


def test_forward_distance_rounding_against_loops():
    params = fnn.init_params([6, 5, 3], 2)
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    z = fnn.forward(params, x)
    for i in range(8):
        h = torch.relu(x[i] @ params[0][0] + params[0][1])
        zi = h @ params[1][0] + params[1][1]
        torch.testing.assert_close(z[i], zi)
        p = torch.softmax(zi, 0)
        e = torch.zeros(3)
        e[int(p.argmax())] = 1
        assert fnn.distance(z)[i].item() == pytest.approx(float(torch.linalg.norm(p - e)), abs=1e-6)
    r = fnn.round_params(params, 2)
    assert np.allclose(r[0][0].numpy() * 100, np.round(r[0][0].numpy() * 100), atol=1e-4)
    cut = fnn.truncate_params([(torch.tensor([0.123, -0.1239, 0.5]), torch.tensor([-0.0001]))], 3)
    torch.testing.assert_close(cut[0][0], torch.tensor([0.123, -0.123, 0.5]))
    assert cut[0][1].item() == 0.0
    arrays = fnn.to_numpy(params, "T")
    assert sorted(arrays) == ["T/W1", "T/W2", "T/b1", "T/b2"] and arrays["T/W1"].shape == (6, 5)
    back = fnn.from_numpy(arrays, "T")
    torch.testing.assert_close(fnn.forward(back, x), z)


def test_find_conflicts():
    x = np.array([[0.0, 1], [1, 1], [-0.0, 1], [1, 1], [2, 2], [2, 2], [3, 3]], dtype=np.float32)
    y = np.array([0, 1, 1, 1, 2, 2, 0])
    groups = gdtmath.find_conflicts(x, y)
    # rows 0 and 2 are identical (-0.0 == 0.0) with labels 0/1; rows 1/3 and 4/5 agree on labels
    assert [g.tolist() for g in groups] == [[0, 2]]


def test_select_and_pick_anchors_against_loops():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 60)
    dist = rng.random(60)
    eligible = rng.random(60) < 0.7
    eligible[y == 3] = False  # class 3: no anchors
    anchors = gdtmath.select_anchors(y, dist, eligible, 5, 4)
    for c in range(4):
        cand = sorted((dist[i], i) for i in range(60) if eligible[i] and y[i] == c)[:5]
        got = anchors.flat[anchors.start[c] : anchors.start[c] + anchors.count[c]]
        assert got.tolist() == [i for _, i in cand]
    labels = np.array([0, 1, 2, 0, 1, 2] * 5)
    picked = gdtmath.pick_anchors(labels, anchors, torch.Generator().manual_seed(0))
    assert all(y[a] == lab and eligible[a] for a, lab in zip(picked, labels, strict=True))
    again = gdtmath.pick_anchors(labels, anchors, torch.Generator().manual_seed(0))
    assert picked.tolist() == again.tolist()


def test_homotopy_inputs():
    xa, xe = torch.zeros(2, 3), torch.ones(2, 3)
    torch.testing.assert_close(gdtmath.homotopy_inputs(xa, xe, 0.25), torch.full((2, 3), 0.25))
    torch.testing.assert_close(gdtmath.homotopy_inputs(xa, xe, 0.0), xa)
    torch.testing.assert_close(gdtmath.homotopy_inputs(xa, xe, 1.0), xe)


# ---------------------------------------------------------------- behaviour


def test_sgd_stops_at_threshold_and_gdt_reaches_100():
    x, y = blobs()
    X, Y, s = sgd_start(x, y, threshold=0.9)
    assert 0.9 <= s.accuracy < 1.0 and s.reached
    r = gdtgroup.run_gdt(s.params, X, Y, GDTSettings(), 7, decimals=4, n_classes=5)
    assert r.accuracy == 1.0 and r.stop_reason == gdtstate.ERROR_FREE
    assert fnn.accuracy(fnn.round_params(r.params, 4), X, Y) == 1.0
    assert r.lambda_path[-1] == 1.0 and r.accepted_path[-1]
    assert r.accepted == sum(r.accepted_path) and r.rejected == len(r.accepted_path) - r.accepted
    assert len(r.delta_path) == len(r.lambda_path) and r.rounds >= 1


def _planted(seed: int = 0):
    x, y = blobs(seed=seed)
    x[11] = x[10]  # identical input, different label
    assert y[10] != y[11]
    return x, y


def test_conflict_precheck_on_reports_pair_and_fits_rest():
    x, y = _planted()
    X, Y, s = sgd_start(x, y)
    r = gdtgroup.run_gdt(s.params, X, Y, GDTSettings(), 7, decimals=4, n_classes=5)
    assert [g.tolist() for g in r.conflicts] == [[10, 11]]
    wrong = (fnn.predict(r.params, X) != Y).numpy()
    in_conflict = np.zeros(len(y), dtype=bool)
    in_conflict[[10, 11]] = True
    assert not wrong[~in_conflict].any()  # the consistent rest is error-free
    assert gdtstate.classify_status(wrong, in_conflict, y, set()) == gdtstate.CONFLICTS


def test_conflict_precheck_off_stops_within_budget():
    x, y = _planted()
    X, Y, s = sgd_start(x, y)
    st = GDTSettings(conflict_precheck=False, rounds=2, delta_floor=1e-3, max_lambda_steps=60)
    r = gdtgroup.run_gdt(s.params, X, Y, st, 7, decimals=4, n_classes=5)
    assert r.conflicts == [] and r.rounds <= 2 and len(r.lambda_path) <= 2 * 60
    wrong = (fnn.predict(r.params, X) != Y).numpy()
    residual = set(np.flatnonzero(wrong).tolist())
    assert residual & {10, 11} and len(residual & {10, 11}) == 1
    # the unfittable pair stops every round on the Δ floor: an exhausted search, not a budget stop
    assert r.stop_reason == gdtstate.STOP_ROUNDS and set(r.round_ends) == {gdtstate.END_FLOOR}
    assert (
        gdtstate.classify_status(wrong, np.zeros(len(y), bool), y, set(r.no_anchor), r.stop_reason)
        == gdtstate.RESIDUAL
    )


def test_no_anchor_is_reported_not_raised():
    x, y = blobs()
    X, Y, s = sgd_start(x, y)
    params = fnn.clone(s.params)
    params[-1][1][4] = -1e3  # class 4 is never predicted: errors but no anchor
    r = gdtgroup.run_gdt(params, X, Y, GDTSettings(rounds=2), 7, decimals=4, n_classes=5)
    assert r.no_anchor == [4]
    wrong = (fnn.predict(r.params, X) != Y).numpy()
    assert wrong[y == 4].all() and not wrong[y != 4].any()
    assert (
        gdtstate.classify_status(wrong, np.zeros(len(y), bool), y, set(r.no_anchor))
        == gdtstate.NO_ANCHOR
    )


def test_same_seed_same_weights_and_resume_from_state_is_bit_identical():
    x, y = _planted(seed=1)
    X, Y, s = sgd_start(x, y)
    st = GDTSettings(conflict_precheck=False, rounds=2, delta_floor=1e-2, checkpoint_seconds=0)
    states = []
    full = gdtgroup.run_one(gdt.GDT(s.params, X, Y, st, 5, decimals=4, n_classes=5), states.append)
    again = gdtgroup.run_gdt(s.params, X, Y, st, 5, decimals=4, n_classes=5)
    for (w1, b1), (w2, b2) in zip(full.params, again.params, strict=True):
        assert torch.equal(w1, w2) and torch.equal(b1, b2)
    assert full.lambda_path == again.lambda_path
    assert len(states) >= 3
    for st_dict in (states[1], states[-2]):  # resume in the middle of the continuation
        run = gdt.GDT(s.params, X, Y, st, 5, decimals=4, n_classes=5)
        run.load_state_dict(st_dict)
        res = gdtgroup.run_one(run)
        assert res.resumed and res.lambda_path == full.lambda_path
        for (w1, b1), (w2, b2) in zip(full.params, res.params, strict=True):
            assert torch.equal(w1, w2) and torch.equal(b1, b2)


def test_sgd_resumes_bit_identically_from_any_epoch():
    # a long SGD phase checkpoints after epochs; a resumed run ends with the same S and Sp
    x, y = blobs(n=200, noise=4.5)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    # lr_patience 1: the plateau rule lowers the rate during the run, and a resume must keep it
    s = SGDSettings(
        threshold=0.99, max_epochs=12, batch_size=32, lr=0.3, released_epochs=3, lr_patience=1
    )

    def run(resume=None, keep=None):
        gen = torch.Generator().manual_seed(7)
        params = fnn.init_params([x.shape[1], 16, 5], gen)
        return sgd.train_sgd(params, xt, yt, s, gen, resume=resume, on_progress=keep, every=0.0)

    states: list[dict] = []
    s_full, sp_full = run(keep=states.append)
    assert min(st["members"][0]["lr"] for st in states) < s.lr  # the rate was lowered at least once
    assert len(states) >= 4 and any(
        st["members"][0]["S"] is not None for st in states
    )  # some in the Sp phase
    for st in (states[0], states[len(states) // 2], states[-1]):
        s_res, sp_res = run(resume=st)
        for a, b in zip(s_full.params + sp_full.params, s_res.params + sp_res.params, strict=True):
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert (s_res.epochs, sp_res.epochs) == (s_full.epochs, sp_full.epochs)


def test_plateau_rule_lowers_the_learning_rate():
    tr = sgd.Member(SGDSettings(lr=0.1, lr_patience=3, lr_decay=0.5), torch.Generator())
    lrs = []
    for acc in (0.5, 0.6, 0.6, 0.59, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7):
        tr.after_epoch(acc)
        lrs.append(tr.lr)
    # epochs 3-5 bring no new best -> halved after epoch 5; 0.7 at epoch 6 is a best; 7-9 and 10-12 plateau
    assert lrs == [0.1] * 4 + [0.05] * 4 + [0.025] * 3 + [0.0125]
    fixed = sgd.Member(SGDSettings(lr=0.1, lr_decay=1.0), torch.Generator())
    for _ in range(30):
        fixed.after_epoch(0.5)
    assert fixed.lr == 0.1


# the keys of a GDT checkpoint before GDTState (hand-listed state_dict): such checkpoints still resume
OLD_STATE_KEYS = {
    "best", "best_acc", "theta_ok", "round", "in_round", "finished", "stop_reason", "lam_ok",
    "delta", "streak", "round_steps", "accepted", "rejected", "lambda_path", "delta_path",
    "accepted_path", "round_starts", "round_ends", "steps_path", "consolidation_steps",
    "no_anchor", "cont_c", "cont_e", "anchor_of", "seconds", "gen_state",
}  # fmt: skip


def test_gdt_state_is_serialised_once_with_the_previous_checkpoint_keys():
    x, y = _planted(seed=1)
    X, Y, s = sgd_start(x, y)
    st = GDTSettings(conflict_precheck=False, rounds=1, delta_floor=1e-2, checkpoint_seconds=0)
    states = []
    gdtgroup.run_one(gdt.GDT(s.params, X, Y, st, 5, decimals=4, n_classes=5), states.append)
    saved = states[len(states) // 2]
    assert set(saved) == OLD_STATE_KEYS
    again = gdtstate.GDTState.from_dict(saved, X.device).to_dict(seconds=saved["seconds"])
    assert set(again) == OLD_STATE_KEYS
    for k, v in saved.items():
        if k in ("best", "theta_ok"):
            pairs = zip(v, again[k], strict=True)
            assert all(torch.equal(a, b) for p, q in pairs for a, b in zip(p, q, strict=True))
        elif isinstance(v, (np.ndarray, torch.Tensor)):
            assert np.array_equal(np.asarray(v), np.asarray(again[k])), k
        else:
            assert v == again[k], k
    with pytest.raises(ValueError, match="lacks"):
        gdtstate.GDTState.from_dict({k: v for k, v in saved.items() if k != "delta"}, X.device)
