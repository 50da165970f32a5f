"""A group of FNNs trained side by side (stacked weights) against each FNN trained alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from errorless import fnn
from errorless.config import GDTSettings, SGDSettings
from errorless.train import gdt, gdtgroup, gdtstate, sgd

torch.set_num_threads(1)


def member_data(m: int, n: int = 240, d: int = 48, c: int = 4, noise: float | list[float] = 3.0):
    """M members of one shard: the same labels, different inputs (as different features)."""
    noises = noise if isinstance(noise, list) else [noise] * m
    y = np.arange(n) % c
    rng = np.random.default_rng(0)
    xs = []
    for i in range(m):
        centres = rng.normal(size=(c, d))
        x = centres[y] + noises[i] * rng.normal(size=(n, d))
        xs.append(np.round(x / np.abs(x).max(axis=1, keepdims=True), 4).astype(np.float32))
    return torch.tensor(np.stack(xs)), torch.tensor(np.tile(y, (m, 1)), dtype=torch.int64)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse_softmax"])
def test_group_forward_and_gradients_equal_each_member(loss):
    x, y = member_data(3, n=50, d=12)
    nets = [fnn.init_params([12, 9, 7, 4], i) for i in range(3)]
    value, grads = fnn.loss_and_grads(fnn.stack(nets), x, y, fnn.Loss(loss, 0.7))
    assert value.shape == (3,)
    norms = fnn.flat_norm(grads)
    for i, net in enumerate(nets):
        v1, g1 = fnn.loss_and_grads(net, x[i], y[i], fnn.Loss(loss, 0.7))
        torch.testing.assert_close(value[i], v1)
        for (gw, gb), (w1, b1) in zip(grads, g1, strict=True):
            torch.testing.assert_close(gw[i], w1)
            torch.testing.assert_close(gb[i], b1)
        torch.testing.assert_close(norms[i], fnn.flat_norm(g1))
        torch.testing.assert_close(fnn.forward(fnn.stack(nets), x)[i], fnn.forward(net, x[i]))
    # padding rows of weight 0 leave a member's loss and gradients as on its real rows alone
    w = torch.zeros(3, 50)
    w[0, :30], w[1], w[2, :7] = 1 / 30, 1 / 50, 1 / 7
    vp, gp = fnn.loss_and_grads(fnn.stack(nets), x, y, fnn.Loss(loss, 0.7), w)
    for i, rows in enumerate((30, 50, 7)):
        v1, g1 = fnn.loss_and_grads(nets[i], x[i, :rows], y[i, :rows], fnn.Loss(loss, 0.7))
        torch.testing.assert_close(vp[i], v1)
        for (gw, gb), (w1, b1) in zip(gp, g1, strict=True):
            torch.testing.assert_close(gw[i], w1)
            torch.testing.assert_close(gb[i], b1)


def test_batched_sgd_steps_equal_single_steps():
    # same seeds: each member shuffles as it would alone; one epoch of 8 mini-batch steps
    x, y = member_data(3)
    s = SGDSettings(threshold=1.01, max_epochs=2, batch_size=32, lr=0.2)
    group = sgd.train_sgd_group(
        [fnn.init_params([48, 16, 4], 10 + i) for i in range(3)],
        x,
        y,
        s,
        [torch.Generator().manual_seed(100 + i) for i in range(3)],
    )
    for i in range(3):
        alone, _ = sgd.train_sgd(
            fnn.init_params([48, 16, 4], 10 + i),
            x[i],
            y[i],
            s,
            torch.Generator().manual_seed(100 + i),
        )
        for (w1, b1), (w2, b2) in zip(group[i][0].params, alone.params, strict=True):
            torch.testing.assert_close(w1, w2, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(b1, b2, rtol=1e-5, atol=1e-6)
        assert group[i][0].epochs == alone.epochs == 2


def _statuses(results, x, y):
    out = []
    for i, r in enumerate(results):
        wrong = (fnn.predict(fnn.round_params(r.params, 4), x[i]) != y[i]).numpy()
        in_conflict = np.zeros(len(wrong), bool)
        for g in r.conflicts:
            in_conflict[g] = True
        out.append(
            gdtstate.classify_status(
                wrong, in_conflict, y[i].numpy(), set(r.no_anchor), r.stop_reason
            )
        )
    return out


def test_group_training_ends_as_each_member_alone():
    """SGD + GDT of 4 members together: the same stop reasons and statuses as alone, and a
    member that finishes early (conflicts only) leaves the group while the others go on."""
    x, y = member_data(4, noise=4.0)
    x[2, 1] = x[2, 0]  # member 2: identical inputs with labels 0 and 1 (a conflict)
    s = SGDSettings(threshold=0.9, batch_size=32)
    g = GDTSettings(rounds=3)
    sizes = [48, 24, 4]
    starts = sgd.train_sgd_group(
        [fnn.init_params(sizes, i) for i in range(4)],
        x,
        y,
        s,
        [torch.Generator().manual_seed(i) for i in range(4)],
    )
    runs = [
        gdt.GDT(starts[i][0].params, x[i], y[i], g, 7 + i, decimals=4, n_classes=4, name=f"m{i}")
        for i in range(4)
    ]
    together = gdtgroup.run_group(runs)
    alone = []
    for i in range(4):
        p = fnn.init_params(sizes, i)
        s_res, _ = sgd.train_sgd(p, x[i], y[i], s, torch.Generator().manual_seed(i))
        assert s_res.epochs == starts[i][0].epochs
        alone.append(gdtgroup.run_gdt(s_res.params, x[i], y[i], g, 7 + i, decimals=4, n_classes=4))
    st_t, st_a = _statuses(together, x, y), _statuses(alone, x, y)
    assert st_t == st_a
    assert st_t[2] == gdtstate.CONFLICTS and st_t.count(gdtstate.ERROR_FREE) == 3
    assert [r.stop_reason for r in together] == [r.stop_reason for r in alone]
    assert [r.accepted_path for r in together] == [r.accepted_path for r in alone]
    assert all(len(r.lambda_path) >= 3 for r in together)  # GDT did work for every member


def test_group_gdt_resumes_from_any_checkpoint_as_an_uninterrupted_run():
    x, y = member_data(3, noise=[3.0, 8.0, 12.0])  # harder members need longer λ-steps
    s = SGDSettings(threshold=0.9, batch_size=32)
    starts = sgd.train_sgd_group(
        [fnn.init_params([48, 8, 4], i) for i in range(3)],
        x,
        y,
        s,
        [torch.Generator().manual_seed(i) for i in range(3)],
    )
    g = GDTSettings(delta0=0.5, streak=1000, checkpoint_seconds=0)  # λ-steps of 25-125 steps

    def runs():
        return [
            gdt.GDT(starts[i][0].params, x[i], y[i], g, 7 + i, decimals=4, n_classes=4)
            for i in range(3)
        ]

    states: list[list[dict]] = []
    full = gdtgroup.run_group(runs(), states.append)
    assert len(states) >= 6 and len({tuple(r.steps_path) for r in full}) > 1  # members out of step
    for st in (states[1], states[len(states) // 2], states[-1]):
        again = runs()
        for r, d in zip(again, st, strict=True):
            r.load_state_dict(d)
        res = gdtgroup.run_group(again)
        for a, b in zip(full, res, strict=True):
            assert a.lambda_path == b.lambda_path and a.stop_reason == b.stop_reason
            for (w1, b1), (w2, b2) in zip(a.params, b.params, strict=True):
                assert torch.equal(w1, w2) and torch.equal(b1, b2)


# ---------------------------------------------------------------- the training job


def _group_args(tmp, shard, tag, sett, features):
    from test_train import train_args

    args = train_args(tmp, shard, tag, sett, feature=features[0])
    i = args.index("--feature")
    args[i + 1 : i + 2] = features
    i = args.index("--weights")
    args[i + 1 : i + 2] = [str(tmp / f"{tag}-{f}.weights.npz") for f in features]
    i = args.index("--metrics")
    args[i + 1 : i + 2] = [str(tmp / f"{tag}-{f}.metrics.json") for f in features]
    return args


def test_group_job_writes_the_files_of_single_jobs(tmp_path):
    """`errorless train --feature R G RG ...`: per FNN the same files, keys and statuses as one
    job per feature; weights equal up to float rounding (the same λ-steps); weights_sha256 of
    its own arrays."""
    from test_train import load_npz, settings, train_args, write_shard

    from errorless import cli
    from errorless.io import arrays_digest

    shard = write_shard(tmp_path / "m02_s1.npz", conflict=True)
    sett = settings(sgd={"released_epochs": 2})
    feats = ["R", "G", "RG"]
    assert cli.main(_group_args(tmp_path, shard, "grp", sett, feats)) == 0
    assert not (tmp_path / "grp.pt").exists()
    for f in feats:
        assert cli.main(train_args(tmp_path, shard, f"one-{f}", sett, feature=f)) == 0
        a = json.loads((tmp_path / f"grp-{f}.metrics.json").read_text())
        b = json.loads((tmp_path / f"one-{f}.metrics.json").read_text())
        assert set(a["job"]) == set(b["job"]) and a["job"]["feature"] == f
        assert (
            a["job"]["seed"] == b["job"]["seed"]
            and a["job"]["fingerprint"] == b["job"]["fingerprint"]
        )
        for ra, rb in zip(a["records"], b["records"], strict=True):
            assert set(ra) == set(rb)
            assert (ra["proto"], ra["status"], ra["epochs"]) == (
                rb["proto"],
                rb["status"],
                rb["epochs"],
            )
        wa, wb = (
            load_npz(tmp_path / f"grp-{f}.weights.npz"),
            load_npz(tmp_path / f"one-{f}.weights.npz"),
        )
        assert sorted(wa) == sorted(wb)
        assert a["job"]["weights_sha256"] == arrays_digest(wa)
        for k in wa:  # SGD: the same steps; GDT's normalised steps carry rounding differences on
            np.testing.assert_allclose(wa[k], wb[k], atol=1e-5 if k[0] == "S" else 0.05)
        ta, tb = a["records"][-1], b["records"][-1]
        assert ta["accepted_path"] == tb["accepted_path"] and ta["steps_path"] == tb["steps_path"]
    t = {
        f: json.loads((tmp_path / f"grp-{f}.metrics.json").read_text())["records"][-1]
        for f in feats
    }
    assert t["RG"]["status"] == "conflicts"  # the planted identical pair, in every feature


def test_group_job_killed_mid_gdt_resumes_to_the_clean_result(tmp_path, monkeypatch):
    """A group job whose process dies after some checkpoints resumes from its one checkpoint
    file and writes bit-identical files."""
    from test_train import load_npz, settings, write_shard

    from errorless import cli
    from errorless.train import checkpoint

    shard = write_shard(tmp_path / "m02_s1.npz", n=200, signal=10)
    sett = settings(gdt={"delta0": 0.05, "streak": 1000, "checkpoint_seconds": 0})
    feats = ["R", "G", "B"]
    assert cli.main(_group_args(tmp_path, shard, "ref", sett, feats)) == 0
    saved = checkpoint.save_checkpoint

    class Killed(BaseException):
        pass

    def dies(path, payload, count=[0]):  # noqa: B006 - a counter kept between calls
        saved(path, payload)
        if payload.get("gdt") is not None:
            count[0] += 1
            if count[0] == 5:
                raise Killed

    monkeypatch.setattr(checkpoint, "save_checkpoint", dies)
    args = _group_args(tmp_path, shard, "run", sett, feats)
    ckpt = Path(args[args.index("--checkpoint") + 1])
    with pytest.raises(Killed):
        cli.main(args)
    monkeypatch.setattr(checkpoint, "save_checkpoint", saved)
    assert ckpt.exists() and not (tmp_path / "run-R.weights.npz").exists()
    assert cli.main(args) == 0
    for f in feats:
        a, b = (
            load_npz(tmp_path / f"ref-{f}.weights.npz"),
            load_npz(tmp_path / f"run-{f}.weights.npz"),
        )
        assert all(np.array_equal(a[k], b[k]) for k in a)
        rb = json.loads((tmp_path / f"run-{f}.metrics.json").read_text())
        assert rb["job"]["gdt_resumed"]
    assert not ckpt.exists()
