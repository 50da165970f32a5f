"""Loaders for the real on-disk layouts of docs/method.md#data-and-image-ids. Every image keeps a
stable id.

Formats:
- ``imagenet64`` / ``imagenet32``: pickles ``train_data_batch_1..10`` and ``val_data``; dict with
  ``data`` uint8 (N, 3*S*S) (all R, then G, then B, each row-major) and ``labels`` 1..1000.
- ``imagenet64-npz`` / ``imagenet32-npz``: the same as ``<name>.npz``.
- ``cifar10`` (``data_batch_1..5``, ``test_batch``) / ``cifar100`` (``train``, ``test``): python
  pickles, keys may be bytes, labels under ``labels`` / ``fine_labels`` (0-based).
- ``npz``: ``train.npz`` (+ optional ``test.npz``) or a single ``.npz`` file with ``images``
  (N, H, W, C) uint8 (C = 3 colour, C = 1 grey), ``labels`` (N,), optional ``ids``.
- ``mnist``: the IDX files of MNIST, Fashion-MNIST and KMNIST: ``train-images-idx3-ubyte`` +
  ``train-labels-idx1-ubyte`` and ``t10k-images-idx3-ubyte`` + ``t10k-labels-idx1-ubyte``, each
  plain or ``.gz`` (the plain file wins when both exist). ``dataset.idx_train`` names the pair
  used as the training set; the other pair is the held-out set. Grey (N, S, S, 1).
- ``digits``: scikit-learn's bundled 8×8 handwritten digits (grey, values 0..16 scaled to 0..255).
- ``synthetic``: written by :mod:`errorless.data.synthetic` in the imagenet64 (or 32) layout.
- ``photos``: crops of bundled real photographs, written by :mod:`errorless.data.photos` in the same layout.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from errorless.data.idx import IDX_KINDS, IDX_PAIRS, idx_path, read_idx_pair
from errorless.data.imageset import ImageSet, concat
from errorless.data.readers import (
    array_at,
    checked_set,
    planes_to_hwc,
    read_digits,
    read_labels,
    read_npz,
    read_pickle,
)
from errorless.errors import DataError

IMAGENET = {"imagenet64": 64, "imagenet32": 32, "imagenet64-npz": 64, "imagenet32-npz": 32}
DEFAULT_LABELS = {"cifar10": 10, "cifar100": 100, "digits": 10, "mnist": 10}
# formats the pipeline writes itself (imagenet layout); each has the settings section of its name
GENERATED = ("synthetic", "photos")
# formats whose images always have one plane; npz is grey or colour as its images say (C = 1
# or 3: planes()), every other format is colour
GREY_FORMATS = frozenset({"digits", "mnist"})


# ---------------------------------------------------------------- which batches exist


def generated(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The settings section of a generated format (synthetic, photos), else None."""
    fmt = cfg["dataset"]["format"]
    return cfg[fmt] if fmt in GENERATED else None


def data_format(cfg: dict[str, Any]) -> str:
    gen = generated(cfg)
    if gen is not None:
        return "imagenet64" if gen["image_size"] == 64 else "imagenet32"
    return cfg["dataset"]["format"]


def num_labels(cfg: dict[str, Any]) -> int | None:
    """L from the config (None for npz without dataset.labels: read from the data)."""
    if cfg["dataset"]["labels"]:
        return int(cfg["dataset"]["labels"])
    fmt, gen = cfg["dataset"]["format"], generated(cfg)
    if gen is not None:
        return int(gen["labels"])
    if fmt in IMAGENET:
        return 1000
    return DEFAULT_LABELS.get(fmt)


def train_batches(cfg: dict[str, Any]) -> list[str]:
    fmt, gen = cfg["dataset"]["format"], generated(cfg)
    n = cfg["dataset"]["batches"] if gen is None else gen["batches"]
    if gen is not None or fmt in IMAGENET:
        return [f"train_data_batch_{i}" for i in range(1, n + 1)]
    if fmt == "cifar10":
        return [f"data_batch_{i}" for i in range(1, min(n, 5) + 1)]
    if fmt == "cifar100":
        return ["train"]
    if fmt == "npz":
        p = Path(cfg["dataset"]["path"])
        return [p.stem] if p.suffix == ".npz" else ["train"]
    if fmt == "digits":
        return ["digits"]
    if fmt == "mnist":
        return [cfg["dataset"]["idx_train"]]
    raise DataError(f"config key dataset.format: unknown format {fmt!r}")


