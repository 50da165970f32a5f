"""The photos data format: crops of the bundled photographs, labels = (photo, part)."""

import csv

import numpy as np
import pytest
from PIL import Image

from errorless.config import load_config, load_schema
from errorless.data import datasets, photos
from errorless.errors import ConfigError


def small_cfg(tmp_path, **photo_settings):
    settings = dict(
        labels=10,
        images_per_label=6,
        batches=2,
        validation_per_label=2,
        plant_same_shard=1,
        plant_cross_module=1,
        plant_near=1,
        seed=3,
    )
    settings.update(photo_settings)
    return load_config(
        overrides={
            "dataset": {"format": "photos", "path": str(tmp_path)},
            "photos": settings,
            "modules": {"labels_per_module": 5, "submodules": 2},
        }
    )


def test_same_seed_same_bytes():
    a, ya, ba = photos.make_crops(5, 12, size=32, seed=4)
    b, yb, bb = photos.make_crops(5, 12, size=32, seed=4)
    assert a.dtype == np.uint8 and a.shape == (60, 32, 32, 3)
    assert a.tobytes() == b.tobytes() and np.array_equal(ba, bb)
    np.testing.assert_array_equal(ya, np.repeat(np.arange(5), 12))  # label-major
    c, _, _ = photos.make_crops(5, 12, size=32, seed=5)
    assert a.tobytes() != c.tobytes()


def test_enough_labels_and_schema_bound_in_sync():
    n = photos.available_labels()
    assert n >= 40
    assert load_schema()["properties"]["photos"]["properties"]["labels"]["maximum"] == n
    names = photos.label_names(n)
    assert len(set(names)) == n
    assert len({p.photo for p in photos.parts()[:25]}) >= 6  # 25 labels span several photos


def test_labels_never_share_source_pixels():
    # oracle: every crop box lies inside its label's part, and no two boxes of different
    # labels on the same photo intersect (a plain loop over all pairs)
    L = photos.available_labels()
    _, y, boxes = photos.make_crops(L, 6, size=16, seed=1)
    parts = photos.parts()
    for label, (y0, x0, y1, x1) in zip(y, boxes, strict=True):
        py0, px0, py1, px1 = parts[label].box
        assert py0 <= y0 < y1 <= py1 and px0 <= x0 < x1 <= px1
        assert y1 - y0 == x1 - x0 and 48 <= y1 - y0 <= 160  # square, within the crop range
    for i in range(len(y)):
        for j in range(i + 1, len(y)):
            if y[i] == y[j] or parts[y[i]].photo != parts[y[j]].photo:
                continue
            a, b = boxes[i], boxes[j]
            overlap = a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
            assert not overlap, (parts[y[i]].name, parts[y[j]].name, a, b)
    for p in parts:
        y0, x0, y1, x1 = p.box
        assert min(y1 - y0, x1 - x0) >= photos.MIN_PART


def test_a_crop_is_its_box_resized_and_maybe_mirrored():
    images, y, boxes = photos.make_crops(4, 5, size=32, seed=2)
    src = photos.source_photos()
    mirrored = 0
    for img, label, (y0, x0, y1, x1) in zip(images, y, boxes, strict=True):
        name, photo = src[photos.parts()[label].photo]
        assert photo.dtype == np.uint8 and photo.shape[2] == 3
        want = np.asarray(
            Image.fromarray(np.asarray(photo)[y0:y1, x0:x1]).resize(
                (32, 32), Image.Resampling.BILINEAR
            )
        )
        if not np.array_equal(img, want):
            np.testing.assert_array_equal(img, want[:, ::-1])
            mirrored += 1
        assert img.std() > 0  # flat crops are redrawn
    assert 0 < mirrored < len(images)


