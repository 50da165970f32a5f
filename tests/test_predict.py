"""predict: a hand-made trained model labels folder and npz images correctly; clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_evaluate import handmade_images, handmade_weights_table

from errorless.cli import main
from errorless.errors import ConfigError, DataError
from errorless.evaluate.predict import predict
from errorless.io import write_parquet

FEATURES = ["R", "G", "B"]
L, C = 8, 4  # two modules of four labels, two submodules each
SETTINGS = {
    "features": FEATURES,
    "featured_models": [1, 3],
    "transform": {"pool": 2, "trim": 1, "decimals": 4},
    "dataset": {"format": "synthetic"},
    "synthetic": {"image_size": 64},
}


@pytest.fixture
def results(tmp_path):
    out = tmp_path / "results"
    write_parquet(out / "weights.parquet", handmade_weights_table(FEATURES, L, C, SETTINGS))
    return out


def test_predict_npz_gives_the_known_labels(results, tmp_path):
    labels = np.array([0, 3, 4, 7, 5, 1])
    np.savez(tmp_path / "x.npz", images=handmade_images(labels), labels=labels)
    df = predict(results, tmp_path / "x.npz")
    # npz files are 0-based: both numberings agree
    assert list(df["predicted"]) == list(labels) == list(df["predicted_index"])
    assert list(df["label"]) == list(labels) == list(df["label_index"])
    assert (df["votes"] == 3).all() and df["super_majority"].all()
    assert list(df["module"]) == ["m01", "m01", "m02", "m02", "m02", "m01"]
    assert list(df["image_id"]) == [f"x:{i}" for i in range(6)]
    top3 = predict(results, tmp_path / "x.npz", p=1, protocol="top3")
    assert list(top3["predicted"]) == list(labels) and (top3["votes"] == 1).all()


def test_predict_folder_of_pngs_resizes_to_training_size(results, tmp_path):
    labels = np.array([2, 6, 5])
    folder = tmp_path / "pngs"
    folder.mkdir()
    big = np.repeat(
        np.repeat(handmade_images(labels), 2, axis=1), 2, axis=2
    )  # 128 px: resized to 64
    for i, im in enumerate(big):
        Image.fromarray(im).save(folder / f"img{i}_label{labels[i]}.png")
    out = tmp_path / "preds.csv"
    assert (
        main(["predict", "--results", str(results), "--images", str(folder), "--out", str(out)])
        == 0
    )
    df = pd.read_csv(out)
    assert list(df["image_id"]) == [f"img{i}_label{x}.png" for i, x in enumerate(labels)]
    # trained on synthetic data (imagenet64 layout): labels numbered 1..L like the pickles
    assert list(df["predicted_index"]) == list(labels)
    assert list(df["predicted"]) == list(labels + 1)
    assert {"votes", "super_majority", "proto", "p", "protocol"} <= set(df.columns)


def test_predict_imagenet_pickle_keeps_its_1_based_labels(results, tmp_path):
    """An imagenet64 batch holds labels 1..1000: `label` and `predicted` keep that numbering,
    `label_index` and `predicted_index` are 0-based."""
    import pickle

    labels = np.array([0, 3, 4, 7, 5, 1])
    images = handmade_images(labels)  # (N, 64, 64, 3)
    planes = images.transpose(0, 3, 1, 2).reshape(len(labels), -1)  # the pickles' R, G, B planes
    with open(tmp_path / "val_data", "wb") as fh:
        pickle.dump({"data": planes, "labels": (labels + 1).tolist()}, fh)
    out = tmp_path / "p.csv"
    args = ["predict", "--results", str(results), "--images", str(tmp_path / "val_data")]
    assert main([*args, "--format", "imagenet64", "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert list(df["label"]) == list(labels + 1) and list(df["label_index"]) == list(labels)
    assert list(df["predicted"]) == list(labels + 1)
    assert list(df["predicted_index"]) == list(labels)


def test_predict_missing_images_path_says_so(results, tmp_path, capsys):
    args = ["predict", "--results", str(results), "--images", str(tmp_path / "no/such/path")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"errorless predict: error: {tmp_path / 'no/such/path'}: --images does not exist"
    ]


def test_predict_errors_are_clear(results, tmp_path, capsys):
    np.savez(tmp_path / "small.npz", images=np.zeros((2, 32, 32, 3), np.uint8))
    np.savez(tmp_path / "grey.npz", images=np.zeros((2, 64, 64, 1), np.uint8))
    with pytest.raises(DataError, match="32x32 px; the model was trained on 64x64"):
        predict(results, tmp_path / "small.npz")
    with pytest.raises(DataError, match="1 channel"):
        predict(results, tmp_path / "grey.npz")
    with pytest.raises(ConfigError, match="'S_h9_m1' is not in"):
        predict(results, tmp_path / "small.npz", proto="S_h9_m1")
    with pytest.raises(ConfigError, match="--p 5"):
        predict(results, tmp_path / "small.npz", p=5)
    assert (
        main(
            [
                "predict",
                "--results",
                str(tmp_path / "nowhere"),
                "--images",
                str(tmp_path / "small.npz"),
            ]
        )
        == 2
    )
    assert "weights.parquet" in capsys.readouterr().err


def test_predict_without_config_uses_stored_transform_and_needs_size_for_folders(tmp_path):
    out = tmp_path / "results"
    settings = {"transform": {"pool": 2, "trim": 1, "decimals": 4}}  # what a training job stores
    write_parquet(out / "weights.parquet", handmade_weights_table(["B", "R"], L, C, settings))
    labels = np.array([1, 6])
    np.savez(tmp_path / "x.npz", images=handmade_images(labels), labels=labels)
    df = predict(out, tmp_path / "x.npz", p=1)
    assert list(df["predicted"]) == [1, 6] and list(df["label"]) == [1, 6]
    (tmp_path / "pngs").mkdir()
    Image.fromarray(handmade_images(labels)[0]).save(tmp_path / "pngs" / "a.png")
    with pytest.raises(ConfigError, match="--size"):
        predict(out, tmp_path / "pngs")
    assert list(predict(out, tmp_path / "pngs", size=64)["predicted"]) == [1]


def test_predict_grey_idx_files(tmp_path):
    """A grey model ('gray') predicts an MNIST-layout IDX pair (format found from the name)."""
    from errorless.data.idx import write_idx

    out = tmp_path / "results"
    settings = {"features": ["gray"], "transform": {"pool": 2, "trim": 1, "decimals": 4}}
    write_parquet(out / "weights.parquet", handmade_weights_table(["gray"], L, C, settings))
    labels = np.array([0, 3, 4, 7, 5, 1])
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", handmade_images(labels)[..., 0])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    df = predict(out, tmp_path / "t10k-images-idx3-ubyte.gz", size=64)
    assert list(df["image_id"]) == [f"t10k:{i}" for i in range(6)]
    assert list(df["predicted"]) == list(labels) == list(df["label"])
    with pytest.raises(DataError, match="3 channel"):  # colour images for a grey model
        np.savez(tmp_path / "rgb.npz", images=handmade_images(labels))
        predict(out, tmp_path / "rgb.npz")
