"""The confusion tables (errorless.evaluate.confusion) against plain loops, the module plan of
``modules.groups`` and its one-line errors, label names."""

import itertools
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from errorless.config import load_config
from errorless.data.labelnames import label_names
from errorless.errors import ConfigError
from errorless.evaluate.confusion import (
    KEYS,
    count_predictions,
    module_block,
    module_matrix,
    pair_examples,
    summary,
    top_pairs,
    with_modules,
    write_confusion,
)
from errorless.grid import cut_group, job_grid, module_plan


def predictions(rng, n=400, L=7) -> pd.DataFrame:
    """A predictions table in the evaluate layout: two protos, p 1 and 2, two protocols, two
    splits; predictions mostly right, errors drawn towards a few pairs."""
    frames = []
    for proto, p, protocol, split in itertools.product(
        ["S_h1_m1", "T_h1_m1"], [1, 2], ["top1", "top3"], ["train", "heldout"]
    ):
        label = rng.integers(0, L, n)
        predicted = np.where(rng.random(n) < 0.7, label, rng.integers(0, L, n))
        predicted = np.where(rng.random(n) < 0.1, (label + 1) % L, predicted)
        frames.append(
            pd.DataFrame(
                {
                    "image_id": [f"b:{i}" for i in range(n)],
                    "proto": proto,
                    "p": np.int64(p),
                    "protocol": protocol,
                    "split": split,
                    "label": label,
                    "predicted": predicted,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def pred_files(tmp_path):
    rng = np.random.default_rng(0)
    pred = predictions(rng)
    half = len(pred) // 3  # files cut across keys: the counts must be summed over files
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    pred.iloc[:half].to_parquet(paths[0])
    pred.iloc[half:].to_parquet(paths[1])
    return pred, paths


def test_sparse_table_equals_a_plain_loop(pred_files):
    pred, paths = pred_files
    counts = count_predictions(paths, 7)
    loop = Counter(
        (r.proto, r.p, r.protocol, r.split, r.label, r.predicted) for r in pred.itertuples()
    )
    got = {
        (r.proto, r.p, r.protocol, r.split, r.given, r.predicted): r.count
        for r in counts.itertuples()
    }
    assert got == dict(loop)
    assert (counts["count"] > 0).all() and counts["count"].sum() == len(pred)


def test_module_matrices_add_up_to_the_table(pred_files):
    _, paths = pred_files
    module_of = np.array([0, 0, 0, 1, 1, 2, 2])
    modules = ["m01", "m02", "m03"]
    counts = with_modules(count_predictions(paths, 7), module_of, modules)
    mm = module_matrix(counts)
    for key, c in counts.groupby(KEYS):
        m = mm.set_index(KEYS).loc[key]
        assert m["count"].sum() == c["count"].sum()
        inside = 0
        for j, name in enumerate(modules):
            block = module_block(c, np.flatnonzero(module_of == j))
            diag = m[(m["given_module"] == name) & (m["predicted_module"] == name)]
            assert block.sum() == diag["count"].sum()
            inside += block.sum() - np.trace(block)
        s = summary(c)
        assert s["within_module"].item() == inside
        assert s["errors"].item() == c.loc[c["given"] != c["predicted"], "count"].sum()


def test_top_pairs_and_examples_equal_a_loop(pred_files):
    pred, paths = pred_files
    counts = count_predictions(paths, 7)
    pairs = pair_examples(paths, top_pairs(counts, 3), 2)
    key = ("T_h1_m1", 2, "top1", "train")
    sub = pred[(pred[KEYS] == pd.Series(key, index=KEYS)).all(axis=1)]
    per = Counter()
    for r in sub.itertuples():
        if r.label != r.predicted:
            per[(min(r.label, r.predicted), max(r.label, r.predicted))] += 1
    best = sorted(per.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    got = pairs[(pairs[KEYS] == pd.Series(key, index=KEYS)).all(axis=1)]
    assert [(r.a, r.b, r.count) for r in got.itertuples()] == [(a, b, n) for (a, b), n in best]
    r = got.iloc[0]
    a_to_b = sub[(sub["label"] == r["a"]) & (sub["predicted"] == r["b"])]
    assert r["a_to_b"] == len(a_to_b)
    assert r["rate_a_to_b"] == pytest.approx(len(a_to_b) / (sub["label"] == r["a"]).sum())
    assert r["examples_a_to_b"] == ";".join(a_to_b["image_id"].head(2))


# ---------------------------------------------------------------- groups and the module plan


def groups_config(tmp_path, rows: str, c: int = 3, labels: int = 8):
    path = tmp_path / "groups.csv"
    path.write_text(rows)
    cfg = load_config(
        overrides={
            "synthetic": {"labels": labels},
            "modules": {"labels_per_module": c, "groups": str(path)},
        }
    )
    return cfg, path


def test_groups_become_modules_cut_to_size(tmp_path):
    rows = "label,group\n" + "".join(f"{i},{g}\n" for i, g in enumerate("aaaaabbb"))
    cfg, _ = groups_config(tmp_path, rows)
    plan = module_plan(cfg)
    # a: 5 labels > 3 -> two modules of 3 and 2; b: 3 labels stays whole
    assert [m.tolist() for m in plan.modules] == [[0, 1, 2], [3, 4], [5, 6, 7]]
    assert plan.groups == list("aaaaabbb")
    assert job_grid(cfg).modules == ["m01", "m02", "m03"]
    assert [len(p) for p in cut_group(range(10), 4)] == [4, 3, 3]


@pytest.mark.parametrize(
    "rows, message",
    [
        ("label,group\n0,a\n1,a\n2,a\n9,b\n", "unknown label '9'"),
        ("label,group\n0,a\n1,a\n1,b\n", "label 1 is in two groups"),
        ("label,group\n0,a\n1,a\n2,b\n3,b\n", "4 label(s) in no group: 4, 5, 6, 7"),
        ("label;group\n0;a\n", "header 'label,group'"),
        ("label,group\n0,a\n1,a\n2,a\n3,a\n4,b\n5,b\n6,b\n7,c\n", "module of one label"),
    ],
)
def test_bad_group_files_are_one_line_errors(tmp_path, rows, message):
    with pytest.raises(ConfigError) as e:
        cfg, path = groups_config(tmp_path, rows)
        module_plan(cfg)
    text = str(e.value)
    assert message in text and "groups.csv" in text and "\n" not in text


def test_a_missing_group_file_names_the_key(tmp_path):
    cfg = load_config(overrides={"modules": {"groups": str(tmp_path / "none.csv")}})
    with pytest.raises(ConfigError, match="modules.groups: .*none.csv does not exist"):
        module_plan(cfg)


# ---------------------------------------------------------------- label names


def test_label_names_from_the_data_set_or_a_file(tmp_path):
    meta = tmp_path / "batches.meta"
    meta.write_bytes(pickle.dumps({b"label_names": [b"airplane", b"automobile", b"bird"]}))
    cfg = load_config(overrides={"dataset": {"format": "cifar10", "path": str(tmp_path)}})
    assert label_names(cfg, 4) == ["airplane", "automobile", "bird", "3"]
    names = tmp_path / "names.csv"
    names.write_text("label,name\n1,one\n0,zero\n")
    cfg["dataset"]["label_names"] = str(names)
    assert label_names(cfg, 3) == ["zero", "one", "2"]
    names.write_text("cat\ndog\n")
    assert label_names(cfg, 2) == ["cat", "dog"]


def test_write_confusion_tables(tmp_path, pred_files):
    _, paths = pred_files
    cfg = load_config(overrides={"synthetic": {"labels": 7}, "modules": {"labels_per_module": 7}})
    out = tmp_path / "confusion"
    write_confusion(cfg, paths, out)
    for name in ("counts.parquet", "modules.parquet", "pairs.csv", "summary.csv", "labels.csv"):
        assert (out / name).is_file(), name
    s = pd.read_csv(out / "summary.csv")
    assert (s["within_module_pct"] == 100).all()  # one module: every error stays inside


# ---------------------------------------------------------------- end to end with groups


@pytest.mark.slow
def test_groups_of_unequal_sizes_plan_train_and_evaluate(tmp_path):
    """scikit-learn's real digits as a grey npz, modules from a groups file (round digits,
    straight digits, the rest): groups of 5, 3 and 2 labels with labels_per_module 4 give
    modules of 3, 2, 3 and 2 labels. The pipeline trains, evaluates (the vote on each module's
    own labels) and counts the confusion inside the groups. One submodule and the evaluation
    targets only keep it to a few jobs (the full report with groups: docs/confusion.md)."""
    import subprocess
    import sys
    import time

    import yaml
    from sklearn.datasets import load_digits

    root = Path(__file__).resolve().parents[1]
    d = load_digits()
    (tmp_path / "data").mkdir()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)[..., None]
    np.savez(tmp_path / "data" / "train.npz", images=images, labels=d.target)
    groups = {"round": [0, 3, 6, 8, 9], "straight": [1, 4, 7], "rest": [2, 5]}
    (tmp_path / "groups.csv").write_text(
        "label,group\n" + "".join(f"{i},{g}\n" for g, ls in groups.items() for i in ls)
    )
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    cfg = {
        "dataset": {
            "format": "npz",
            "path": "data/train.npz",
            "validation": False,
            "labels": 10,
            "label_names": "names.txt",
        },
        "modules": {"labels_per_module": 4, "submodules": 1, "groups": "groups.csv"},
        "features": ["gray"],
        "featured_models": [1],
        "transform": {"pool": 2, "trim": 0, "decimals": 4},
        "models": {"architectures": {"h1": [32]}, "use": ["h1"]},
        "gdt": {"max_seconds": 3},
    }
    (tmp_path / "groups.yaml").write_text(yaml.safe_dump(cfg))
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(tmp_path)]
        + ["--configfile", str(tmp_path / "groups.yaml"), "--cores", "2"]
        + ["results/evaluation/confusion/summary.csv", "results/evaluation/training.csv"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = tmp_path / "results"
    from errorless.data.shards import load_shard, manifest_shards

    shards = {k: load_shard(p) for k, p in manifest_shards(res / "shards/manifest.tsv").items()}
    held = {k[:3]: sh.module_labels.tolist() for k, sh in shards.items()}
    assert held == {"m01": [0, 3, 6], "m02": [8, 9], "m03": [1, 4, 7], "m04": [2, 5]}
    for sh in shards.values():
        assert set(sh.labels) == set(sh.module_labels)
    training = pd.read_parquet(res / "training.parquet")
    assert len(training) == 2 * 4 and set(training["n_labels"]) == {2, 3}
    assert (training["accuracy"] > 0.5).all()
    # recomputed from the saved (padded, stacked) weights on the shards: GDT fits every shard
    table = pd.read_csv(res / "evaluation/training.csv").set_index("proto")
    assert table.loc["T_h1_m1", "min"] == 100.0
    pred = pd.read_parquet(res / "evaluation/predictions/train.parquet")
    top1 = pred[(pred["proto"] == "T_h1_m1") & (pred["protocol"] == "top1")]
    assert len(top1) == len(d.target) and top1["predicted"].between(0, 9).all()
    # where an image's own module wins the vote, its label is read back through the module's
    # labels (a wrong map would make these errors); with p = 1 small modules often win images
    # of other modules (the vote's step 3 on one distance), so the accuracy overall is lower
    module_of = {i: m for m, ls in held.items() for i in ls}
    own = top1["module"] == top1["label"].map(module_of)
    assert own.sum() > 500 and top1.loc[own, "correct"].mean() > 0.95
    summary = pd.read_csv(res / "evaluation/confusion/summary.csv")
    assert {"within_module_pct", "within_group_pct"} <= set(summary.columns)
    counts = pd.read_parquet(res / "evaluation/confusion/counts.parquet")
    key = (counts["proto"] == "T_h1_m1") & (counts["protocol"] == "top1")
    assert counts.loc[key, "count"].sum() == len(d.target)
    labels = pd.read_csv(res / "evaluation/confusion/labels.csv")
    assert labels["name"].tolist() == names and labels.loc[2, "group"] == "rest"
    print(f"groups end to end: {seconds:.0f} s")


def test_photos_grouped_config_has_one_module_per_photograph(monkeypatch):
    """config/photos-groups.csv is the photos data set's own grouping (labels.csv, column
    photo) and config/photos-grouped.yaml plans one module per photograph."""
    import yaml

    from errorless.data.photos import parts, source_photos

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)  # the configs' paths are relative to the checkout
    grouped = yaml.safe_load((root / "config/photos-grouped.yaml").read_text())
    cfg = load_config(root / "config/photos.yaml", overrides=grouped)
    groups = pd.read_csv(root / "config/photos-groups.csv")
    photo = [source_photos()[p.photo][0] for p in parts()[: cfg["photos"]["labels"]]]
    assert groups["label"].tolist() == list(range(len(photo)))
    assert groups["group"].tolist() == photo
    plan = module_plan(cfg)
    assert [len(m) for m in plan.modules] == [4, 4, 2, 2, 4, 4]
    assert job_grid(cfg).modules == [f"m0{j}" for j in range(1, 7)]


def test_padded_stack_of_unequal_modules_equals_each_fnn_alone():
    """FNNs of modules of 3 and 2 labels stacked (gather.load.ProtoWeights padded with bias -inf):
    every FNN's top labels and distances equal those of its own, unpadded weights read
    through its module's labels; a padded output is named only after the real ones."""
    import torch

    from errorless import fnn
    from errorless.evaluate.inference import proto_kernels
    from errorless.gather.load import ProtoWeights

    rng = np.random.default_rng(1)
    D, H = 6, 5
    modules = [np.array([0, 4, 7]), np.array([2, 9])]
    own = [
        [
            (rng.normal(size=(D, H)), rng.normal(size=H)),
            (rng.normal(size=(H, len(m))), rng.normal(size=len(m))),
        ]
        for m in modules
    ]
    W1 = np.stack([o[0][0] for o in own])[None].astype(np.float32)  # (F=1, G, D, H)
    b1 = np.stack([o[0][1] for o in own])[None].astype(np.float32)
    W2 = np.zeros((1, 2, H, 3), np.float32)
    b2 = np.full((1, 2, 3), -np.inf, np.float32)
    label_map = np.full((2, 3), -1)
    for g, (m, o) in enumerate(zip(modules, own, strict=True)):
        W2[0, g, :, : len(m)], b2[0, g, : len(m)] = o[1]
        label_map[g, : len(m)] = m
    pw = ProtoWeights(
        "T_h1_m1", ["gray"], [("m01", "s1"), ("m02", "s1")], label_map, [(W1, b1), (W2, b2)], {}
    )
    assert pw.module_sizes.tolist() == [3, 2]
    x = torch.as_tensor(rng.normal(size=(20, D)), dtype=torch.float32)
    labs, dists = proto_kernels(pw)[0].top(x, 3)  # (G, N, 3)
    for g, (m, o) in enumerate(zip(modules, own, strict=True)):
        params = fnn.as_params([(w.astype(np.float32), b.astype(np.float32)) for w, b in o])
        idx, dist = fnn.top_labels(fnn.softmax(fnn.forward(params, x)), 3)
        k = idx.shape[-1]  # a module of 2 labels names 2; the padded third comes last
        assert np.array_equal(labs[g, :, :k].numpy(), m[idx.numpy()])
        assert torch.allclose(dists[g, :, :k], dist, atol=1e-6)
        assert torch.isfinite(dists[g, :, :k]).all()
    # the module of 2 labels: its third pick is the padding (-1, distance inf: never wins)
    assert (labs[1, :, 2] == -1).all() and torch.isinf(dists[1, :, 2]).all()
    # saturated outputs (a real label's softmax exactly 0, tied with the padding): the real
    # labels still come first
    pw.layers[-1][0][0, 1] *= 1e4
    labs, dists = proto_kernels(pw)[0].top(x, 3)
    assert set(np.unique(labs[1, :, :2].numpy())) <= {2, 9} and (labs[1, :, 2] == -1).all()
