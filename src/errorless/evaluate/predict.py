"""``errorless predict``: label new images with a trained results folder.

Reads ``{results}/weights.parquet`` (one proto-model), the settings (``--config``; without it
the transform stored with the weights, the paper's feature order for Model-p, and ``--size``
for folder images), and images in any supported layout:

* ``folder``: PNG/JPEG/BMP files (recursively, sorted by path), converted to RGB (or L for
  grey models) and resized with Pillow (box filter, the filter of the downsampled-ImageNet
  files) to the training size; the image id is the file's path relative to the folder;
* ``npz``: ``images`` uint8 (N, H, W, C), optional ``labels`` (0-based) and ``ids``;
* ``imagenet64``, ``imagenet32``, ``imagenet64-npz``, ``imagenet32-npz``, ``cifar10``,
  ``cifar100``: one batch file, read by :mod:`errorless.data.datasets` (labels shifted to 0-based);
* ``mnist``: an IDX images file ``<prefix>-images-idx3-ubyte[.gz]``, read with its labels file
  ``<prefix>-labels-idx1-ubyte[.gz]`` beside it (grey).

Images that are not folder images must already have the training size and channels; anything
else is a :class:`DataError`. Output: CSV with ``image_id, label, label_index (if known),
proto, p, protocol, predicted, predicted_index, votes, super_majority, module, submodule``
(stdout without ``--out``). ``label`` and ``predicted`` are in the data set's own numbering
(:func:`label_base`: 1..1000 for the ImageNet files and the data sets written in their layout,
0-based for cifar and npz); ``label_index`` and ``predicted_index`` are always 0-based.
"""

from __future__ import annotations

import argparse
import copy
import logging
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from errorless.config import FEATURES, GREY_FEATURE
from errorless.data.datasets import GENERATED, IMAGENET
from errorless.errors import ConfigError, DataError
from errorless.names import image_id, shard_name, split_proto

log = logging.getLogger(__name__)

IDX_IMAGES = re.compile(r"-images-idx3-ubyte(\.gz)?$")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
FILE_FORMATS = [
    "npz",
    "imagenet64",
    "imagenet32",
    "imagenet64-npz",
    "imagenet32-npz",
    "cifar10",
    "cifar100",
    "mnist",
]
SIZES = {
    "imagenet64": 64,
    "imagenet64-npz": 64,
    "imagenet32": 32,
    "imagenet32-npz": 32,
    "cifar10": 32,
    "cifar100": 32,
    "digits": 8,
    "mnist": 28,  # MNIST, Fashion-MNIST, KMNIST
}


def training_size(cfg: dict[str, Any]) -> int | None:
    """Side in pixels of the training images, or None when the config cannot tell (npz)."""
    fmt = cfg.get("dataset", {}).get("format")
    if fmt in GENERATED:
        return int(cfg.get(fmt, {}).get("image_size", 64))
    return SIZES.get(fmt)


def label_base(fmt: str, cfg: dict[str, Any] | None) -> int:
    """The first label number in the data set's own files: 1 for the ImageNet files (1..1000)
    and the generated data sets written in their layout, 0 for cifar and npz. Folder images
    carry no labels: they take the numbering of the data set the model was trained on."""
    if fmt in IMAGENET:
        return 1
    if fmt != "folder":
        return 0
    trained = ((cfg or {}).get("dataset") or {}).get("format")
    return 1 if trained in IMAGENET or trained in GENERATED else 0


