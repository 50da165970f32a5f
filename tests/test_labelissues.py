"""Label issues: out-of-sample votes of the other submodule, cleanlab ranking, planted flips."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from errorless.config import load_config
from errorless.data.shards import Shard, assign
from errorless.errors import ConfigError, DataError
from errorless.gather.load import ProtoWeights
from errorless.quality import flags, issue_check, out_of_sample
from errorless.quality import labelissues as li

TRANSFORM = {"pool": 1, "trim": 0, "decimals": 4}


def make_shard(images, labels, module, submodule, c, L, batch="b", rows=None):
    n = len(labels)
    rows = np.arange(n) + 1000 * (2 * module + submodule) if rows is None else rows
    return Shard(
        images=images,
        labels=labels.astype(np.int64),
        batch=np.full(n, batch),
        row=rows,
        ids=np.array([f"{batch}:{r}" for r in rows]),
        module=module,
        submodule=submodule,
        label_lo=(module - 1) * c,
        label_hi=module * c,
        num_labels=L,
    )


def random_proto(F=2, k=2, r=2, c=3, D=16, H=5, seed=0):
    rng = np.random.default_rng(seed)
    groups = [(f"m{j:02d}", f"s{s}") for j in range(1, k + 1) for s in range(1, r + 1)]
    G = len(groups)
    layers = [
        (
            rng.normal(size=(F, G, D, H)).astype(np.float32),
            rng.normal(size=(F, G, H)).astype(np.float32),
        ),
        (
            rng.normal(size=(F, G, H, c)).astype(np.float32),
            rng.normal(size=(F, G, c)).astype(np.float32),
        ),
    ]
    label_lo = np.array([(int(m[1:]) - 1) * c for m, _ in groups], dtype=np.int64)
    return ProtoWeights("T_h1_m1", ["R", "G"][:F], groups, label_lo, layers, {})


def test_out_of_sample_equals_a_plain_loop():
    from errorless.features import transform

    c, k, r = 3, 2, 3
    pw = random_proto(F=2, k=k, r=r, c=c)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(7, 4, 4, 3), dtype=np.uint8)
    labels = rng.integers(c, 2 * c, size=7)  # module 2
    sh = make_shard(images, labels, module=2, submodule=2, c=c, L=k * c)
    res = out_of_sample.shard_out_of_sample(
        pw, sh, TRANSFORM, batch_size=3
    )  # blocks of 3: the block loop too
    probs, counts = np.zeros((7, c)), np.zeros((7, c), dtype=np.int64)
    n = 0
    for f, feat in enumerate(pw.features):
        x = transform(images, feat, **TRANSFORM).astype(np.float64)
        for g, (m, s) in enumerate(pw.groups):
            if m != "m02" or s == "s2":
                continue
            (W1, b1), (W2, b2) = [
                (W[f, g].astype(np.float64), b[f, g].astype(np.float64)) for W, b in pw.layers
            ]
            z = np.maximum(x @ W1 + b1, 0) @ W2 + b2
            sm = np.exp(z - z.max(axis=1, keepdims=True))
            sm /= sm.sum(axis=1, keepdims=True)
            probs += sm
            counts[np.arange(7), sm.argmax(axis=1)] += 1
            n += 1
    assert n == 4 and res["n_fnns"] == 4 and res["p"] == 2
    np.testing.assert_allclose(res["probs"], probs / n, atol=1e-5)
    np.testing.assert_array_equal(res["label_votes"], counts)
    assert set(res["predicted"]) <= set(range(c, 2 * c))
    assert np.all(res["votes"] <= 2) and np.array_equal(res["super_majority"], res["votes"] == 2)


def test_no_leakage_only_the_other_submodule_votes():
    """The own submodule's FNNs say label 0 with certainty, the other's label 2: only 2 is seen."""
    c = 3
    pw = random_proto(F=2, k=1, r=2, c=c)
    W2, b2 = pw.layers[1]
    W2[:] = 0
    b2[:] = 0
    b2[:, 0, 0] = 50.0  # (m01, s1): own submodule of the shard below
    b2[:, 1, 2] = 50.0  # (m01, s2): the other one
    rng = np.random.default_rng(2)
    sh = make_shard(
        rng.integers(0, 256, size=(5, 4, 4, 3), dtype=np.uint8), np.zeros(5, int), 1, 1, c, c
    )
    res = out_of_sample.shard_out_of_sample(pw, sh, TRANSFORM)
    np.testing.assert_allclose(res["probs"][:, 2], 1.0, atol=1e-6)
    assert (res["predicted"] == 2).all() and res["super_majority"].all()
    assert (res["label_votes"][:, 0] == 0).all()
    df = out_of_sample.oos_table(pw, [sh], TRANSFORM)
    assert df["prob_given"].max() < 1e-6 and (df["module"] == "m01").all()


def test_one_submodule_is_skipped_with_a_log_line(caplog, tmp_path):
    cfg = load_config(overrides={"modules": {"submodules": 1}})
    with caplog.at_level(logging.WARNING):
        df = out_of_sample.out_of_sample(cfg, tmp_path / "no-weights.parquet", [])
    assert len(df) == 0 and list(df.columns) == out_of_sample.OOS_COLUMNS
    assert "submodules = 1" in caplog.text and "skipped" in caplog.text


def test_one_submodule_pipeline_outputs(tmp_path):
    import argparse

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text("modules: {submodules: 1}\n")
    oos = tmp_path / "oos.parquet"
    out_of_sample.empty_oos().to_parquet(oos)
    args = argparse.Namespace(
        config=str(cfg_path),
        settings=None,
        oos=str(oos),
        manifest=None,
        planted=None,
        out=str(tmp_path / "i.parquet"),
        csv=str(tmp_path / "i.csv"),
        check=str(tmp_path / "check.csv"),
        figure=str(tmp_path / "i.png"),
    )
    assert li.issues_main(args) == 0
    check = pd.read_csv(tmp_path / "check.csv")
    assert "submodules < 2" in check["note"][0]
    assert (tmp_path / "i.png").exists() and len(pd.read_csv(tmp_path / "i.csv")) == 0


def test_flip_planting_keeps_shards_and_modules():
    from errorless.data import synthetic

    cfg = load_config(
        overrides={
            "synthetic": {"images_per_label": 10, "plant_flips": 6, "validation_per_label": 0}
        }
    )
    before, _ = synthetic.generate(
        load_config(
            overrides={
                "synthetic": {"images_per_label": 10, "plant_flips": 0, "validation_per_label": 0}
            }
        )
    )
    batches, planted = synthetic.generate(cfg)
    flips = [p for p in planted if p["kind"] == "label_flip"]
    assert len(flips) == 6
    c, r, L = (
        cfg["modules"]["labels_per_module"],
        cfg["modules"]["submodules"],
        cfg["synthetic"]["labels"],
    )
    others = {p[k] for p in planted if p["kind"] != "label_flip" for k in ("id_a", "id_b")}
    names = list(batches)
    for p in flips:
        b, row = p["id_a"].split(":")
        assert batches[b][1][int(row)] == p["label_a"] != p["label_b"]
        assert p["label_a"] // c == p["label_b"] // c  # same module
        assert p["id_b"] == "" and p["id_a"] not in others
        assert before[b][1][int(row)] == p["label_b"]  # the true label is the generator's
    # no image changed shard: the recorded shard of every plant is where modularize puts it
    labels = np.concatenate([batches[n][1] for n in names])
    bidx = np.concatenate([np.full(len(batches[n][1]), i) for i, n in enumerate(names)])
    row = np.concatenate([np.arange(len(batches[n][1])) for n in names])
    order, mod, part = assign(labels, bidx, row, c, r, L)
    shard = np.empty(len(labels), dtype=np.int64)
    shard[order] = mod * r + part
    pos = {f"{n}:{k}": i for i, (n, k) in enumerate(zip(np.array(names)[bidx], row, strict=True))}
    for p in planted:
        for side in ("a", "b"):
            if p[f"id_{side}"]:
                s = shard[pos[p[f"id_{side}"]]]
                assert (f"m{s // r + 1:02d}", f"s{s % r + 1}") == (
                    p[f"module_{side}"],
                    p[f"submodule_{side}"],
                )


def test_double_labelling_check_ignores_flips():
    from errorless.quality.double_check import planted_check
    from errorless.quality.evidence import TrainingEvidence
    from errorless.quality.suspects import REPORT_COLUMNS, finish

    planted = pd.DataFrame(
        [
            {"kind": "label_flip", "id_a": "b:1", "id_b": None},
            {"kind": "same_shard", "id_a": "b:2", "id_b": "b:3"},
        ]
    )
    summary, detail = planted_check(
        finish(pd.DataFrame(columns=REPORT_COLUMNS[1:])), planted, TrainingEvidence()
    )
    assert "label_flip" not in set(summary["kind"]) and len(detail) == 1


def test_find_issues_and_planted_check_counts():
    """Constructed probabilities: two flips the other submodule contradicts, one it does not."""
    c, n = 3, 30
    labels = np.repeat(np.arange(c), n // c)
    probs = np.full((n, c), 0.05)
    probs[np.arange(n), labels] = 0.9
    given = labels.copy()
    given[[0, 10]] = [1, 2]  # flipped, the vote disagrees
    given[20] = 0  # flipped, but the other submodule is unsure
    probs[20] = [0.4, 0.2, 0.4]
    votes = np.full(n, 2)
    votes[20] = 1
    oos = pd.DataFrame(
        {
            "image_id": [f"b:{i}" for i in range(n)],
            "batch": "b",
            "row": np.arange(n),
            "module": "m01",
            "submodule": "s1",
            "label": given,
            "label_local": given,
            "source": "submodules",
            "fold": "",
            "proto": "T",
            "n_fnns": 2,
            "p": 2,
            "predicted": labels,
            "votes": votes,
            "super_majority": votes == 2,
            "agreement": votes / 2,
            "prob_given": probs[np.arange(n), given],
            "predicted_prob": probs.argmax(1),
            "probs": list(probs / probs.sum(1, keepdims=True)),
            "label_votes": [np.zeros(c, int)] * n,
        }
    )
    issues = flags.find_issues(oos, "either")
    assert list(issues.columns) == flags.ISSUE_COLUMNS
    assert set(issues.loc[issues["vote_against"], "image_id"]) == {"b:0", "b:10"}
    assert {"b:0", "b:10"} <= set(issues.loc[issues["flagged"], "image_id"])
    assert issues["rank"].tolist() == list(range(1, n + 1)) and issues["flagged"].iloc[0]
    planted = pd.DataFrame(
        {
            "kind": ["label_flip"] * 3 + ["same_shard"],
            "id_a": ["b:0", "b:10", "b:20", "b:5"],
            "id_b": ["", "", "", "b:6"],
        }
    )
    check = issue_check.planted_check(issues, planted, "vote").set_index("evidence")
    assert check.loc["vote", "used"] and check.loc["vote", "flagged"] == 2
    assert check.loc["vote", "correct"] == 2 and check.loc["vote", "precision"] == 1.0
    assert check.loc["vote", "recall"] == pytest.approx(2 / 3)
    top = check.iloc[-1]
    assert top.name.startswith("top_k (k = 3") and top["correct"] >= 2


def test_planted_flips_are_found_on_real_digits():
    """sklearn's real handwritten digits, 2 modules x 2 submodules, 24 flips; one-feature FNNs
    trained by our SGD; the other submodule's votes find most flips."""
    from sklearn.datasets import load_digits

    from errorless import fnn
    from errorless.config import SGDSettings
    from errorless.features import transform
    from errorless.train.sgd import train_sgd

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    true = d.target.astype(np.int64)
    c, L = 5, 10
    rng = np.random.default_rng(0)
    flip = rng.choice(len(true), 24, replace=False)
    given = true.copy()
    given[flip] = (true[flip] // c) * c + (true[flip] % c + rng.integers(1, c, 24)) % c
    shards, groups, Ws = [], [], []
    for j in (1, 2):
        idx = np.flatnonzero(given // c == j - 1)
        for s, part in enumerate(np.array_split(idx, 2), start=1):
            sh = make_shard(images[part], given[part], j, s, c, L, batch="digits", rows=part)
            shards.append(sh)
            groups.append((f"m{j:02d}", f"s{s}"))
            x = torch.as_tensor(transform(sh.images, "gray", **TRANSFORM))
            params = fnn.init_params([64, 32, c], seed=j * 10 + s)
            y = torch.as_tensor(sh.labels - sh.label_lo)
            train_sgd(
                params, x, y, SGDSettings(max_epochs=60, lr=0.05), torch.Generator().manual_seed(s)
            )
            Ws.append([(w.numpy(), b.numpy()) for w, b in params])
    layers = [
        (np.stack([w[q][0] for w in Ws])[None], np.stack([w[q][1] for w in Ws])[None])
        for q in range(2)
    ]
    pw = ProtoWeights("S_h1_m1", ["gray"], groups, np.array([0, 0, 5, 5]), layers, {})
    issues = flags.find_issues(out_of_sample.oos_table(pw, shards, TRANSFORM), "either")
    planted = pd.DataFrame(
        {"kind": "label_flip", "id_a": [f"digits:{i}" for i in flip], "id_b": ""}
    )
    check = issue_check.planted_check(issues, planted, "either").set_index("evidence")
    print(check.to_string())
    # measured: cleanlab 21/40 flagged are flips (recall 0.875), top-24 21 flips; with one feature
    # the "super-majority" is a single FNN's vote, so the vote alone flags every model error
    assert check.loc["cleanlab", "recall"] >= 0.75 and check.loc["cleanlab", "precision"] >= 0.4
    assert check.loc["either", "recall"] >= check.loc["cleanlab", "recall"]
    assert check.iloc[-1]["precision"] >= 0.75  # top-k by label quality


# ---------------------------------------------------------------- cross-fit, training vote, user probabilities


def oos_frame(n=12, c=3, batches=("b1", "b2"), seed=0):
    """A submodule out-of-sample table of n images in two source batches (rows 0..n/2-1 each)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % c
    probs = rng.dirichlet(np.ones(c), n)
    half = n // len(batches)
    batch = np.repeat(batches, half)
    row = np.tile(np.arange(half), len(batches))
    return pd.DataFrame(
        {
            "image_id": [f"{b}:{r}" for b, r in zip(batch, row, strict=True)],
            "batch": batch,
            "row": row,
            "module": "m01",
            "submodule": "s1",
            "label": labels,
            "label_local": labels,
            "source": "submodules",
            "fold": "",
            "proto": "T_h1_m1",
            "n_fnns": 1,
            "p": 1,
            "predicted": probs.argmax(1),
            "votes": 1,
            "super_majority": True,
            "agreement": 1.0,
            "prob_given": probs[np.arange(n), labels],
            "predicted_prob": probs.argmax(1),
            "probs": list(probs),
            "label_votes": [np.zeros(c, int)] * n,
        }
    )[out_of_sample.OOS_COLUMNS]


def test_crossfit_probabilities_replace_the_submodule_ones():
    oos = oos_frame()
    rng = np.random.default_rng(5)
    cfp = rng.dirichlet(np.ones(3), len(oos))
    cf = oos[["image_id", "batch", "row", "module", "submodule", "label", "label_local"]].assign(
        fold=[f"f{i % 2 + 1}" for i in range(len(oos))], probs=list(cfp.astype(np.float32))
    )
    both = out_of_sample.with_crossfit(oos, cf.iloc[::-1])  # any row order
    assert list(both.columns) == out_of_sample.OOS_COLUMNS and (both["source"] == "crossfit").all()
    np.testing.assert_allclose(np.stack(both["probs"]), cfp, atol=1e-6)
    np.testing.assert_array_equal(both["votes"], oos["votes"])  # the submodule vote is kept
    alone = out_of_sample.with_crossfit(
        out_of_sample.empty_oos(), cf
    )  # one submodule: the rows come from cross-fit
    assert (
        len(alone) == len(oos) and (alone["votes"] == 0).all() and (alone["predicted"] == -1).all()
    )
    with pytest.raises(DataError, match="cross-fit tables cover 11 images, the shards 12"):
        out_of_sample.with_crossfit(oos, cf.iloc[1:])
    with pytest.raises(DataError, match="hold image b1:0 twice"):
        out_of_sample.with_crossfit(oos, pd.concat([cf, cf.iloc[:1]]))


def test_training_vote_mistakes_are_their_own_evidence(tmp_path):
    oos = oos_frame()
    pred = pd.DataFrame(
        {
            "image_id": list(oos["image_id"]) * 2,
            "split": "train",
            "proto": ["T_h1_m1"] * 12 + ["S_h1_m1"] * 12,
            "p": 1,
            "protocol": "top1",
            "predicted": list(oos["label"]) * 2,
        }
    )
    pred.loc[[3, 7], "predicted"] = 2  # T's vote wrong on b1:3 (label 0) and b2:1 (label 1)
    pred.loc[15, "predicted"] = 0  # S's vote wrong elsewhere
    pred.to_parquet(tmp_path / "p.parquet")
    votes = out_of_sample.train_votes([tmp_path / "p.parquet"], "T_h1_m1")
    issues = flags.find_issues(oos, "cleanlab", votes).set_index("image_id")
    assert set(issues.index[issues["train_vote_wrong"]]) == {"b1:3", "b2:1"}
    assert "train_vote" in issues.loc["b1:3", "evidence"]
    with pytest.raises(DataError, match="no training-set predictions of T_h1_m2"):
        out_of_sample.train_votes([tmp_path / "p.parquet"], "T_h1_m2")


def test_user_probabilities_rank_as_cleanlab_ranks_them(tmp_path):
    """cleanlab's pred_probs convention: one row per training image in the data set's order
    (batch b1's rows, then b2's); the ranking equals cleanlab's own on the same matrix."""
    from cleanlab.rank import get_label_quality_scores

    oos = oos_frame(n=40, c=4, seed=1).sample(
        frac=1, random_state=0
    )  # table order is not data order
    L = 8  # the data set's labels (this module holds 0..3)
    P = np.random.default_rng(2).dirichlet(np.ones(L), 40)
    np.save(tmp_path / "p.npy", P)
    data_order = [f"b1:{r}" for r in range(20)] + [f"b2:{r}" for r in range(20)]
    labels = oos.set_index("image_id").loc[data_order, "label"].to_numpy()
    user = flags.load_pred_probs(tmp_path / "p.npy", oos, ["b1", "b2"], L)
    issues = flags.find_issues(oos, "cleanlab", None, user, "auto")
    want = get_label_quality_scores(labels, P)
    got = issues.set_index("image_id").loc[data_order, "user_quality"].to_numpy()
    np.testing.assert_allclose(got, want)
    ranked = issues.loc[~issues["flagged"], "image_id"].tolist()
    quality = dict(zip(data_order, want, strict=True))
    assert ranked == sorted(ranked, key=lambda i: (quality[i], i))  # ranked by the user's quality
    own = flags.find_issues(oos, "cleanlab", None, user, "own")
    assert own.loc[~own["flagged"], "label_quality"].is_monotonic_increasing


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_bytes(b"not numpy"), "not a readable .npy array"),
        (lambda p: np.save(p, np.full((12, 3), 1 / 3)), r"expected numbers of shape \(12, 8\)"),
        (lambda p: np.save(p, np.full((12, 8), np.nan)), "finite and non-negative"),
        (lambda p: np.save(p, np.full((12, 8), 0.2)), "row 0 sums to 1.6000"),
        (lambda p: np.save(p, np.array([{"a": 1}] * 12), allow_pickle=True), "not a readable"),
    ],
)
def test_bad_user_probabilities_are_one_line_naming_the_file(tmp_path, make, message):
    path = tmp_path / "probs.npy"
    make(path)
    with pytest.raises((ConfigError, DataError), match=message) as e:
        flags.load_pred_probs(path, oos_frame(), ["b1", "b2"], 8)
    assert str(path) in str(e.value) and "label_issues.pred_probs" in str(e.value)
    assert "\n" not in str(e.value)


