"""Modularize: a partition of the training images into (module, submodule) shards."""

import os
import pickle

import numpy as np
import pytest

from errorless import synthetic
from errorless.config import load_config
from errorless.errors import ConfigError, DataError
from errorless.shards import assign, load_shard, modularize


@pytest.fixture
def data(tmp_path):
    cfg = load_config(
        overrides={
            "dataset": {"path": str(tmp_path / "data")},
            "synthetic": {
                "labels": 10,
                "images_per_label": 7,
                "batches": 3,
                "validation_per_label": 0,
                "plant_near": 0,
            },
            "modules": {"labels_per_module": 5, "submodules": 2},
        }
    )
    synthetic.write(cfg, tmp_path / "data")
    return cfg, tmp_path / "shards"


def test_partition(data):
    cfg, out = data
    rows = modularize(cfg, out)
    assert [(r["module"], r["submodule"]) for r in rows] == [
        ("m01", "s1"),
        ("m01", "s2"),
        ("m02", "s1"),
        ("m02", "s2"),
    ]
    seen = []
    for r in rows:
        s = load_shard(r["path"])
        assert s.label_lo == (s.module - 1) * 5 and s.label_hi == s.module * 5
        assert ((s.labels >= s.label_lo) & (s.labels < s.label_hi)).all()
        # stable order inside a shard: (source batch, label, row)
        key = list(zip(s.batch, s.labels, s.row, strict=True))
        assert key == sorted(key)
        seen += list(s.ids)
    assert len(seen) == len(set(seen)) == 3 * 10 * 7  # every image in exactly one shard
    # halves: 105 images per module -> 52 + 53 (the last part takes the remainder)
    assert [r["images"] for r in rows] == [52, 53, 52, 53]
    # ids are stable: they name the source batch and row
    s = load_shard(rows[0]["path"])
    assert s.ids[0] == f"{s.batch[0]}:{s.row[0]}"


def test_rerun_leaves_unchanged_shards_untouched(data):
    cfg, out = data
    modularize(cfg, out)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*.npz")}
    rows = modularize(cfg, out)
    assert not any(r["changed"] for r in rows)
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*.npz")}
    assert before == after
    # change two labels inside module 2 in one batch: only module 2's shards change
    path = cfg["dataset"]["path"] + "/train_data_batch_2"
    d = pickle.loads(open(path, "rb").read())
    labels = np.array(d["labels"])
    i, j = np.flatnonzero(labels == 6)[0], np.flatnonzero(labels == 9)[0]
    labels[i], labels[j] = 9, 6
    d["labels"] = labels.tolist()
    open(path, "wb").write(pickle.dumps(d))
    rows = modularize(cfg, out)
    changed = {r["module"] for r in rows if r["changed"]}
    assert changed == {"m02"}
    for name in ("m01_s1.npz", "m01_s2.npz"):
        assert os.stat(out / name).st_mtime_ns == before[name][1]


def test_assign_matches_plain_loop():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, 50)
    batch = rng.integers(0, 3, 50)
    row = np.arange(50)
    order, mod, part = assign(labels, batch, row, c=3, r=3, L=6)
    for j in range(2):
        idx = sorted(
            [i for i in range(50) if labels[i] // 3 == j],
            key=lambda i: (batch[i], labels[i], row[i]),
        )
        n = len(idx)
        for pos, i in enumerate(idx):
            k = list(order).index(i)
            assert mod[k] == j and part[k] == min(pos // (n // 3), 2)


def test_bad_partitions():
    with pytest.raises(ConfigError, match="cannot be split into modules of 4"):
        assign(np.array([0, 1]), np.zeros(2, int), np.arange(2), c=4, r=2, L=10)
    with pytest.raises(DataError, match=r"module m02 \(labels 5..9\) has no images"):
        assign(np.array([0, 1, 2, 3]), np.zeros(4, int), np.arange(4), c=5, r=2, L=10)
    with pytest.raises(DataError, match="fewer than 2 submodules"):
        assign(np.array([0, 5, 6]), np.zeros(3, int), np.arange(3), c=5, r=2, L=10)


def test_shard_errors(tmp_path):
    with pytest.raises(DataError, match="shard missing"):
        load_shard(tmp_path / "m01_s1.npz")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match="bad.npz: unreadable shard"):
        load_shard(tmp_path / "bad.npz")