def load_folder(folder: Path, size: int, grey: bool) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, size, size, C), ids) from the image files under ``folder``."""
    from PIL import Image, UnidentifiedImageError

    files = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not files:
        raise DataError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images = np.empty((len(files), size, size, 1 if grey else 3), dtype=np.uint8)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as im:
                im = im.convert("L" if grey else "RGB").resize((size, size), Image.Resampling.BOX)
                a = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{path}: not a readable image: {e}") from None
        images[i] = a[..., None] if grey else a
    return images, np.array([str(p.relative_to(folder)) for p in files])


def load_images(path: Path, fmt: str, cfg: dict[str, Any], size: int | None, grey: bool):
    """(images, labels or None, ids) for any supported layout."""
    if fmt == "folder":
        if not path.is_dir():
            raise DataError(f"{path}: --format folder needs a folder of images")
        if size is None:
            raise ConfigError(
                "the training image size is unknown (no --config, or an npz data set): pass --size"
            )
        images, ids = load_folder(path, size, grey)
        return images, None, ids
    if not path.exists():
        raise DataError(f"{path}: images file missing")
    if fmt == "npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not a readable .npz file: {e}") from None
        if "images" not in d:
            raise DataError(f"{path}: missing key 'images' (has {sorted(d)})")
        images = d["images"]
        if images.dtype != np.uint8 or images.ndim != 4:
            raise DataError(
                f"{path}: 'images' must be uint8 (N, H, W, C), got {images.dtype} {images.shape}"
            )
        labels = d["labels"].astype(np.int64) if "labels" in d else None
        ids = (
            d["ids"].astype(str)
            if "ids" in d
            else np.array([image_id(path.stem, i) for i in range(len(images))])
        )
        return images, labels, ids
    from errorless.data import datasets

    sub = copy.deepcopy(cfg)
    sub.setdefault("dataset", {}).update(format=fmt, path=str(path.parent), labels=None)
    name = path.stem if fmt.endswith("-npz") else path.name
    if fmt == "mnist":
        if not IDX_IMAGES.search(path.name):
            raise DataError(f"{path}: --format mnist reads <prefix>-images-idx3-ubyte[.gz] files")
        name = IDX_IMAGES.sub("", path.name)
    data = datasets.load_batch(sub, name)
    return data.images, data.labels, data.ids


def check_images(images: np.ndarray, size: int | None, grey: bool, source: str) -> None:
    n, h, w, c = images.shape
    want_c = 1 if grey else 3
    if c != want_c:
        raise DataError(
            f"{source}: images have {c} channel(s); the model was trained on "
            f"{'grey' if grey else 'colour'} images ({want_c} channel(s))"
        )
    if size is not None and (h, w) != (size, size):
        raise DataError(
            f"{source}: images are {h}x{w} px; the model was trained on {size}x{size} px "
            "(resize them, or give a folder of image files, which is resized for you)"
        )


def predict(
    results: str | Path,
    images_path: str | Path,
    *,
    cfg: dict[str, Any] | None = None,
    fmt: str | None = None,
    proto: str | None = None,
    p: int | None = None,
    protocol: str = "top1",
    size: int | None = None,
    weights: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 4096,
) -> pd.DataFrame:
    """Predicted labels with their vote counts, one row per image."""
    from errorless.device import resolve_device
    from errorless.evaluate.inference import model_votes
    from errorless.gather.load import load_proto, protos_in

    wpath = Path(weights) if weights else Path(results) / "weights.parquet"
    if not wpath.exists():
        raise DataError(f"{wpath}: weights table missing (train the model and run the gather step)")
    known = protos_in(wpath)
    if proto is None:
        proto = next((x for x in known if split_proto(x)[0] == "T"), known[0])
    if proto not in known:
        raise ConfigError(f"--proto {proto!r} is not in {wpath} (has {known})")
    pw0 = load_proto(wpath, proto)
    cfg = cfg if cfg is not None else pw0.settings
    if not cfg or "transform" not in cfg:
        raise ConfigError(f"{wpath} carries no transform settings: pass --config")
    # without the config's feature order, Model-p takes the paper's order (config.FEATURES)
    order = cfg.get("features") or [*FEATURES, GREY_FEATURE]
    features = [f for f in order if f in pw0.features]
    pw = load_proto(wpath, proto, features)
    p = p or len(features)
    if not 1 <= p <= len(features):
        raise ConfigError(f"--p {p}: must be between 1 and the {len(features)} features of {proto}")
    grey = features == ["gray"]
    images_path = Path(images_path)
    if not images_path.exists():
        raise DataError(f"{images_path}: --images does not exist")
    fmt = fmt or (
        "folder"
        if images_path.is_dir()
        else "npz"
        if images_path.suffix == ".npz"
        else "mnist"
        if IDX_IMAGES.search(images_path.name)
        else None
    )
    if fmt is None:
        raise ConfigError(
            f"--format: cannot tell the layout of {images_path}; give one of folder, {', '.join(FILE_FORMATS)}"
        )
    size = size or training_size(cfg)
    images, labels, ids = load_images(images_path, fmt, cfg, size, grey)
    check_images(images, size, grey, str(images_path))
    votes = model_votes(
        images,
        pw,
        [p],
        [protocol],
        transform=cfg["transform"],
        device=resolve_device(device).type,
        batch_size=batch_size,
    )[(p, protocol)]
    groups = np.array([shard_name(m, s) for m, s in pw.groups])
    base = label_base(fmt, cfg)
    df = pd.DataFrame({"image_id": ids})
    if labels is not None:  # loaded 0-based (datasets shifts ImageNet's 1..1000)
        df["label"] = labels + base
        df["label_index"] = labels
    df = df.assign(
        proto=proto,
        p=p,
        protocol=protocol,
        predicted=votes.label + base,
        predicted_index=votes.label,
        votes=votes.votes,
        super_majority=votes.super_majority,
    )
    df[["module", "submodule"]] = (
        pd.Series(groups[votes.group]).str.split("_", expand=True).to_numpy()
    )
    return df


def predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--results", default="results", help="trained results folder (holds weights.parquet)"
    )
    p.add_argument("--weights", help="weights.parquet (default: <results>/weights.parquet)")
    p.add_argument(
        "--config",
        help="config YAML (default: {results}/config.yaml, else the settings stored with the weights)",
    )
    p.add_argument("--images", required=True, help="a folder of PNG/JPEG files or a data file")
    p.add_argument(
        "--format",
        choices=["folder", *FILE_FORMATS],
        help="layout of --images (default: folder for a folder, npz for .npz, mnist for "
        "*-images-idx3-ubyte[.gz])",
    )
    p.add_argument("--proto", help="proto-model, e.g. T_h1_m1 (default: the first T model)")
    p.add_argument(
        "--p", type=int, help="featured model Model-p: the first p features (default: all)"
    )
    p.add_argument("--protocol", choices=["top1", "top3"], default="top1", help="vote protocol")
    p.add_argument("--size", type=int, help="training image side in px (default: from the config)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--out", help="CSV to write (default: print to stdout)")


def predict_main(args: argparse.Namespace) -> int:
    from errorless.config import load_config
    from errorless.io import write_text

    config = args.config
    if config is None and (Path(args.results) / "config.yaml").exists():
        config = Path(args.results) / "config.yaml"  # written by the workflow's write_config rule
    cfg = load_config(config) if config else None
    df = predict(
        args.results,
        args.images,
        cfg=cfg,
        fmt=args.format,
        proto=args.proto,
        p=args.p,
        protocol=args.protocol,
        size=args.size,
        weights=args.weights,
        device=args.device,
    )
    text = df.to_csv(index=False)
    if args.out:
        write_text(args.out, text)
        log.info("%d predictions -> %s", len(df), args.out)
    else:
        sys.stdout.write(text)
    if "label" in df:
        log.info(
            "accuracy %.3f %% on %d labelled images",
            100 * (df["label_index"] == df["predicted_index"]).mean(),
            len(df),
        )
    return 0
