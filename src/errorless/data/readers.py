"""The file readers behind ``datasets.load_batch``: pickles (a restricted unpickler), npz, scikit-learn's
digits, each checked into an ``ImageSet`` with one clear line naming the file."""

from __future__ import annotations

import io
import pickle
import sys
from pathlib import Path

import numpy as np

from errorless.data.imageset import ImageSet
from errorless.errors import DataError


def checked_set(
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


def read_pickle(path: Path) -> dict:
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


def read_npz(path: Path) -> dict:
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


def array_at(d: dict, path: Path, key: str):
    if key not in d:
        raise DataError(f"{path}: missing key {key!r} (has {sorted(d)})")
    return d[key]


def planes_to_hwc(path: Path, data, side: int) -> np.ndarray:
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


def read_labels(path: Path, labels, n: int, low: int) -> np.ndarray:
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


def read_digits(L: int | None) -> ImageSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    labels = d.target.astype(np.int64)
    return checked_set(Path("sklearn:digits"), "digits", images, labels, L or 10)
