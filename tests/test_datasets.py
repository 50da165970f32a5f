"""Each loader reads files written by the test in the format's real on-disk layout."""

import pickle
import re

import numpy as np
import pytest

from errorless import datasets, synthetic
from errorless.config import load_config
from errorless.errors import ConfigError, DataError


def cfg_for(fmt, path, **extra):
    over = {"dataset": {"format": fmt, "path": str(path), **extra}}
    if fmt == "digits":
        over["features"] = ["gray"]
        over["featured_models"] = [1]
    return load_config(overrides=over)


def planes(images):  # (N, S, S, 3) -> (N, 3*S*S), R plane then G then B
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("side", [32, 64])
def test_imagenet_pickle_layout(tmp_path, side):
    rng = np.random.default_rng(side)
    imgs = rng.integers(0, 256, size=(5, side, side, 3), dtype=np.uint8)
    d = {"data": planes(imgs), "labels": [1, 1000, 3, 4, 5], "mean": planes(imgs).mean(0)}
    for b in (1, 2):
        (tmp_path / f"train_data_batch_{b}").write_bytes(pickle.dumps(d))
    (tmp_path / "val_data").write_bytes(pickle.dumps({"data": d["data"][:2], "labels": [7, 8]}))
    cfg = cfg_for(f"imagenet{side}", tmp_path, batches=2)
    s = datasets.load_training(cfg)
    assert s.images.shape == (10, side, side, 3)
    np.testing.assert_array_equal(s.images[:5], imgs)  # planes -> HWC exactly
    np.testing.assert_array_equal(s.labels[:5], [0, 999, 2, 3, 4])  # 1..1000 -> 0-based
    assert list(s.ids[[0, 6]]) == ["train_data_batch_1:0", "train_data_batch_2:1"]
    assert datasets.validation_batch(cfg) == "val_data"
    np.testing.assert_array_equal(datasets.load_batch(cfg, "val_data").labels, [6, 7])


def test_imagenet_npz_variant(tmp_path, rgb):
    np.savez(
        tmp_path / "train_data_batch_1.npz",
        data=planes(rgb),
        labels=np.arange(1, 7),
        mean=np.zeros(3072),
    )
    s = datasets.load_training(cfg_for("imagenet32-npz", tmp_path, batches=1))
    np.testing.assert_array_equal(s.images, rgb)
    np.testing.assert_array_equal(s.labels, np.arange(6))


def test_cifar10_and_cifar100_bytes_keys(tmp_path, rgb):
    c10 = tmp_path / "c10"
    c10.mkdir()
    (c10 / "data_batch_1").write_bytes(
        pickle.dumps({b"data": planes(rgb), b"labels": [0, 1, 2, 3, 4, 9]})
    )
    (c10 / "test_batch").write_bytes(pickle.dumps({b"data": planes(rgb[:2]), b"labels": [5, 6]}))
    cfg = cfg_for("cifar10", c10, batches=1)
    s = datasets.load_training(cfg)
    np.testing.assert_array_equal(s.images, rgb)
    assert s.num_labels == 10 and datasets.validation_batch(cfg) == "test_batch"
    c100 = tmp_path / "c100"
    c100.mkdir()
    (c100 / "train").write_bytes(
        pickle.dumps(
            {b"data": planes(rgb), b"fine_labels": [0, 50, 99, 1, 2, 3], b"coarse_labels": [0] * 6}
        )
    )
    s = datasets.load_training(cfg_for("cifar100", c100))
    np.testing.assert_array_equal(s.labels, [0, 50, 99, 1, 2, 3])
    assert s.num_labels == 100


def test_generic_npz_with_ids(tmp_path, rgb):
    np.savez(
        tmp_path / "train.npz",
        images=rgb,
        labels=np.array([0, 1, 1, 2, 2, 3]),
        ids=np.array([f"img{i}" for i in range(6)]),
    )
    s = datasets.load_training(cfg_for("npz", tmp_path, labels=4))
    assert list(s.ids) == [f"img{i}" for i in range(6)]
    assert s.num_labels == 4


def test_digits_real_grey():
    s = datasets.load_training(cfg_for("digits", "unused"))
    assert s.images.shape == (1797, 8, 8, 1) and s.images.dtype == np.uint8
    assert s.images.max() == 255 and set(np.unique(s.labels)) == set(range(10))


