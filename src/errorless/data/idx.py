"""IDX files (format ``mnist``): the ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` pairs,
read and written."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from errorless.errors import DataError

# the IDX layout of MNIST, Fashion-MNIST and KMNIST: two pairs of files, named by prefix
IDX_PAIRS = ("train", "t10k")
IDX_KINDS = {"images": ("idx3", 0x00000803), "labels": ("idx1", 0x00000801)}


def idx_path(root: Path, prefix: str, kind: str) -> Path:
    """``{prefix}-{kind}-idx?-ubyte`` in ``root``: the plain file if it exists, else the ``.gz``
    file if that exists, else the plain name (what messages about a missing file show)."""
    plain = root / f"{prefix}-{kind}-{IDX_KINDS[kind][0]}-ubyte"
    packed = plain.with_name(plain.name + ".gz")
    return packed if not plain.exists() and packed.exists() else plain


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