def test_one_file_digits_every_submodule_holds_every_label_and_votes_far_above_chance(tmp_path):
    """sklearn's real digits as one source batch (a one-file data set): the first split gave
    submodule 1 the digits 0-4 and submodule 2 the digits 4-9, so the other submodule's FNN was
    right for a few % of the images; now both hold every digit."""
    from errorless import fnn
    from errorless.config import SGDSettings
    from errorless.data.shards import load_shard, modularize
    from errorless.features import transform
    from errorless.train.sgd import train_sgd

    cfg = load_config(
        overrides={
            "dataset": {"format": "digits", "validation": False},
            "modules": {"labels_per_module": 10, "submodules": 2},
            "features": ["gray"],
            "featured_models": [1],
        }
    )
    rows = modularize(cfg, tmp_path / "shards")
    shards = [load_shard(r["path"]) for r in rows]
    assert all(set(sh.labels) == set(range(10)) for sh in shards)
    nets = []
    for sh in shards:
        x = torch.as_tensor(transform(sh.images, "gray", **TRANSFORM))
        params = fnn.init_params([x.shape[1], 64, 10], seed=sh.submodule)
        train_sgd(
            params, x, torch.as_tensor(sh.labels), SGDSettings(), torch.Generator().manual_seed(0)
        )
        nets.append((params, x, sh.labels))
    for (p_other, _, _), (_, x, y) in zip(nets[::-1], nets, strict=True):
        acc = float((fnn.predict(p_other, x).numpy() == y).mean())
        assert acc > 0.85, acc  # chance: 0.10