def test_colour_feature_on_grey_is_config_error():
    with pytest.raises(ConfigError, match="colour feature"):
        load_config(overrides={"dataset": {"format": "digits"}, "features": ["R"]})


@pytest.mark.parametrize(
    "write, message",
    [
        (None, "data file missing"),
        (
            lambda p: p.write_bytes(
                pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 2]})[:50]
            ),
            "truncated or corrupt",
        ),
        (
            lambda p: p.write_bytes(
                pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [1, 2]})
            ),
            r"must be uint8 \(N, 3072\)",
        ),
        (
            lambda p: p.write_bytes(
                pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 1001]})
            ),
            "label 1001 outside the expected range 1..1000;",
        ),
        (
            lambda p: p.write_bytes(
                pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]})
            ),
            "below 1",
        ),
        (
            lambda p: p.write_bytes(
                pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1]})
            ),
            "1 labels for 2 images",
        ),
        (lambda p: p.write_bytes(pickle.dumps({"labels": [1]})), "missing key 'data'"),
        # accepted silently before (issue #13): truncated to integers, or an empty batch
        (
            lambda p: p.write_bytes(
                pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 1.5]})
            ),
            "labels must be integers, got float 1.5",
        ),
        (
            lambda p: p.write_bytes(
                pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1, True]})
            ),
            "labels must be integers, got bool True",
        ),
        (
            lambda p: p.write_bytes(
                pickle.dumps(
                    {"data": np.zeros((2, 3072), np.uint8), "labels": np.array([1.0, 2.0])}
                )
            ),
            "labels must be integers, got a float64 array",
        ),
        (
            lambda p: p.write_bytes(
                pickle.dumps({"data": np.zeros((0, 3072), np.uint8), "labels": []})
            ),
            r"no images \(N = 0\)",
        ),
        (lambda p: p.write_bytes(b""), r"empty \(0 bytes\)"),
        # tracebacks before: a REDUCE on a dict, an absurd BINBYTES length
        (lambda p: p.write_bytes(b"\x80\x02}q\x00)R."), "not a readable pickle batch"),
        (lambda p: p.write_bytes(b"\x80\x04B\xff\xff\xff\x7f."), "not a readable pickle batch"),
    ],
)
def test_bad_input_names_the_file(tmp_path, write, message):
    path = tmp_path / "train_data_batch_1"
    if write:
        write(path)
    with pytest.raises(DataError, match=message) as e:
        datasets.load_training(cfg_for("imagenet32", tmp_path, batches=1))
    assert str(path) in str(e.value)


def test_wrong_config_key_is_named():
    with pytest.raises(ConfigError, match="config key sgd.*'treshold' was unexpected"):
        load_config(overrides={"sgd": {"treshold": 0.9}})
    with pytest.raises(ConfigError, match="config key modules.labels_per_module"):
        load_config(overrides={"modules": {"labels_per_module": 0}})
    with pytest.raises(ConfigError, match="featured_models"):
        load_config(overrides={"featured_models": [7]})


def test_synthetic_is_deterministic_and_plants_truth(tmp_path):
    cfg = load_config(overrides={"synthetic": {"images_per_label": 10, "batches": 2, "labels": 10}})
    a, pa = synthetic.generate(cfg)
    b, pb = synthetic.generate(cfg)
    for k in a:
        np.testing.assert_array_equal(a[k][0], b[k][0])
    assert pa == pb
    kinds = [p["kind"] for p in pa]
    near_kinds = cfg["synthetic"]["near_kinds"]
    assert (
        kinds == ["same_shard"] * 2 + ["cross_module"] * 2 + near_kinds
    )  # one near plant per kind
    for p in pa:
        assert p["label_a"] != p["label_b"]
        if p["placement"] == "same_shard":
            assert (p["module_a"], p["submodule_a"]) == (p["module_b"], p["submodule_b"])
        else:
            assert p["module_a"] != p["module_b"]
    # written in the imagenet64 layout and read back through the real loader
    synthetic.write(cfg, tmp_path)
    read = datasets.load_training({**cfg, "dataset": {**cfg["dataset"], "path": str(tmp_path)}})
    imgs = dict(zip(read.ids, read.images, strict=True))
    for p in pa:
        same = np.array_equal(imgs[p["id_a"]], imgs[p["id_b"]])
        assert same == (p["kind"] in ("same_shard", "cross_module"))
        if p["kind"] == "flip":
            np.testing.assert_array_equal(imgs[p["id_a"]][:, ::-1], imgs[p["id_b"]])
    assert (tmp_path / "planted.csv").read_text().startswith("kind,id_a,label_a,id_b,label_b")