def heldout_name(cfg: dict[str, Any]) -> str | None:
    """The held-out batch the format would have with ``dataset.validation: true`` (no file
    is looked at), or None when it has none (digits, a single .npz file)."""
    fmt, gen = cfg["dataset"]["format"], generated(cfg)
    if gen is not None:
        return "val_data" if gen["validation_per_label"] > 0 else None
    if fmt == "digits" or (fmt == "npz" and Path(cfg["dataset"]["path"]).suffix == ".npz"):
        return None
    if fmt == "mnist":  # the pair that is not the training set
        return next(p for p in IDX_PAIRS if p != cfg["dataset"]["idx_train"])
    return {"cifar10": "test_batch", "cifar100": "test", "npz": "test"}.get(fmt, "val_data")


def validation_batch(cfg: dict[str, Any]) -> str | None:
    """Name of the held-out batch, or None when the format has none (digits, a single .npz
    file) or dataset.validation is off. With ``validation: true`` a missing or empty held-out
    file is an error: the evaluation is never dropped silently."""
    if not cfg["dataset"]["validation"]:
        return None
    name = heldout_name(cfg)
    if name is None or generated(cfg) is not None:
        return name
    for path in source_files(cfg, name):
        if not path.is_file() or path.stat().st_size == 0:
            what = "missing" if not path.exists() else "empty" if path.is_file() else "not a file"
            raise DataError(
                f"{path}: held-out file {what} while dataset.validation is true "
                f"(provide it, or set dataset.validation: false to evaluate the training "
                f"batches only)"
            )
    return name


def batch_path(cfg: dict[str, Any], name: str) -> Path:
    fmt = cfg["dataset"]["format"]
    root = Path(cfg["dataset"]["path"])
    if fmt in ("imagenet64-npz", "imagenet32-npz"):
        return root / f"{name}.npz"
    if fmt == "npz":
        return root if root.suffix == ".npz" else root / f"{name}.npz"
    if fmt == "digits":
        return root
    if fmt == "mnist":
        return idx_path(root, name, "images")
    return root / name


def source_files(cfg: dict[str, Any], name: str) -> list[Path]:
    """The files one source batch is read from: one per batch, the images and the labels
    file of an IDX pair (mnist), none for digits (bundled with scikit-learn)."""
    fmt = cfg["dataset"]["format"]
    if fmt == "digits":
        return []
    if fmt == "mnist":
        root = Path(cfg["dataset"]["path"])
        return [idx_path(root, name, kind) for kind in IDX_KINDS]
    return [batch_path(cfg, name)]


def _shown(cfg: dict[str, Any], path: Path) -> str:
    """A file's name as the messages list it: an IDX file may be plain or gzipped."""
    if cfg["dataset"]["format"] == "mnist":
        return f"{path.name.removesuffix('.gz')}[.gz]"
    return path.name


def check_source(cfg: dict[str, Any]) -> None:
    """Before planning: the source data of a format that is read (not generated) exists.
    One DataError naming the folder (or file) and the files expected in it."""
    fmt = cfg["dataset"]["format"]
    if fmt in GENERATED or fmt == "digits":
        return
    files = batch_files(cfg)
    heldout = heldout_name(cfg) if cfg["dataset"]["validation"] else None
    if heldout is not None:
        files += source_files(cfg, heldout)
    root = Path(cfg["dataset"]["path"])
    names = [_shown(cfg, p) for p in files]
    listed = ", ".join(names) if len(names) <= 4 else f"{names[0]} ... {names[-2]}, {names[-1]}"
    if root.suffix == ".npz" and fmt == "npz":
        if not root.is_file():
            raise DataError(
                f"config key dataset.path: {root} does not exist (format npz: one .npz file)"
            )
        return
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise DataError(
            f"config key dataset.path: {root} {what}; format {fmt} expects a folder with "
            f"{len(names)} file(s): {listed}"
        )
    # the held-out file has its own message (validation_batch)
    train = batch_files(cfg)
    missing = [_shown(cfg, p) for p in train if not p.is_file()]
    if missing:
        raise DataError(
            f"config key dataset.path: {root} lacks {len(missing)} of the {len(train)} training file(s) "
            f"format {fmt} expects: {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}"
        )
    if fmt == "npz" and heldout is not None:
        _check_heldout_shape(train[0], batch_path(cfg, heldout))


