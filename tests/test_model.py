"""The model module (errorless.fnn) is the one forward pass: every way it is called — one net,
a stacked group on its own inputs, a group sharing one input with a widened first layer (the
evaluation's kernel) — equals a plain numpy loop per sample, for h1 and h2 and both losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from errorless import fnn


def numpy_net(layers, x_row):
    """Logits of one sample (D,) by a plain loop over the layers (float64)."""
    h = np.asarray(x_row, dtype=np.float64)
    for i, (w, b) in enumerate(layers):
        h = h @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


def numpy_softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


HIDDEN = {"h1": [7], "h2": [7, 5]}


@pytest.mark.parametrize("arch", sorted(HIDDEN))
@pytest.mark.parametrize("loss", fnn.LOSSES)
def test_forward_softmax_distance_equal_a_loop_per_sample(arch, loss):
    d, c, n, g = 6, 4, 9, 3
    sizes = fnn.layer_sizes(d, HIDDEN[arch], c)
    kind = "uniform" if loss == "mse_softmax" else "pytorch"  # the two losses' usual inits
    bound = 0.5  # small weights keep the softmax away from 0/1 (the comparison is meaningful)
    nets = [fnn.init_params(sizes, seed, kind=kind, bound=bound) for seed in range(g)]
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(7))
    xs = torch.randn(g, n, d, generator=torch.Generator().manual_seed(8))
    y = torch.randint(0, c, (g, n), generator=torch.Generator().manual_seed(9))
    label_lo = np.array([0, 10, 20])

    stacked = fnn.stack(nets)
    group_own = fnn.forward(stacked, xs)  # (G, N, c): each member on its own inputs
    shared = fnn.SharedGroup(
        [(w.numpy(), b.numpy()) for w, b in stacked], label_lo
    )  # the evaluation's kernel
    probs_shared = shared.softmax(x)  # (G, N, c)
    top_lab, top_dist = shared.top(x, 2)
    for k, net in enumerate(nets):
        layers = [(w.numpy(), b.numpy()) for w, b in net]
        one = fnn.forward(net, x)  # (N, c)
        dist = fnn.distance(one)
        for i in range(n):
            z = numpy_net(layers, x[i].numpy())
            p = numpy_softmax(z)
            np.testing.assert_allclose(one[i].numpy(), z, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(probs_shared[k, i].numpy(), p, rtol=1e-5, atol=1e-6)
            best = np.argsort(-p, kind="stable")[:2]
            assert top_lab[k, i].tolist() == (best + label_lo[k]).tolist()
            for j, lab in enumerate(best):
                e = np.eye(c)[lab]
                assert top_dist[k, i, j].item() == pytest.approx(np.linalg.norm(p - e), abs=1e-6)
            assert dist[i].item() == pytest.approx(np.linalg.norm(p - np.eye(c)[best[0]]), abs=1e-6)
            z_own = numpy_net(layers, xs[k, i].numpy())
            np.testing.assert_allclose(group_own[k, i].numpy(), z_own, rtol=1e-5, atol=1e-5)
        # the loss the group trains on: per member, as a loop over its samples
        value, _ = fnn.loss_and_grads(stacked, xs, y, fnn.Loss(loss, 3.0))
        per = []
        for i in range(n):
            z = numpy_net(layers, xs[k, i].numpy())
            if loss == "cross_entropy":
                per.append(-np.log(numpy_softmax(z)[y[k, i]]))
            else:
                r = numpy_softmax(z / 3.0) - np.eye(c)[y[k, i]]
                per.append(0.5 * r @ r)
        assert value[k].item() == pytest.approx(np.mean(per), rel=1e-5, abs=1e-6)


def test_shared_group_is_bit_identical_to_each_member_alone():
    """The widened first layer is an optimisation, not another forward pass: same bits."""
    sizes = fnn.layer_sizes(5, [6, 4], 3)
    nets = [fnn.init_params(sizes, s) for s in range(4)]
    x = torch.randn(11, 5, generator=torch.Generator().manual_seed(0))
    stacked = fnn.stack(nets)
    wide = fnn.forward(fnn.widen(stacked), x)
    expanded = fnn.forward(stacked, x)  # (N, D) shared by the members, no widening
    for k, net in enumerate(nets):
        torch.testing.assert_close(wide[k], fnn.forward(net, x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(wide, expanded, rtol=1e-6, atol=1e-6)


def test_one_truncation_for_tensors_and_arrays():
    w = np.array([0.1239, -0.1239, 0.1230, -0.0005, 2.0], dtype=np.float32)  # 4 decimals saved
    want = np.array([0.123, -0.123, 0.123, 0.0, 2.0], dtype=np.float32)
    np.testing.assert_array_equal(fnn.truncate(w, 3, saved_decimals=4), want)
    cut = fnn.truncate_params([(torch.as_tensor(w), torch.as_tensor(w[:2]))], 3, saved_decimals=4)
    np.testing.assert_array_equal(cut[0][0].numpy(), want)
    # without the saved precision, float noise (0.123 stored as 0.12299999) is removed too
    got = fnn.truncate(np.float32([0.123, 0.12299999]), 3)
    np.testing.assert_array_equal(got, np.float32([0.123, 0.123]))
