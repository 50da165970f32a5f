"""Each loader reads files written by the test in the format's real on-disk layout."""

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from errorless.config import load_config
from errorless.data import datasets, idx, synthetic
from errorless.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]


def cfg_for(fmt, path, **extra):
    over = {"dataset": {"format": fmt, "path": str(path), **extra}}
    if fmt in datasets.GREY_FORMATS:
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


# ---------------------------------------------------------------- grey data, IDX (mnist)


def idx_pair(folder, prefix, images, labels, gz=False):
    """Write one IDX pair (images (N, S, S), labels (N,)) as MNIST publishes it."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    idx.write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
    idx.write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)


@pytest.fixture
def grey():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8), np.array([0, 1, 2, 9, 4, 5, 6])


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, grey, gz):
    images, labels = grey
    idx_pair(tmp_path, "train", images, labels, gz)
    idx_pair(tmp_path, "t10k", images[:3], labels[:3], gz)
    cfg = cfg_for("mnist", tmp_path, idx_train="train", validation=True)
    assert datasets.train_batches(cfg) == ["train"] and datasets.validation_batch(cfg) == "t10k"
    datasets.check_source(cfg)
    s = datasets.load_training(cfg)
    assert s.images.shape == (7, 28, 28, 1) and s.images.dtype == np.uint8
    np.testing.assert_array_equal(s.images[..., 0], images)
    np.testing.assert_array_equal(s.labels, labels)
    assert s.labels.dtype == np.int64 and s.num_labels == 10
    assert list(s.ids[[0, 6]]) == ["train:0", "train:6"]
    v = datasets.load_batch(cfg, "t10k")
    assert list(v.ids) == ["t10k:0", "t10k:1", "t10k:2"]
    # the snakemake inputs: both files of the pair
    suffix = ".gz" if gz else ""
    assert [p.name for p in datasets.batch_files(cfg)] == [
        f"train-images-idx3-ubyte{suffix}",
        f"train-labels-idx1-ubyte{suffix}",
    ]
    # the t10k pair as the training set: the train pair is held out
    cfg = cfg_for("mnist", tmp_path, idx_train="t10k", validation=True)
    assert datasets.train_batches(cfg) == ["t10k"] and datasets.validation_batch(cfg) == "train"
    assert list(datasets.load_training(cfg).ids) == ["t10k:0", "t10k:1", "t10k:2"]
    cfg = cfg_for("mnist", tmp_path, idx_train="t10k", validation=False)
    assert datasets.validation_batch(cfg) is None


def test_idx_plain_file_wins_over_gz(tmp_path, grey):
    images, labels = grey
    idx_pair(tmp_path, "train", images, labels)
    idx_pair(tmp_path, "train", images[:2], labels[:2], gz=True)
    s = datasets.load_training(cfg_for("mnist", tmp_path, validation=False))
    assert len(s) == 7


def _images_file(d):
    return d / "train-images-idx3-ubyte"


def _labels_file(d):
    return d / "train-labels-idx1-ubyte"


def _header(magic, *dims):
    return magic.to_bytes(4, "big") + np.asarray(dims, ">u4").tobytes()


PIXELS = bytes(2 * 28 * 28)
BAD_IDX = [
    # (which file is written wrong, its bytes, message)
    ("images", b"", r"truncated IDX header \(0 of 16 bytes\)"),
    ("images", _header(0x803, 2, 28)[:10], r"truncated IDX header \(10 of 16 bytes\)"),
    ("images", _header(0x801, 2) + bytes(2), "not an IDX images file: magic number 0x00000801"),
    ("images", _header(0x0D03, 2, 28, 28) + PIXELS, "magic number 0x00000d03, expected 0x00000803"),
    ("images", _header(0x804, 2, 28, 28, 1) + PIXELS, "magic number 0x00000804"),
    ("images", _header(0x803, 2, 28, 28) + PIXELS[:-5], "truncated: the header announces 2 x 28"),
    ("images", _header(0x803, 2, 28, 28) + PIXELS + b"x", "too long: .* holds 1569 bytes"),
    ("images", _header(0x803, 2**31, 2**16, 2**16), "truncated: the header announces"),
    ("images", _header(0x803, 0, 28, 28), r"no images \(N = 0\)"),
    ("images", _header(0x803, 2, 28, 14) + bytes(2 * 28 * 14), "28 x 14 px; square images"),
    (
        "labels",
        _header(0x803, 2, 28, 28) + PIXELS,
        "not an IDX labels file: magic number 0x00000803",
    ),
    ("labels", _header(0x801, 3) + bytes(3), "3 labels for the 2 images of train-images"),
    ("labels", _header(0x801, 2) + bytes([1, 10]), "label 10 outside the expected range 0..9"),
    ("labels", _header(0x801, 2) + bytes([1]), "truncated: the header announces 2 = 2 bytes"),
    ("labels.gz", b"not gzip at all", "not a readable IDX labels file .*BadGzipFile"),
    ("labels.gz", None, "not a readable IDX labels file .*EOFError"),  # a truncated .gz
    ("labels", "missing", "IDX labels file missing"),
]


@pytest.mark.parametrize("which, raw, message", BAD_IDX)
def test_bad_idx_input_is_one_line_naming_the_file(tmp_path, which, raw, message):
    import gzip

    idx_pair(tmp_path, "train", np.zeros((2, 28, 28), np.uint8), np.array([1, 2]))
    kind, _, gz = which.partition(".")
    path = _images_file(tmp_path) if kind == "images" else _labels_file(tmp_path)
    if raw == "missing":
        path.unlink()
    elif gz:
        path.unlink()
        path = path.with_name(path.name + ".gz")
        good = gzip.compress(idx.idx_bytes(np.array([1, 2])))
        path.write_bytes(raw if raw is not None else good[: len(good) // 2])
    else:
        path.write_bytes(raw)
    cfg = cfg_for("mnist", tmp_path, validation=False)
    with pytest.raises(DataError, match=message) as e:
        datasets.load_training(cfg)
    text = str(e.value)
    assert text.startswith(f"{path}: ") and "\n" not in text


def test_mnist_missing_folder_and_files_are_named_at_planning(tmp_path, grey):
    cfg = cfg_for("mnist", tmp_path / "none")
    with pytest.raises(DataError) as e:
        datasets.check_source(cfg)
    assert str(e.value) == (
        f"config key dataset.path: {tmp_path / 'none'} does not exist; format mnist expects a "
        "folder with 4 file(s): train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
        "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]"
    )
    images, labels = grey
    idx_pair(tmp_path, "t10k", images, labels, gz=True)
    with pytest.raises(DataError) as e:  # the shared folder with the default idx_train
        datasets.check_source(cfg_for("mnist", tmp_path, validation=False))
    assert str(e.value) == (
        f"config key dataset.path: {tmp_path} lacks 2 of the 2 training file(s) format mnist "
        "expects: train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]"
    )
    cfg = cfg_for("mnist", tmp_path, idx_train="t10k")  # validation: true, no train pair
    datasets.check_source(cfg)
    with pytest.raises(
        DataError, match="train-images-idx3-ubyte: held-out file missing while dataset.validation"
    ):
        datasets.validation_batch(cfg)


def grey_npz(path, c=1, n=12, side=8):
    rng = np.random.default_rng(c)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, size=(n, side, side, c), dtype=np.uint8)
    np.savez(path, images=images, labels=np.arange(n) % 4)
    return images


def config_error(fmt, path, features):
    over = {"dataset": {"format": fmt, "path": str(path)}, "features": features}
    with pytest.raises(ConfigError) as e:
        load_config(overrides={**over, "featured_models": [1]})
    return str(e.value)


@pytest.mark.parametrize("single", [False, True])
def test_grey_and_colour_features_follow_the_data(tmp_path, single):
    """npz: the planes come from the file's header (C = 1 grey, C = 3 colour); a mismatch is
    one ConfigError naming the key and the file; the right feature loads."""
    g = tmp_path / "g" / "train.npz"
    c = tmp_path / "c" / "train.npz"
    grey_npz(g, 1)
    grey_npz(c, 3)
    gp, cp = (g, c) if single else (g.parent, c.parent)
    msg = config_error("npz", gp, ["R", "gray"])
    assert msg == (
        f"config key features: the data is grey ({g}: images (12, 8, 8, 1): 1 plane), it has "
        "the single feature 'gray'; colour feature(s) ['R'] need 3 planes"
    )
    msg = config_error("npz", cp, ["gray"])
    assert msg == (
        "config key features: 'gray' is only for grey data (1 plane); the data is colour "
        f"({c}: images (12, 8, 8, 3): 3 planes): use colour features (R, G, B, ...)"
    )
    over = {"dataset": {"format": "npz", "path": str(gp), "validation": False, "labels": 4}}
    cfg = load_config(overrides={**over, "features": ["gray"], "featured_models": [1]})
    assert datasets.load_training(cfg).images.shape == (12, 8, 8, 1)
    cfg = load_config(overrides={**over, "dataset": {**over["dataset"], "path": str(cp)}})
    assert cfg["features"][0] == "R"


@pytest.mark.parametrize("fmt", ["mnist", "digits"])
def test_grey_formats_refuse_colour_features(tmp_path, fmt):
    assert config_error(fmt, tmp_path, ["R", "G"]) == (
        f"config key features: the data is grey (format {fmt!r}: 1 plane), it has the single "
        "feature 'gray'; colour feature(s) ['R', 'G'] need 3 planes"
    )


@pytest.mark.parametrize("fmt", ["cifar10", "imagenet64", "synthetic", "photos"])
def test_colour_formats_refuse_gray(tmp_path, fmt):
    assert config_error(fmt, tmp_path, ["gray"]).startswith(
        f"config key features: 'gray' is only for grey data (1 plane); the data is colour "
        f"(format {fmt!r}: 3 planes)"
    )


def test_npz_planes_read_from_the_header_only(tmp_path, monkeypatch):
    """The .npy header, not the array: np.load is never called."""
    grey_npz(tmp_path / "train.npz", 1, n=3000, side=28)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load called"))

    def at(path):
        return {"dataset": {"format": "npz", "path": str(path), "batches": 1}}

    assert datasets.planes(at(tmp_path)) == (
        1,
        f"{tmp_path / 'train.npz'}: images (3000, 28, 28, 1)",
    )
    # not there, not a zip, no images member: no answer here (the loader names the file)
    (tmp_path / "bad.npz").write_bytes(b"PK not really")
    np.savez(tmp_path / "other.npz", pixels=np.zeros((2, 8, 8, 1), np.uint8))
    for name in ("x", "bad.npz", "other.npz"):
        assert datasets.planes(at(tmp_path / name)) is None


def test_npz_heldout_planes_must_match_training(tmp_path):
    grey_npz(tmp_path / "train.npz", 1)
    grey_npz(tmp_path / "test.npz", 3)
    cfg = load_config(
        overrides={
            "dataset": {"format": "npz", "path": str(tmp_path), "labels": 4},
            "features": ["gray"],
            "featured_models": [1],
        }
    )
    with pytest.raises(DataError) as e:
        datasets.check_source(cfg)
    assert str(e.value) == (
        f"{tmp_path / 'test.npz'}: images (12, 8, 8, 3) do not match the training images "
        "(12, 8, 8, 1) of train.npz (held-out images need the training images' size and planes)"
    )


def test_mnist_test_set_reads_as_published(mnist_test_dir):
    """The shared MNIST test set (../shared/data/mnist-test, its README's md5s of the unpacked
    files): 10,000 grey 28x28 images, ids t10k:<row>."""
    import hashlib

    cfg = load_config(ROOT / "config" / "mnist-test.yaml")
    cfg["dataset"]["path"] = str(mnist_test_dir)
    datasets.check_source(cfg)
    s = datasets.load_training(cfg)
    assert s.images.shape == (10000, 28, 28, 1) and s.num_labels == 10
    assert hashlib.md5(idx.idx_bytes(s.images[..., 0])).hexdigest() == (
        "2646ac647ad5339dbf082846283269ea"
    )
    assert hashlib.md5(idx.idx_bytes(s.labels)).hexdigest() == ("27ae3e4e09519cfbb04c329615203637")
    assert s.ids[947] == "t10k:947" and np.bincount(s.labels).min() > 800


@pytest.mark.parametrize("name", ["mnist.yaml", "mnist-test.yaml"])
def test_mnist_configs_validate(name):
    cfg = load_config(ROOT / "config" / name)
    assert cfg["dataset"]["format"] == "mnist" and cfg["features"] == ["gray"]
    assert cfg["modules"] == {"labels_per_module": 10, "submodules": 2, "groups": None}
