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

import gzip
import io
import pickle
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from errorless.errors import DataError

IMAGENET = {"imagenet64": 64, "imagenet32": 32, "imagenet64-npz": 64, "imagenet32-npz": 32}
DEFAULT_LABELS = {"cifar10": 10, "cifar100": 100, "digits": 10, "mnist": 10}
# formats the pipeline writes itself (imagenet layout); each has the settings section of its name
GENERATED = ("synthetic", "photos")
# formats whose images always have one plane; npz is grey or colour as its images say (C = 1
# or 3: planes()), every other format is colour
GREY_FORMATS = frozenset({"digits", "mnist"})
# the IDX layout of MNIST, Fashion-MNIST and KMNIST: two pairs of files, named by prefix
IDX_PAIRS = ("train", "t10k")
IDX_KINDS = {"images": ("idx3", 0x00000803), "labels": ("idx1", 0x00000801)}


@dataclass
class ImageSet:
    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray  # int64 (N,), 0-based global
    batch: np.ndarray  # str (N,), source batch name
    row: np.ndarray  # int64 (N,), row within its source batch
    num_labels: int
    names: np.ndarray | None = None  # optional ids given by the data set itself (npz "ids")

    @property
    def ids(self) -> np.ndarray:
        return self.names if self.names is not None else default_ids(self.batch, self.row)

    def __len__(self) -> int:
        return len(self.labels)


def default_ids(batch: np.ndarray, row: np.ndarray) -> np.ndarray:
    """``batch:row`` ids, for data sets that give none of their own."""
    return np.char.add(np.char.add(batch.astype(str), ":"), row.astype(str))


def concat(sets: list[ImageSet]) -> ImageSet:
    shapes = {s.images.shape[1:] for s in sets}
    if len(shapes) > 1:
        raise DataError(f"source batches have different image shapes: {sorted(shapes)}")
    names = None
    if any(s.names is not None for s in sets):
        names = np.concatenate([s.ids for s in sets])
    return ImageSet(
        images=np.concatenate([s.images for s in sets]),
        labels=np.concatenate([s.labels for s in sets]),
        batch=np.concatenate([s.batch for s in sets]),
        row=np.concatenate([s.row for s in sets]),
        num_labels=sets[0].num_labels,
        names=names,
    )


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


def idx_path(root: Path, prefix: str, kind: str) -> Path:
    """``{prefix}-{kind}-idx?-ubyte`` in ``root``: the plain file if it exists, else the ``.gz``
    file if that exists, else the plain name (what messages about a missing file show)."""
    plain = root / f"{prefix}-{kind}-{IDX_KINDS[kind][0]}-ubyte"
    packed = plain.with_name(plain.name + ".gz")
    return packed if not plain.exists() and packed.exists() else plain


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
        return _digits(num_labels(cfg))
    if fmt == "mnist":
        images_file, labels_file = source_files(cfg, name)
        images, labels = read_idx_pair(images_file, labels_file)
        return _checked(labels_file, name, images[..., None], labels, num_labels(cfg))
    dfmt = data_format(cfg)
    if dfmt in IMAGENET:
        side = IMAGENET[dfmt]
        d = _read_npz(path) if dfmt.endswith("-npz") else _read_pickle(path)
        images = _planes_to_hwc(path, _key(d, path, "data"), side)
        labels = _labels(path, _key(d, path, "labels"), len(images), low=1) - 1
        return _checked(path, name, images, labels, num_labels(cfg), low=1, contiguous=contiguous)
    if fmt in ("cifar10", "cifar100"):
        d = _read_pickle(path)
        key = "labels" if fmt == "cifar10" else "fine_labels"
        images = _planes_to_hwc(path, _key(d, path, "data"), 32)
        labels = _labels(path, _key(d, path, key), len(images), low=0)
        return _checked(path, name, images, labels, num_labels(cfg), contiguous=contiguous)
    if fmt == "npz":
        d = _read_npz(path)
        images = np.asarray(_key(d, path, "images"))
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise DataError(
                f"{path}: 'images' must be uint8 (N, H, W, C) with C = 1 or 3, "
                f"got {images.dtype} {images.shape}"
            )
        labels = _labels(path, _key(d, path, "labels"), len(images), low=0)
        s = _checked(path, name, images, labels, num_labels(cfg) or int(labels.max()) + 1)
        if "ids" in d:
            ids = np.asarray(d["ids"]).astype(str)
            if ids.shape != (len(images),) or len(np.unique(ids)) != len(ids):
                raise DataError(f"{path}: 'ids' must be {len(images)} unique strings")
            s.names = ids
        return s
    raise DataError(f"config key dataset.format: unknown format {fmt!r}")


