"""The vote (hand-made cases and a plain-loop oracle), accuracy/Top-1, summaries, Table 2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from errorless.evaluate.inference import model_votes
from errorless.evaluate.summary import summarize
from errorless.evaluate.table2 import training_evaluation, training_table
from errorless.evaluate.vote import top1_rate, vote
from errorless.fnn import truncate
from errorless.gather.load import ProtoWeights

# ---------------------------------------------------------------- a model trained "by hand"

SIDE, BLOCK = 64, 8  # label l lights an 8x8 px square (4x4 after pooling) at a label-specific place


def handmade_images(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """uint8 (N, 64, 64, 3): dim noise plus one bright square whose place encodes the label."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(len(labels), SIDE, SIDE, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        r, c = _square(int(label))
        images[i, r : r + BLOCK, c : c + BLOCK] = 255
    return images


def _square(label: int) -> tuple[int, int]:
    per_row = (SIDE - 2 * BLOCK) // BLOCK  # squares stay clear of the trimmed border
    return BLOCK + (label // per_row) * BLOCK, BLOCK + (label % per_row) * BLOCK


def handmade_fnn(labels: range) -> list[tuple[np.ndarray, np.ndarray]]:
    """h1 FNN over 900 inputs: hidden unit l sums label l's square, output = 10 x hidden."""
    c = len(labels)
    W1 = np.zeros((30, 30, c), dtype=np.float32)
    for k, label in enumerate(labels):
        r, col = _square(label)
        r, col = r // 2 - 1, col // 2 - 1  # pool by 2, trim 1
        W1[r : r + BLOCK // 2, col : col + BLOCK // 2, k] = 1.0
    return [
        (W1.reshape(900, c), np.zeros(c, np.float32)),
        (10 * np.eye(c, dtype=np.float32), np.zeros(c, np.float32)),
    ]


def handmade_proto(
    features: list[str], n_labels: int, c: int, r: int = 1, proto: str = "T_h1_m1"
) -> ProtoWeights:
    """Every FNN of module j (all r submodules) recognises the squares of labels [jc, (j+1)c)."""
    groups = [(f"m{j + 1:02d}", f"s{s + 1}") for j in range(n_labels // c) for s in range(r)]
    fnns = [handmade_fnn(range(int(m[1:]) * c - c, int(m[1:]) * c)) for m, _ in groups]
    layers = []
    for q in range(2):
        W = np.stack([np.stack([f[q][0] for f in fnns])] * len(features))  # (F, G, in, out)
        b = np.stack([np.stack([f[q][1] for f in fnns])] * len(features))
        layers.append((W, b))
    lo = np.array([(int(m[1:]) - 1) * c for m, _ in groups])
    return ProtoWeights(proto, list(features), groups, lo, layers, {})


def handmade_weights_table(features: list[str], n_labels: int, c: int, settings: dict, r: int = 2):
    """weights.parquet rows (T_h1_m1) of the hand-made model, as :func:`tables.weights_table`."""
    from errorless.gather.tables import weights_table

    rows = []
    for feature in features:
        for j in range(1, n_labels // c + 1):
            layers = handmade_fnn(range((j - 1) * c, j * c))
            for s in range(1, r + 1):
                meta = dict(
                    proto="T_h1_m1",
                    method="T",
                    model="h1_m1",
                    arch="h1",
                    replicate=1,
                    feature=feature,
                    module=f"m{j:02d}",
                    submodule=f"s{s}",
                    label_lo=(j - 1) * c,
                    n_labels=c,
                    settings=json.dumps(settings),
                )
                for i, (W, b) in enumerate(layers, start=1):
                    rows += [
                        ({**meta, "layer": i, "kind": "W"}, W),
                        ({**meta, "layer": i, "kind": "b"}, b),
                    ]
    return weights_table(rows)


TRANSFORM = {"pool": 2, "trim": 1, "decimals": 4}


def test_perfect_fnns_with_k_r_1_give_100_percent_accuracy_and_top1():
    labels = np.repeat(np.arange(6), 5)
    images = handmade_images(labels)
    pw = handmade_proto(["R", "G", "B"], n_labels=6, c=6, r=1)  # k = r = 1
    out = model_votes(images, pw, [1, 3], ["top1", "top3"], transform=TRANSFORM, batch_size=7)
    for (p, _protocol), v in out.items():
        assert np.array_equal(v.label, labels)
        assert (v.votes == p).all() and v.super_majority.all()
        assert top1_rate(v.label == labels, v.super_majority) == 1.0


def test_model_votes_with_modules_finds_the_trained_group():
    labels = np.arange(12)
    pw = handmade_proto(["R", "G", "BW"], n_labels=12, c=4, r=2)  # k = 3, r = 2
    out = model_votes(handmade_images(labels), pw, [3], ["top1"], transform=TRANSFORM)[(3, "top1")]
    assert np.array_equal(out.label, labels)
    # both submodules of the right module vote unanimously; the variance tie-break picks one
    assert np.array_equal(
        np.array([pw.groups[g][0] for g in out.group]), [f"m{x // 4 + 1:02d}" for x in labels]
    )


# ---------------------------------------------------------------- the vote by hand


def _v(labels, dists):
    return vote(np.array(labels), np.array(dists, dtype=float))


def test_clear_winner_with_super_majority():
    # (F=3, G=2, N=1): group 0 unanimous for 5; group 1 split
    out = _v(
        [[[5], [12]], [[5], [13]], [[5], [12]]], [[[0.1], [0.2]], [[0.2], [0.1]], [[0.1], [0.3]]]
    )
    assert (out.label[0], out.votes[0], out.group[0], out.super_majority[0]) == (5, 3, 0, True)


def test_majority_without_super_majority():
    out = _v([[[5], [10]], [[5], [11]], [[7], [12]]], [[[0.3], [0.1]]] * 3)
    assert (out.label[0], out.votes[0], out.super_majority[0]) == (5, 2, False)


def test_tie_inside_group_broken_by_smaller_mean_distance():
    # F=4, one group: labels 3 and 4 have two votes each; mean distance 0.3 vs 0.2
    out = _v([[[3]], [[3]], [[4]], [[4]]], [[[0.1]], [[0.5]], [[0.2]], [[0.2]]])
    assert (out.label[0], out.votes[0]) == (4, 2)


def test_tie_between_groups_broken_by_smallest_variance():
    # both groups unanimous; group 1 has the larger mean but the smaller variance -> it wins
    labels = [[[1], [7]], [[1], [7]], [[1], [7]]]
    dists = [[[0.1], [0.6]], [[0.5], [0.6]], [[0.9], [0.7]]]
    out = _v(labels, dists)
    assert (out.label[0], out.group[0], out.super_majority[0]) == (7, 1, True)


def test_top3_protocol_widens_the_pool():
    # (F=3, G=2, N=1, T=3): top-1 votes make label 8 win with 2 votes; within the top three
    # label 1 is named by all three features of group 0 -> a super-majority for 1
    labels = np.array(
        [
            [[[1, 2, 3]], [[8, 9, 10]]],
            [[[2, 1, 4]], [[8, 11, 12]]],
            [[[3, 1, 4]], [[9, 13, 14]]],
        ]
    )  # (F, G, N, T)
    dists = np.broadcast_to(np.array([0.3, 0.9, 1.1]), labels.shape).copy()
    dists[:, 1, 0, 0] = [0.2, 0.2, 0.4]
    top1 = vote(labels[..., 0], dists[..., 0])
    top3 = vote(labels, dists, dists[..., 0])
    assert (top1.label[0], top1.votes[0], top1.super_majority[0]) == (8, 2, False)
    assert (top3.label[0], top3.votes[0], top3.group[0], top3.super_majority[0]) == (1, 3, 0, True)


# ---------------------------------------------------------------- the vote against a plain loop


def loop_vote(labels: np.ndarray, dists: np.ndarray, fnn: np.ndarray):
    """Plain-Python reading of docs/method.md#the-vote (with the documented exact-tie rules)."""
    F, G, N, T = labels.shape
    out = []
    for n in range(N):
        cands = []
        for g in range(G):
            tally: dict[int, list[float]] = {}
            for f in range(F):
                for t in range(T):
                    tally.setdefault(int(labels[f, g, n, t]), []).append(float(dists[f, g, n, t]))
            best = min(
                tally, key=lambda lab: (-len(tally[lab]), sum(tally[lab]) / len(tally[lab]), lab)
            )
            d = [float(x) for x in fnn[:, g, n]]
            mu = sum(d) / F
            var = sum((x - mu) ** 2 for x in d) / F
            cands.append((-len(tally[best]), var, sum(tally[best]) / len(tally[best]), g, best))
        v, _, _, g, lab = min(cands)
        out.append((lab, -v, g, -v == F))
    return out


@pytest.mark.parametrize(
    ("F", "T", "dyadic"), [(3, 1, False), (4, 1, True), (2, 3, True), (5, 3, False), (1, 1, False)]
)
def test_vectorised_vote_equals_plain_loop(F, T, dyadic):
    rng = np.random.default_rng(F * 10 + T)
    G, N, c = 4, 300, 5
    lo = (np.arange(G) * c)[None, :, None, None]
    # distinct labels per FNN (top-T of one FNN are different labels), few labels -> many ties
    labels = np.argsort(rng.random((F, G, N, c)), axis=-1)[..., :T] + lo
    if dyadic:  # exact ties in means and variances
        dists = rng.integers(0, 4, size=labels.shape) / 8.0
    else:
        dists = rng.random(labels.shape)
    dists = np.sort(dists, axis=-1)
    got = vote(labels, dists, dists[..., 0])
    want = loop_vote(labels, dists, dists[..., 0])
    assert [
        tuple(x) for x in zip(got.label, got.votes, got.group, got.super_majority, strict=True)
    ] == want


# ---------------------------------------------------------------- accuracy, Top-1, summaries


def test_accuracy_and_top1_on_a_known_case():
    pred = pd.DataFrame(
        {
            "batch": ["b1"] * 4 + ["b2"] * 4,
            "label": [0, 0, 1, 1, 0, 0, 1, 1],
            "correct": [True, True, True, False, True, True, True, True],
            "super_majority": [True, False, True, True, True, True, True, False],
        }
    ).assign(split="train", proto="T_h1_m1", p=3, protocol="top1")
    t = summarize(pred)
    acc = t["accuracy"].iloc[0]
    assert acc["images"] == 8 and acc["correct"] == 7
    assert acc["accuracy_pct"] == pytest.approx(100 * 7 / 8)
    assert acc["top1_rate_pct"] == pytest.approx(
        100 * 5 / 7
    )  # 5 of the 7 correct by super-majority
    assert acc["featured_model"] == "Model-3"
    pb = t["perfect_labels_per_batch"].set_index("batch")
    assert pb.loc["b1", "perfect_labels"] == 1 and pb.loc["b1", "perfect_label_list"] == "0"
    assert pb.loc["b2", "perfect_labels"] == 2 and pb.loc["b2", "perfect_label_list"] == "0 1"
    pl = t["perfect_labels"].iloc[0]
    assert pl["mean_perfect_per_batch"] == 1.5
    assert pl["perfect_all_batches"] == 1 and pl["perfect_all_batches_labels"] == "0"
    assert np.isnan(top1_rate([False], [True]))


def test_summary_keeps_splits_apart():
    pred = pd.DataFrame(
        {
            "batch": ["train_data_batch_1", "val_data"],
            "label": [0, 0],
            "correct": [True, False],
            "super_majority": [True, True],
            "split": ["train", "heldout"],
        }
    ).assign(proto="S_h1_m1", p=1, protocol="top3")
    acc = summarize(pred)["accuracy"].set_index("split")
    assert acc.loc["train", "accuracy_pct"] == 100 and acc.loc["heldout", "accuracy_pct"] == 0
    assert np.isnan(acc.loc["heldout", "top1_rate_pct"])


# ---------------------------------------------------------------- training evaluation (Table 2)


def test_truncate_cuts_toward_zero_not_rounding():
    w = np.array([0.1239, -0.1239, 0.1230, -0.0005, 2.0], dtype=np.float32)  # saved with 4 decimals
    got = truncate(w, 3, saved_decimals=4)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array([0.123, -0.123, 0.123, 0.0, 2.0], dtype=np.float32))
    np.testing.assert_array_equal(truncate(w, 4, saved_decimals=4), w)


def test_training_table_counts_error_free_fnns_and_partitions():
    fnn = pd.DataFrame(
        {
            "proto": "T_h1_m1",
            "feature": ["R", "G", "R", "G"],
            "module": ["m01", "m01", "m02", "m02"],
            "submodule": "s1",
            "accuracy": [1.0, 1.0, 1.0, 0.98],
            "accuracy_recorded": [1.0, 1.0, 1.0, 0.98],
            "accuracy_cut": [1.0, 1.0, 1.0, 0.98],
            "changed_predictions": [0, 0, 0, 0],
        }
    )
    row = training_table(fnn, 3).iloc[0]
    assert (row["min"], row["max"], row["median"]) == (98.0, 100.0, 100.0)
    assert row["mean"] == pytest.approx(99.5)
    assert row["error_free_fnns_text"] == "3/4" and row["error_free_partitions_text"] == "1/2"
    assert row["cut_changed_anything"] is False or row["cut_changed_anything"] == False  # noqa: E712


def test_training_evaluation_recomputes_accuracy_on_shards(tmp_path, monkeypatch):
    from errorless.gather import load

    labels = np.repeat(np.arange(4), 3)
    shard_dir = tmp_path / "shards"
    shard_dir.mkdir()
    for j in (1, 2):
        sel = labels[(labels >= 2 * j - 2) & (labels < 2 * j)]
        np.savez(
            shard_dir / f"m{j:02d}_s1.npz",
            images=handmade_images(sel),
            labels=sel,
            batch=np.array(["b"] * len(sel)),
            row=np.arange(len(sel)),
            ids=np.array([f"b:{i}" for i in range(len(sel))]),
            module=j,
            submodule=1,
            label_lo=2 * j - 2,
            label_hi=2 * j,
            num_labels=4,
        )
    pw = handmade_proto(["R", "G"], n_labels=4, c=2)
    monkeypatch.setattr(load, "load_proto", lambda *_a, **_k: pw)
    training = pd.DataFrame(
        {
            "proto": "T_h1_m1",
            "feature": ["R", "G", "R", "G"],
            "module": ["m01", "m01", "m02", "m02"],
            "submodule": "s1",
            "accuracy": 1.0,
        }
    )
    cfg = {
        "features": ["R", "G"],
        "transform": TRANSFORM,
        "weights": {"decimals": 4, "check_decimals": 3},
    }
    shards = {f"m{j:02d}_s1": shard_dir / f"m{j:02d}_s1.npz" for j in (1, 2)}
    table, fnn = training_evaluation(training, "unused.parquet", shards, cfg)
    assert (fnn["accuracy"] == 1.0).all() and (fnn["accuracy_cut"] == 1.0).all()
    row = table.iloc[0]
    assert row["error_free_fnns_text"] == "4/4" and row["error_free_partitions_text"] == "2/2"
    assert row["cut_predictions_changed"] == 0 and row["max_abs_diff_recorded"] == 0
    json.dumps(table.to_dict(orient="records"), default=str)  # CSV/JSON friendly


# ---------------------------------------------------------------- evaluate + summarize, end to end


def test_evaluate_and_summarize_commands(tmp_path):
    import pyarrow.parquet as pq
    import yaml

    from errorless.cli import main
    from errorless.io import write_parquet

    data = tmp_path / "data"
    data.mkdir()
    train_labels, test_labels = np.repeat(np.arange(8), 3), np.arange(8)
    np.savez(data / "train.npz", images=handmade_images(train_labels, 1), labels=train_labels)
    np.savez(data / "test.npz", images=handmade_images(test_labels, 2), labels=test_labels)
    cfg = {
        "dataset": {"format": "npz", "path": str(data), "labels": 8},
        "features": ["R", "G", "B"],
        "featured_models": [1, 3],
        "modules": {"labels_per_module": 4, "submodules": 2},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    results = tmp_path / "results"
    write_parquet(results / "weights.parquet", handmade_weights_table(["R", "G", "B"], 8, 4, cfg))
    preds = []
    for batch in ("train", "test"):
        out = results / "evaluation" / "predictions" / f"{batch}.parquet"
        assert (
            main(
                [
                    "evaluate",
                    "--config",
                    str(tmp_path / "config.yaml"),
                    "--batch",
                    batch,
                    "--weights",
                    str(results / "weights.parquet"),
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        preds.append(str(out))
        speed = json.loads(out.with_name(f"{batch}.speed.json").read_text())
        assert speed["protos"]["T_h1_m1"]["images_per_second"] > 0
    t = pq.read_table(preds[0]).to_pandas()
    assert len(t) == 24 * 2 * 2  # images x p x protocols
    assert set(t["split"]) == {"train"} and t["correct"].all()
    assert t["image_id"].iloc[0] == "train:0"
    assert (
        main(["summarize", "--predictions", *preds, "--out-dir", str(results / "evaluation")]) == 0
    )
    acc = pd.read_csv(results / "evaluation" / "accuracy.csv")
    assert (
        len(acc) == 2 * 2 * 2
        and (acc["accuracy_pct"] == 100).all()
        and (acc["top1_rate_pct"] == 100).all()
    )
    assert set(acc["split"]) == {"train", "heldout"}
    perfect = pd.read_csv(results / "evaluation" / "perfect_labels.csv")
    assert (perfect["perfect_all_batches"] == 8).all()
    assert (results / "evaluation" / "perfect_labels_per_batch.csv").exists()


def test_table_2_counts_budget_stops_apart_from_unfittable_data():
    from errorless.evaluate.table2 import with_status_counts

    table = pd.DataFrame({"proto": ["S_h1_m1", "T_h1_m1"], "fnns": [4, 4]})
    status = pd.DataFrame(
        {
            "proto": ["S_h1_m1"] * 4 + ["T_h1_m1"] * 4,
            "method": ["S"] * 4 + ["T"] * 4,
            "status": ["sgd_only"] * 4 + ["error_free", "budget", "budget", "conflicts"],
        }
    )
    out = with_status_counts(table, status).set_index("proto")
    assert out.loc[
        "T_h1_m1", ["budget_fnns", "conflict_fnns", "residual_fnns", "no_anchor_fnns"]
    ].tolist() == [2, 1, 0, 0]
    assert out.loc["S_h1_m1", ["budget_fnns", "residual_fnns"]].isna().all()  # S has no GDT
