"""Modularize: a partition of the training images into (module, submodule) shards."""

import os
import pickle

import numpy as np
import pytest

from errorless.config import load_config
from errorless.data import synthetic
from errorless.data.shards import assign, load_shard, modularize
from errorless.errors import ConfigError, DataError


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
        # every submodule holds every label of its module
        assert set(s.labels) == set(range(s.label_lo, s.label_hi))
    assert len(seen) == len(set(seen)) == 3 * 10 * 7  # every image in exactly one shard
    # each label's images are cut in halves; the last part takes the remainder
    for m in ("m01", "m02"):
        s1, s2 = (load_shard(r["path"]) for r in rows if r["module"] == m)
        n1, n2 = (
            np.bincount(s1.local_labels, minlength=5),
            np.bincount(s2.local_labels, minlength=5),
        )
        assert ((n2 - n1 >= 0) & (n2 - n1 <= 1)).all() and (n1 >= 10).all()
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


def _plain_assign(labels, batch, row, c, r):
    """docs/method.md#modules-and-submodules as a loop: each label's images in (batch, row) order,
    cut into r parts of
    n // r (the last takes the rest; all in the last part when n < r)."""
    part = {}
    for lab in sorted(set(labels.tolist())):
        idx = sorted(
            (i for i in range(len(labels)) if labels[i] == lab), key=lambda i: (batch[i], row[i])
        )
        size = len(idx) // r
        for pos, i in enumerate(idx):
            part[i] = min(pos // size, r - 1) if size else r - 1
    return part


@pytest.mark.parametrize("seed", range(4))
def test_assign_matches_plain_loop(seed):
    rng = np.random.default_rng(seed)
    n = 60
    labels = rng.integers(0, 5, n)
    labels[[7, 30]] = 5  # label 5 has fewer images than submodules: both in the last part
    batch = rng.integers(0, 3, n)
    row = rng.permutation(n)
    order, mod, part = assign(labels, batch, row, c=3, r=3, L=6)
    want = _plain_assign(labels, batch, row, 3, 3)
    assert sorted(order.tolist()) == list(range(n))  # a permutation
    key = [(labels[i] // 3, batch[i], labels[i], row[i]) for i in order]
    assert key == sorted(key)  # sorted by (module, batch, label, row)
    for k, i in enumerate(order):
        assert mod[k] == labels[i] // 3 and part[k] == want[i], i


def test_one_batch_gives_every_submodule_every_label():
    """One source batch sorted by label (a one-file data set): the first version of the
    split gave m01_s1 the first half of the labels; now each submodule holds every label."""
    labels = np.repeat(np.arange(10), [98, 113, 103, 101, 98, 89, 95, 102, 97, 100])
    order, mod, part = assign(
        labels, np.zeros(len(labels), int), np.arange(len(labels)), c=10, r=2, L=10
    )
    y = labels[order]
    for s in range(2):
        counts = np.bincount(y[part == s], minlength=10)
        assert (counts >= 44).all(), counts
    np.testing.assert_array_equal(
        np.bincount(y[part == 1], minlength=10) - np.bincount(y[part == 0], minlength=10),
        np.bincount(labels, minlength=10) % 2,
    )


def test_bad_partitions():
    with pytest.raises(ConfigError, match="cannot be split into modules of 4"):
        assign(np.array([0, 1]), np.zeros(2, int), np.arange(2), c=4, r=2, L=10)
    with pytest.raises(DataError, match=r"module m02 \(labels 5..9\) has no images"):
        assign(np.array([0, 1, 2, 3]), np.zeros(4, int), np.arange(4), c=5, r=2, L=10)
    with pytest.raises(
        DataError, match="m02 has no image for submodule s1: its labels have fewer than 2"
    ):
        assign(np.array([0, 1, 0, 5, 6]), np.zeros(5, int), np.arange(5), c=5, r=2, L=10)


def test_shard_errors(tmp_path):
    with pytest.raises(DataError, match="shard missing"):
        load_shard(tmp_path / "m01_s1.npz")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match="bad.npz: unreadable shard"):
        load_shard(tmp_path / "bad.npz")


def _in_memory_shards(cfg):
    """The plain reference: the whole training set in memory, sorted by assign()."""
    from errorless.data import datasets

    data = datasets.load_training(cfg)
    c, r = cfg["modules"]["labels_per_module"], cfg["modules"]["submodules"]
    names = datasets.train_batches(cfg)
    bidx = np.array([names.index(b) for b in data.batch])
    order, mod, part = assign(data.labels, bidx, data.row, c, r, data.num_labels)
    out = {}
    for j in range(data.num_labels // c):
        for s in range(r):
            sel = order[(mod == j) & (part == s)]
            out[(j + 1, s + 1)] = {
                "images": data.images[sel],
                "labels": data.labels[sel],
                "batch": data.batch[sel].astype(str),
                "row": data.row[sel],
                "ids": data.ids[sel].astype(str),
            }
    return out, data.images.nbytes


@pytest.fixture
def eleven_batches(tmp_path):
    """11 batches (names of two widths: ..._9, ..._10), 4 modules, 64-px images."""
    cfg = load_config(
        overrides={
            "dataset": {"path": str(tmp_path / "data")},
            "synthetic": {
                "labels": 20,
                "images_per_label": 4,
                "batches": 11,
                "validation_per_label": 0,
                "plant_near": 0,
                "plant_flips": 0,
            },
            "modules": {"labels_per_module": 5, "submodules": 2},
        }
    )
    synthetic.write(cfg, tmp_path / "data")
    return cfg, tmp_path / "shards"


def test_streaming_modularize_equals_the_in_memory_partition(eleven_batches):
    cfg, out = eleven_batches
    expected, _ = _in_memory_shards(cfg)
    rows = modularize(cfg, out)
    assert len(rows) == len(expected) == 8
    for r in rows:
        with np.load(r["path"]) as z:
            want = expected[(int(z["module"]), int(z["submodule"]))]
            for key, v in want.items():
                assert z[key].dtype == v.dtype, key
                np.testing.assert_array_equal(z[key], v, err_msg=key)
    assert not (out / ".spill").exists()  # the spill files are gone


def test_streaming_modularize_holds_about_a_batch_and_a_module(eleven_batches):
    """Peak Python/numpy allocations stay well under the training set: one batch (1/11) and
    one module (1/4) with its shards, not all images plus a sorted copy (> 2x the set)."""
    import tracemalloc

    cfg, out = eleven_batches
    _, total = _in_memory_shards(cfg)
    tracemalloc.start()
    modularize(cfg, out)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 0.6 * total, (peak, total)