def test_loader_round_trip(tmp_path):
    cfg = small_cfg(tmp_path)
    batches, planted = photos.generate(cfg)
    photos.write(cfg, tmp_path)
    assert datasets.data_format(cfg) == "imagenet64" and datasets.num_labels(cfg) == 10
    assert datasets.train_batches(cfg) == ["train_data_batch_1", "train_data_batch_2"]
    assert datasets.validation_batch(cfg) == "val_data"
    read = datasets.load_training(cfg)
    want_images = np.concatenate(
        [batches[b][0] for b in ("train_data_batch_1", "train_data_batch_2")]
    )
    want_labels = np.concatenate(
        [batches[b][1] for b in ("train_data_batch_1", "train_data_batch_2")]
    )
    np.testing.assert_array_equal(read.images, want_images)
    np.testing.assert_array_equal(read.labels, want_labels)
    assert read.ids[0] == "train_data_batch_1:0" and read.ids[60] == "train_data_batch_2:0"
    assert np.bincount(read.labels).tolist() == [12] * 10
    val = datasets.load_batch(cfg, "val_data")
    np.testing.assert_array_equal(val.images, batches["val_data"][0])
    rows = list(csv.DictReader((tmp_path / "labels.csv").open()))
    assert [r["name"] for r in rows] == photos.label_names(10)


def test_planted_csv_matches_the_pickles(tmp_path):
    cfg = small_cfg(tmp_path)
    photos.write(cfg, tmp_path)
    read = datasets.load_training(cfg)
    image = dict(zip(read.ids, read.images, strict=True))
    label = dict(zip(read.ids, read.labels, strict=True))
    rows = list(csv.DictReader((tmp_path / "planted.csv").open()))
    assert sorted(r["kind"] for r in rows) == [
        "cross_module",
        "jpeg",
        "same_shard",
    ]  # the first near kind
    for r in rows:
        a, b = r["id_a"], r["id_b"]
        assert (label[a], label[b]) == (int(r["label_a"]), int(r["label_b"])) and label[a] != label[
            b
        ]
        assert (
            r["module_a"] == f"m{label[a] // 5 + 1:02d}"
            and r["module_b"] == f"m{label[b] // 5 + 1:02d}"
        )
        diff = np.abs(image[a].astype(int) - image[b].astype(int))
        if r["kind"] == "jpeg":
            assert 0 < diff.mean() < 20
        else:
            assert not diff.any()


def test_asking_for_too_many_labels_names_the_key(tmp_path):
    n = photos.available_labels()
    with pytest.raises(ConfigError, match="config key photos.labels"):
        small_cfg(tmp_path, labels=n + 1)
    with pytest.raises(ConfigError, match=f"{n + 1} labels asked, the bundled photos give {n}"):
        photos.make_crops(n + 1, 1)
    with pytest.raises(ConfigError, match="config key photos.crop_min"):
        small_cfg(tmp_path, crop_min=100, crop_max=60)


def test_cli_writes_the_data_set(tmp_path):
    import json

    from errorless.cli import main

    settings = {
        "dataset": {"format": "photos"},
        "modules": {"labels_per_module": 5},
        "photos": {
            "labels": 10,
            "images_per_label": 4,
            "batches": 1,
            "validation_per_label": 0,
            "plant_same_shard": 0,
            "plant_cross_module": 1,
            "plant_near": 0,
            "image_size": 32,
        },
    }
    assert main(["photos", "--settings", json.dumps(settings), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "labels.csv",
        "planted.csv",
        "train_data_batch_1",
    ]
    cfg = load_config(
        overrides={**settings, "dataset": {"format": "photos", "path": str(tmp_path)}}
    )
    assert datasets.data_format(cfg) == "imagenet32" and datasets.validation_batch(cfg) is None
    assert datasets.load_training(cfg).images.shape == (40, 32, 32, 3)


def test_photograph_labels_leave_out_the_drawings():
    labels = photos.photograph_labels()
    names = {photos.parts()[i].name.split("/")[0] for i in labels}
    assert len(labels) >= 25 and not names & set(photos.GRAPHICS)
    assert labels == sorted(labels) and len(names) >= 6
    drawings = [i for i in range(photos.available_labels()) if i not in labels]
    assert {photos.parts()[i].name.split("/")[0] for i in drawings} == set(photos.GRAPHICS)