def _check_heldout_shape(train: Path, heldout: Path) -> None:
    """The held-out npz images have the training images' size and planes (read from the
    headers; a file that cannot be read is left to its loader)."""
    a, b = npz_images_shape(train), npz_images_shape(heldout)
    if a is not None and b is not None and a[1:] != b[1:]:
        raise DataError(
            f"{heldout}: images {b} do not match the training images {a} of {train.name} "
            f"(held-out images need the training images' size and planes)"
        )


def batch_files(cfg: dict[str, Any]) -> list[Path]:
    """Files the training data is read from (Snakemake inputs); empty for digits."""
    return [p for b in train_batches(cfg) for p in source_files(cfg, b)]


# ---------------------------------------------------------------- grey or colour


def planes(cfg: dict[str, Any]) -> tuple[int, str] | None:
    """(planes per image, where that comes from) of the configured data: 1 (grey) or 3
    (colour). Known from the format, except for npz: there it is the last dimension of the
    training file's ``images``, read from the member's .npy header (the array is not loaded).
    None when an npz file is missing or unreadable: its loader (or check_source) reports it."""
    fmt = cfg["dataset"]["format"]
    if fmt in GREY_FORMATS:
        return 1, f"format {fmt!r}"
    if fmt != "npz":
        return 3, f"format {fmt!r}"
    path = batch_path(cfg, train_batches(cfg)[0])
    shape = npz_images_shape(path)
    if shape is None or len(shape) != 4 or shape[-1] not in (1, 3):
        return None
    return shape[-1], f"{path}: images {shape}"


def npz_images_shape(path: Path) -> tuple[int, ...] | None:
    """Shape of the ``images`` array of an .npz file from its .npy header alone, or None
    when the file or the member is missing or unreadable."""
    from numpy.lib import format as npy

    readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    try:
        with zipfile.ZipFile(path) as z, z.open("images.npy") as fh:
            reader = readers.get(npy.read_magic(fh))
            return None if reader is None else tuple(int(n) for n in reader(fh)[0])
    except Exception:  # noqa: BLE001 - missing, not a zip, no 'images', corrupt header: None
        return None


# ---------------------------------------------------------------- reading


def load_training(cfg: dict[str, Any]) -> ImageSet:
    return concat([load_batch(cfg, b) for b in train_batches(cfg)])


def load_batch(cfg: dict[str, Any], name: str, contiguous: bool = True) -> ImageSet:
    """Read one source batch of the configured data set, with labels checked against L.
    ``contiguous=False`` may leave the images a (N, H, W, C) view of the file's planes, which
    saves a copy of the batch (the streaming modularize copies rows out of it)."""
    fmt = cfg["dataset"]["format"]
    path = batch_path(cfg, name)
    if fmt == "digits":
        return read_digits(num_labels(cfg))
    if fmt == "mnist":
        images_file, labels_file = source_files(cfg, name)
        images, labels = read_idx_pair(images_file, labels_file)
        return checked_set(labels_file, name, images[..., None], labels, num_labels(cfg))
    dfmt = data_format(cfg)
    if dfmt in IMAGENET:
        side = IMAGENET[dfmt]
        d = read_npz(path) if dfmt.endswith("-npz") else read_pickle(path)
        images = planes_to_hwc(path, array_at(d, path, "data"), side)
        labels = read_labels(path, array_at(d, path, "labels"), len(images), low=1) - 1
        return checked_set(
            path, name, images, labels, num_labels(cfg), low=1, contiguous=contiguous
        )
    if fmt in ("cifar10", "cifar100"):
        d = read_pickle(path)
        key = "labels" if fmt == "cifar10" else "fine_labels"
        images = planes_to_hwc(path, array_at(d, path, "data"), 32)
        labels = read_labels(path, array_at(d, path, key), len(images), low=0)
        return checked_set(path, name, images, labels, num_labels(cfg), contiguous=contiguous)
    if fmt == "npz":
        d = read_npz(path)
        images = np.asarray(array_at(d, path, "images"))
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise DataError(
                f"{path}: 'images' must be uint8 (N, H, W, C) with C = 1 or 3, "
                f"got {images.dtype} {images.shape}"
            )
        labels = read_labels(path, array_at(d, path, "labels"), len(images), low=0)
        s = checked_set(path, name, images, labels, num_labels(cfg) or int(labels.max()) + 1)
        if "ids" in d:
            ids = np.asarray(d["ids"]).astype(str)
            if ids.shape != (len(images),) or len(np.unique(ids)) != len(ids):
                raise DataError(f"{path}: 'ids' must be {len(images)} unique strings")
            s.names = ids
        return s
    raise DataError(f"config key dataset.format: unknown format {fmt!r}")