def _checked(
    path: Path,
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    L: int | None,
    low: int = 0,
    contiguous: bool = True,
) -> ImageSet:
    """``labels`` are 0-based here; ``low`` is the file's own numbering (1 for imagenet), used
    in messages so that they quote the label as it is written in the file."""
    n = len(labels)
    if L is not None and n and labels.max() >= L:
        bad = int(labels.max()) + low
        raise DataError(
            f"{path}: label {bad} outside the expected range {low}..{L - 1 + low}; "
            f"set dataset.labels if the data set has more labels"
        )
    return ImageSet(
        images=np.ascontiguousarray(images) if contiguous else images,
        labels=labels,
        batch=np.full(n, name),
        row=np.arange(n, dtype=np.int64),
        num_labels=int(L) if L is not None else int(labels.max()) + 1,
    )


# The only globals a data-set pickle may name: numpy's array/scalar reconstruction (both
# numpy 1.x ``numpy.core`` and 2.x ``numpy._core`` spellings, protocols 2-5) and ``_codecs.encode``
# (bytes pickled by Python 3 at protocol 2). Anything else -- os.system, builtins.eval, a class
# of someone else's package -- is refused before it is called: data sets come from elsewhere.
SAFE_GLOBALS = frozenset(
    (module, name)
    for core in ("numpy.core", "numpy._core")
    for module, name in (
        (f"{core}.multiarray", "_reconstruct"),
        (f"{core}.multiarray", "scalar"),
        (f"{core}.numeric", "_frombuffer"),
    )
) | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _unpickle(raw: bytes):
    """Restricted unpickling. CPython reports some errors while a corrupt pickle's half-built
    objects are freed by printing them itself (``PyErr_Print`` -> ``sys.excepthook``, or
    ``sys.unraisablehook``; e.g. "deallocated bytearray object has exported buffers" after a
    protocol-5 buffer of absurd length); they are dropped here: the exception that follows
    names the problem in one line."""
    hooks = sys.unraisablehook, sys.excepthook
    sys.unraisablehook = lambda *_: None
    sys.excepthook = lambda *_: None
    try:
        unpickler = _SafeUnpickler(io.BytesIO(raw), encoding="bytes")
        try:
            return unpickler.load()
        finally:
            del unpickler
    finally:
        sys.unraisablehook, sys.excepthook = hooks


def _read_pickle(path: Path) -> dict:
    if not path.exists():
        raise DataError(f"{path}: data file missing (check dataset.path and dataset.batches)")
    try:
        # read the bytes first: a corrupt length field then meets the end of the buffer
        # instead of asking the file for gigabytes
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the data file: {e.strerror or e}") from None
    if not raw:
        raise DataError(f"{path}: data file is empty (0 bytes)")
    try:
        d = _unpickle(raw)
    except Exception as e:  # noqa: BLE001 - any failure of the unpickler is the file's fault
        # (MemoryError, OverflowError, RecursionError, TypeError from a corrupt REDUCE, ...)
        msg = " ".join(str(e).split())[:200]
        why = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
        raise DataError(
            f"{path}: not a readable pickle batch (truncated or corrupt?): {why}"
        ) from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a dict with 'data' and 'labels', got {type(d).__name__}")
    if not all(isinstance(k, (str, bytes)) for k in d):
        raise DataError(f"{path}: expected a dict with string keys 'data' and 'labels'")
    try:
        return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    except UnicodeDecodeError:
        raise DataError(f"{path}: a key of the batch dict is not text") from None