def test_settings_json_keeps_small_floats(tmp_path):
    # json.dumps writes 0.00001 as 1e-05, which YAML 1.1 would read as a string
    import json

    from errorless.config import parse_settings

    cfg = parse_settings(json.dumps({"gdt": {"delta_floor": 0.00001}}))
    assert cfg["gdt"]["delta_floor"] == 1e-05
    (tmp_path / "s.yaml").write_text("gdt:\n  delta_floor: 1.0e-05\n")
    assert parse_settings(f"@{tmp_path / 's.yaml'}")["gdt"]["delta_floor"] == 1e-05
    with pytest.raises(ConfigError, match="neither a JSON object nor an existing file"):
        parse_settings("missing.yaml")


class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > pwned.txt",))


@pytest.mark.parametrize(
    "payload",
    [
        Evil(),
        {"data": Evil(), "labels": [1]},
        {"data": np.array([Evil()], dtype=object), "labels": [1]},
    ],
)
def test_pickles_may_name_only_numpy_arrays(tmp_path, payload, monkeypatch):
    """A restricted unpickler: no callable outside numpy's array reconstruction runs."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "train_data_batch_1"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(
        DataError, match="not a readable pickle batch.*refusing to load global"
    ) as e:
        datasets.load_training(cfg_for("imagenet32", tmp_path, batches=1))
    assert str(path) in str(e.value) and not (tmp_path / "pwned.txt").exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_restricted_unpickler_reads_every_protocol(tmp_path, rgb, protocol):
    """numpy arrays, numpy scalars and python-2 style bytes as real data sets pickle them."""
    d = {
        b"data": planes(rgb),
        b"labels": [int(v) for v in np.arange(6)],
        b"mean": np.float64(1.5),
        b"batch_label": b"training batch 1 of 5",
        b"filenames": [b"a.png"] * 6,
    }
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(d, protocol=protocol))
    s = datasets.load_training(cfg_for("cifar10", tmp_path, batches=1, validation=False))
    np.testing.assert_array_equal(s.images, rgb)


@pytest.mark.parametrize("val", [None, b"", "empty-batch"])
def test_validation_on_with_missing_or_empty_heldout_file_is_an_error(tmp_path, rgb, val):
    d = {"data": planes(rgb), "labels": [1, 2, 3, 4, 5, 6]}
    (tmp_path / "train_data_batch_1").write_bytes(pickle.dumps(d))
    if val == "empty-batch":
        (tmp_path / "val_data").write_bytes(
            pickle.dumps({"data": np.zeros((0, 3072), np.uint8), "labels": []})
        )
    elif val is not None:
        (tmp_path / "val_data").write_bytes(val)
    cfg = cfg_for("imagenet32", tmp_path, batches=1)
    if val == "empty-batch":  # the file is there: the evaluation job's loader refuses it
        assert datasets.validation_batch(cfg) == "val_data"
        with pytest.raises(DataError, match=r"val_data: the batch has no images \(N = 0\)"):
            datasets.load_batch(cfg, "val_data")
    else:
        with pytest.raises(
            DataError,
            match="val_data: held-out file (missing|empty) while dataset.validation is true",
        ):
            datasets.validation_batch(cfg)
    assert (
        datasets.validation_batch(cfg_for("imagenet32", tmp_path, batches=1, validation=False))
        is None
    )


@pytest.mark.parametrize(
    "over, needle",
    [
        ({"results": ""}, "config key results"),
        ({"results": "/"}, "config key results"),
        ({"results": "//"}, "config key results"),
        ({"results": "/tmp/.."}, "config key results: '/tmp/..' is the filesystem root"),
        ({"dataset": {"path": ""}}, "config key dataset.path"),
        (
            {"sgd": {"threshold": float("nan")}},
            "config key sgd.threshold: nan is not a finite number",
        ),
        (
            {"gdt": {"max_seconds": float("inf")}},
            "config key gdt.max_seconds: inf is not a finite number",
        ),
    ],
)
def test_schema_rejects_root_results_and_non_finite_numbers(over, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_config(overrides=over)


def test_broken_yaml_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sgd: {threshold: 0.9\n  foo: [\n")
    with pytest.raises(
        ConfigError, match=rf"config file {re.escape(str(bad))} is not valid YAML \(line 2"
    ):
        load_config(bad)