def _read_npz(path: Path) -> dict:
    if not path.exists():
        raise DataError(f"{path}: data file missing (check dataset.path)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - BadZipFile, zlib.error, MemoryError, ...: the file's fault
        msg = " ".join(str(e).split())[:200]
        raise DataError(
            f"{path}: not a readable .npz file (truncated or corrupt?): {type(e).__name__}: {msg}"
        ) from None


def _key(d: dict, path: Path, key: str):
    if key not in d:
        raise DataError(f"{path}: missing key {key!r} (has {sorted(d)})")
    return d[key]


def _planes_to_hwc(path: Path, data, side: int) -> np.ndarray:
    if not isinstance(data, np.ndarray):
        raise DataError(f"{path}: 'data' must be a uint8 array, got {type(data).__name__}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * side * side:
        raise DataError(
            f"{path}: 'data' must be uint8 (N, {3 * side * side}) = 3 planes of {side}x{side}, "
            f"got {data.dtype} {data.shape}"
        )
    return data.reshape(-1, 3, side, side).transpose(0, 2, 3, 1)  # (N, S, S, 3)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _labels(path: Path, labels, n: int, low: int) -> np.ndarray:
    """Integer labels only: a float (1.5) or a boolean (True) is an error, never truncated."""
    if n == 0:
        raise DataError(f"{path}: the batch has no images (N = 0)")
    if isinstance(labels, np.ndarray):
        if labels.dtype.kind not in "iu":
            raise DataError(f"{path}: labels must be integers, got a {labels.dtype} array")
    elif isinstance(labels, (list, tuple)):
        bad = next((v for v in labels if not _is_int(v)), None)
        if bad is not None:
            raise DataError(
                f"{path}: labels must be integers, got {type(bad).__name__} {bad!r:.40}"
            )
    else:
        raise DataError(f"{path}: labels must be a list of integers, got {type(labels).__name__}")
    try:
        y = (
            np.asarray(labels).astype(np.int64, casting="safe")
            if isinstance(labels, np.ndarray)
            else np.array(labels, dtype=np.int64)
        )
    except (TypeError, OverflowError):
        raise DataError(f"{path}: labels do not fit 64-bit integers") from None
    if y.shape != (n,):
        raise DataError(f"{path}: {y.size} labels for {n} images")
    if n and y.min() < low:
        raise DataError(f"{path}: label {int(y.min())} below {low} (labels must start at {low})")
    return y


def _digits(L: int | None) -> ImageSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    labels = d.target.astype(np.int64)
    return _checked(Path("sklearn:digits"), "digits", images, labels, L or 10)


# ---------------------------------------------------------------- IDX (MNIST and its kin)


def read_idx_pair(images_file: Path, labels_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, S, S), labels int64 (N,)) of one IDX pair; the counts must agree."""
    images = read_idx(images_file, "images")
    labels = read_idx(labels_file, "labels")
    if len(labels) != len(images):
        raise DataError(
            f"{labels_file}: {len(labels)} labels for the {len(images)} images of "
            f"{images_file.name}"
        )
    return images, labels.astype(np.int64)


def read_idx(path: Path, kind: str) -> np.ndarray:
    """One IDX file (plain or ``.gz``) of unsigned bytes: ``images`` (magic 0x00000803, 3
    dimensions: N, rows, cols; square, N >= 1) or ``labels`` (0x00000801, 1 dimension: N).
    The file must hold exactly the bytes its header announces. Every fault is a one-line
    DataError naming the file; the pixels are one ``np.frombuffer``, no loop over images."""
    magic = IDX_KINDS[kind][1]
    ndim = magic & 0xFF  # the magic's last byte: the number of dimensions
    if not path.is_file():
        raise DataError(f"{path}: IDX {kind} file missing (check dataset.path)")
    head = 4 + 4 * ndim
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            header = fh.read(head)
            if len(header) >= 4 and int.from_bytes(header[:4], "big") != magic:
                found = int.from_bytes(header[:4], "big")
                raise DataError(
                    f"{path}: not an IDX {kind} file: magic number 0x{found:08x}, expected "
                    f"0x{magic:08x} (unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
                )
            if len(header) < head:
                raise DataError(f"{path}: truncated IDX header ({len(header)} of {head} bytes)")
            dims = tuple(int(d) for d in np.frombuffer(header, ">u4", ndim, 4))
            size = int(np.prod(dims, dtype=object))
            body = _read_at_most(fh, size + 1)  # one more: longer than announced is an error
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        msg = " ".join(str(e).split())[:200]
        raise DataError(
            f"{path}: not a readable IDX {kind} file (truncated or corrupt?): "
            f"{type(e).__name__}: {msg}"
        ) from None
    shape = " x ".join(str(d) for d in dims)
    if len(body) != size:
        what = "truncated" if len(body) < size else "too long"
        got = f"{len(body)} bytes" if len(body) < size else "more"
        if len(body) > size and path.suffix != ".gz":
            got = f"{path.stat().st_size - head} bytes"
        raise DataError(
            f"{path}: {what}: the header announces {shape} = {size} bytes of data, "
            f"the file holds {got}"
        )
    if dims[0] == 0:
        raise DataError(f"{path}: the file has no {kind} (N = 0)")
    if kind == "images" and (dims[1] != dims[2] or dims[1] == 0):
        raise DataError(f"{path}: images of {dims[1]} x {dims[2]} px; square images expected")
    return np.frombuffer(body, np.uint8).reshape(dims)


def _read_at_most(fh, n: int, chunk: int = 1 << 24) -> bytearray:
    """Up to ``n`` bytes, read in chunks: a header announcing terabytes meets the end of the
    file instead of asking for the memory (a bytearray: the images made of it are writable,
    like those of the other loaders)."""
    buf = bytearray()
    while len(buf) < n:
        part = fh.read(min(chunk, n - len(buf)))
        if not part:
            break
        buf += part
    return buf


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array (N,) or (N, S, S) as an IDX file (gzipped when ``path`` ends in
    .gz): tests and small data sets."""
    raw = idx_bytes(array)
    Path(path).write_bytes(gzip.compress(raw, mtime=0) if str(path).endswith(".gz") else raw)


def idx_bytes(array: np.ndarray) -> bytes:
    """The unpacked IDX file of a uint8 array: magic, big-endian dimensions, the bytes."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    return (0x800 + a.ndim).to_bytes(4, "big") + np.asarray(a.shape, ">u4").tobytes() + a.tobytes()


# ---------------------------------------------------------------- label names


def label_names_file(cfg: dict[str, Any]) -> Path | None:
    """The file that names the labels: ``dataset.label_names`` when set, else the data set's
    own (CIFAR-10 ``batches.meta``, CIFAR-100 ``meta``, the photos' ``labels.csv``), or None."""
    if cfg["dataset"].get("label_names"):
        return Path(cfg["dataset"]["label_names"])
    root, fmt = Path(cfg["dataset"]["path"]), cfg["dataset"]["format"]
    own = {"cifar10": "batches.meta", "cifar100": "meta", "photos": "labels.csv"}.get(fmt)
    return root / own if own else None


def label_names(cfg: dict[str, Any], labels: int) -> list[str]:
    """A name for each of the ``labels`` labels (see :func:`label_names_file`); the label
    number where nothing names it. ``dataset.label_names`` is a CSV with the header
    ``label,name`` (labels 0-based) or a text file of one name per line in label order."""
    path = label_names_file(cfg)
    names = [str(i) for i in range(labels)]
    if path is None:
        return names
    given = cfg["dataset"].get("label_names")
    where = f"config key dataset.label_names: {path}" if given else str(path)
    if not path.is_file():
        if given:
            raise DataError(f"{where} does not exist")
        return names
    try:
        if path.suffix in (".meta", "") and path.name in ("batches.meta", "meta"):
            d = _read_pickle(path)
            key = "label_names" if "label_names" in d else "fine_label_names"
            found = {i: _text(n) for i, n in enumerate(_key(d, path, key))}
        else:
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
            head = [c.strip() for c in lines[0].split(",")] if lines else []
            if head[:2] == ["label", "name"]:
                found = {}
                for n, ln in enumerate(lines[1:], start=2):
                    label, _, name = ln.partition(",")
                    if not label.strip().isdigit():
                        raise DataError(f"{where}, line {n}: {label!r} is not a label number")
                    found[int(label)] = name.split(",")[0].strip()
            else:
                found = dict(enumerate(ln.strip() for ln in lines))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{where} cannot be read: {e}") from None
    for i, name in found.items():
        if 0 <= i < labels and name:
            names[i] = name
    return names


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
