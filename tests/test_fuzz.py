"""Hostile data: mutated data-set pickles (truncations, byte flips, wrong types, hostile opcodes).

Every mutant that is not a well-formed batch must stop ``errorless modularize`` with exit
code 2, exactly one line naming the file, no traceback, and nothing written to the results
folder. Mutants are made from pickles written the way the real data sets are (imagenet32
dicts with numpy arrays at protocols 2, 4 and 5; cifar-style bytes keys). A byte flip that
happens to leave a well-formed batch (a plain ``pickle.loads`` reads a dict of the right
shapes and labels) is legitimate data and must be accepted (rc 0) -- the flips are placed
outside the pixel, mean and label payloads so that these are rare, and their count is
checked to stay small.
"""

from __future__ import annotations

import json
import pickle
import pickletools
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from errorless import cli

SIDE, L, N = 32, 4, 8
SEED = 13
N_TRUNCATIONS, N_FLIPS = 150, 250
SETTINGS = json.dumps(
    {
        "dataset": {
            "format": "imagenet32",
            "path": "",
            "batches": 1,
            "validation": False,
            "labels": L,
        },
        "modules": {"labels_per_module": 2, "submodules": 2},
        "features": ["R"],
        "featured_models": [1],
    }
)


def batch(rng: np.random.Generator) -> dict:
    data = rng.integers(0, 256, size=(N, 3 * SIDE * SIDE), dtype=np.uint8)
    return {"data": data, "labels": [int(v) for v in np.arange(N) % L + 1], "mean": data.mean(0)}


def originals() -> dict[str, bytes]:
    rng = np.random.default_rng(SEED)
    d = batch(rng)
    out = {f"p{p}": pickle.dumps(d, protocol=p) for p in (2, 4, 5)}
    out["bytes_keys"] = pickle.dumps({k.encode(): v for k, v in d.items()}, protocol=2)
    return out


def payload_spans(raw: bytes) -> list[tuple[int, int]]:
    """Byte ranges of numbers and array payloads (pixels, mean, labels): flips elsewhere hit
    the pickle's structure (opcodes, lengths, key and class names, dtype strings)."""
    ops = list(pickletools.genops(raw))
    spans = []
    for (op, arg, pos), (_, _, end) in zip(ops, [*ops[1:], (None, None, len(raw))], strict=True):
        if op.name in (
            "BININT1",
            "BININT2",
            "BININT",
            "BINFLOAT",
            "LONG1",
            "BINPUT",
            "LONG_BINPUT",
        ):
            spans.append((pos + 1, end))  # a number (or memo slot): another value may be valid
        elif isinstance(arg, (bytes, bytearray, str)) and len(arg) > 64:  # an array's bytes
            n = len(arg.encode("utf-8") if isinstance(arg, str) else arg)
            spans.append((end - n, end))
    return spans


def mutants() -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(SEED)
    out: list[tuple[str, bytes]] = []
    origs = originals()
    for name, raw in origs.items():
        for cut in rng.choice(len(raw), size=N_TRUNCATIONS // len(origs), replace=False):
            out.append((f"{name} truncated at {cut}", raw[:cut]))
        spans = payload_spans(raw)
        free = np.ones(len(raw), dtype=bool)
        for a, b in spans:
            free[a:b] = False
        where = np.flatnonzero(free)
        for _ in range(N_FLIPS // len(origs)):
            b = bytearray(raw)
            for pos in rng.choice(where, size=int(rng.integers(1, 4)), replace=False):
                b[pos] ^= int(rng.integers(1, 256))
            out.append((f"{name} flipped", bytes(b)))
    return out + wrong_types()


class _Call:
    """Pickles as a call of ``module.name(*args)`` -- what a hostile file can ask for."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def wrong_types() -> list[tuple[str, bytes]]:
    import os

    rng = np.random.default_rng(SEED)
    good = batch(rng)
    data, labels = good["data"], good["labels"]
    cases = {
        "labels float": {"data": data, "labels": [1.5] + labels[1:]},
        "labels bool": {"data": data, "labels": [True] + labels[1:]},
        "labels str": {"data": data, "labels": ["1"] + labels[1:]},
        "labels None": {"data": data, "labels": None},
        "labels dict": {"data": data, "labels": {1: 2}},
        "labels nested": {"data": data, "labels": [[v] for v in labels]},
        "labels float array": {"data": data, "labels": np.array(labels, dtype=float)},
        "labels bool array": {"data": data, "labels": np.ones(N, dtype=bool)},
        "labels 2-D": {"data": data, "labels": np.array(labels).reshape(2, -1)},
        "labels too large": {"data": data, "labels": [2**80] + labels[1:]},
        "labels negative": {"data": data, "labels": [-1] + labels[1:]},
        "labels zero": {"data": data, "labels": [0] + labels[1:]},
        "labels above L": {"data": data, "labels": [L + 1] + labels[1:]},
        "labels too few": {"data": data, "labels": labels[:-1]},
        "labels empty": {"data": data[:0], "labels": []},
        "data list": {"data": data.tolist(), "labels": labels},
        "data str": {"data": "pixels", "labels": labels},
        "data None": {"data": None, "labels": labels},
        "data float": {"data": data.astype(np.float32), "labels": labels},
        "data int64": {"data": data.astype(np.int64), "labels": labels},
        "data 3-D": {"data": data.reshape(N, 3, -1), "labels": labels},
        "data wrong width": {"data": data[:, :100], "labels": labels},
        "data object": {"data": data.astype(object), "labels": labels},
        "data empty": {"data": data[:0], "labels": labels[:0]},
        "no labels": {"data": data},
        "no data": {"labels": labels},
        "int keys": {1: data, 2: labels},
        "top list": [data, labels],
        "top int": 7,
        "top str": "data",
        "top None": None,
        "top tuple": (data, labels),
        "top set": {1, 2},
        "os.system": _Call(os.system, "true"),
        "eval": _Call(eval, "1"),
        "subprocess": _Call(subprocess.call, ["true"]),
        "getattr": {"data": _Call(getattr, "x", "upper"), "labels": labels},
    }
    out = [(name, pickle.dumps(obj, protocol=2)) for name, obj in cases.items()]
    big = struct.pack("<I", 0x7FFFFFFF)
    huge = struct.pack("<Q", 2**62)
    out += [
        ("empty file", b""),
        ("not a pickle", b"hello, I am a text file\n"),
        ("REDUCE on a dict", b"\x80\x02}q\x00)R."),
        ("BINBYTES 2 GB claimed", b"\x80\x03B" + big + b"xx."),
        ("BINBYTES8 huge claimed", b"\x80\x04\x8e" + huge + b"xx."),
        ("BINUNICODE8 huge claimed", b"\x80\x04\x8d" + huge + b"xx."),
        ("LONG4 2 GB claimed", b"\x80\x02\x8b" + big + b"xx."),
        ("FRAME huge claimed", b"\x80\x04\x95" + huge + b"}."),
        ("deep nesting", b"\x80\x02" + b"]" * 200_000 + b"a" * 199_999 + b"."),
        (
            "numpy shape 2**40",
            pickle.dumps(np.zeros(1, np.uint8), protocol=2).replace(
                b"K\x01\x85", b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85", 1
            ),
        ),
        ("STOP only", b"."),
        ("empty stack", b"\x80\x02R."),
        ("memo miss", b"\x80\x02h\x05."),
        ("GLOBAL builtins", b"cbuiltins\nexec\n(S'1'\ntR."),
        ("GLOBAL posix", b"cposix\nsystem\n(S'true'\ntR."),
        ("PERSID", b"\x80\x02P0\n."),
        ("EXT1", b"\x80\x02\x82\x01."),
    ]
    return out


def _is_batch(raw: bytes) -> bool:
    """Oracle: does a plain unpickler read a well-formed batch (dict, uint8 (N, 3072), int labels
    1..L)? Only ever called on flips of our own files (globals: numpy's)."""
    try:
        d = pickle.loads(raw, encoding="bytes")
        d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
        x, y = d["data"], d["labels"]
        return (
            isinstance(x, np.ndarray)
            and x.dtype == np.uint8
            and x.ndim == 2
            and len(x) > 0
            and x.shape[1] == 3 * SIDE * SIDE
            and isinstance(y, list)
            and len(y) == len(x)
            and all(type(v) is int and 1 <= v <= L for v in y)
        )
    except BaseException:  # noqa: BLE001 - the oracle's own failure means "not a batch"
        return False


def run_modularize(tmp: Path, raw: bytes, capsys) -> tuple[int, str, Path, Path]:
    data, results = tmp / "data", tmp / "results"
    data.mkdir(exist_ok=True)
    path = data / "train_data_batch_1"
    path.write_bytes(raw)
    settings = SETTINGS.replace('"path": ""', f'"path": "{data}"')
    rc = cli.main(
        [
            "modularize",
            "--settings",
            settings,
            "--out",
            str(results / "shards"),
            "--manifest",
            str(results / "shards" / "manifest.tsv"),
        ]
    )
    return rc, capsys.readouterr().err, path, results


def test_fuzzed_pickles_give_one_line_naming_the_file(tmp_path, capsys):
    cases = mutants()
    assert len(cases) >= 400
    t0 = time.perf_counter()
    accepted, refused = [], 0
    for i, (name, raw) in enumerate(cases):
        work = tmp_path / f"c{i}"
        work.mkdir()
        rc, err, path, results = run_modularize(work, raw, capsys)
        assert "Traceback" not in err, (name, err)
        if rc == 0:
            # a legitimate batch: only a flip that a plain unpickler also reads as one
            assert name.endswith("flipped") and _is_batch(raw), (name, err)
            accepted.append(name)
            continue
        assert rc == 2, (name, rc, err)
        lines = [ln for ln in err.splitlines() if "error" in ln.lower()]
        assert len(lines) == 1 and lines[0].startswith(f"errorless modularize: error: {path}: "), (
            name,
            err,
        )
        assert not results.exists() or not any(results.rglob("*")), (
            name,
            sorted(results.rglob("*")),
        )
        refused += 1
    seconds = time.perf_counter() - t0
    print(
        f"fuzz: {len(cases)} mutated inputs, {refused} refused in one line, {len(accepted)} still "
        f"well-formed batches accepted, 0 tracebacks, {seconds:.1f} s"
    )
    assert len(accepted) <= 0.05 * len(cases)
    assert seconds < 120


@pytest.mark.parametrize(
    "name", ["os.system", "REDUCE on a dict", "BINBYTES 2 GB claimed", "deep nesting"]
)
def test_fuzzed_pickle_from_the_command_line(tmp_path, name):
    """The real process: exit code 2 and stderr is exactly the one line."""
    raw = dict(wrong_types())[name]
    data = tmp_path / "data"
    data.mkdir()
    path = data / "train_data_batch_1"
    path.write_bytes(raw)
    settings = SETTINGS.replace('"path": ""', f'"path": "{data}"')
    out = tmp_path / "results"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "errorless",
            "modularize",
            "--settings",
            settings,
            "--out",
            str(out / "shards"),
            "--manifest",
            str(out / "shards/manifest.tsv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
            "PATH": "/usr/bin:/bin",
        },
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(
        f"errorless modularize: error: {path}: "
    ), r.stderr
    assert not out.exists()


def _is_npz_batch(raw: bytes) -> bool:
    import io

    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            x, y = z["data"], z["labels"]
            return (
                x.dtype == np.uint8
                and x.shape == (N, 3 * SIDE * SIDE)
                and y.dtype.kind in "iu"
                and y.shape == (N,)
                and bool(((y >= 1) & (y <= L)).all())
            )
    except BaseException:  # noqa: BLE001
        return False


def test_fuzzed_npz_give_one_line_naming_the_file(tmp_path, capsys):
    """The same for the imagenet32-npz layout (zip members carry a CRC: flips are caught)."""
    import io

    rng = np.random.default_rng(SEED)
    d = batch(rng)
    buf = io.BytesIO()
    np.savez(buf, data=d["data"], labels=np.array(d["labels"]), mean=d["mean"])
    raw = buf.getvalue()
    cases = [raw[:cut] for cut in rng.choice(len(raw), size=100, replace=False)]
    for _ in range(100):
        b = bytearray(raw)
        for pos in rng.choice(len(raw), size=int(rng.integers(1, 4)), replace=False):
            b[pos] ^= int(rng.integers(1, 256))
        cases.append(bytes(b))
    settings = SETTINGS.replace('"imagenet32"', '"imagenet32-npz"')
    accepted = 0
    for i, mutant in enumerate(cases):
        data, results = tmp_path / f"c{i}" / "data", tmp_path / f"c{i}" / "results"
        data.mkdir(parents=True)
        path = data / "train_data_batch_1.npz"
        path.write_bytes(mutant)
        rc = cli.main(
            [
                "modularize",
                "--settings",
                settings.replace('"path": ""', f'"path": "{data}"'),
                "--out",
                str(results / "shards"),
                "--manifest",
                str(results / "shards/m.tsv"),
            ]
        )
        err = capsys.readouterr().err
        assert "Traceback" not in err
        if rc == 0:
            assert _is_npz_batch(mutant)
            accepted += 1
            continue
        lines = [ln for ln in err.splitlines() if "error" in ln.lower()]
        assert (
            rc == 2
            and len(lines) == 1
            and lines[0].startswith(f"errorless modularize: error: {path}: ")
        ), err
        assert not results.exists()
    print(
        f"fuzz npz: {len(cases)} mutated inputs, {len(cases) - accepted} refused in one line, "
        f"{accepted} still well-formed accepted, 0 tracebacks"
    )
    assert accepted <= 0.1 * len(cases)


# ---------------------------------------------------------------- IDX (format mnist)

IDX_N, IDX_SIDE, IDX_L = 40, 12, 10
IDX_SETTINGS = json.dumps(
    {
        "dataset": {"format": "mnist", "path": "", "idx_train": "train", "validation": False},
        "modules": {"labels_per_module": 5, "submodules": 2},
        "features": ["gray"],
        "featured_models": [1],
    }
)


def idx_originals() -> dict[str, bytes]:
    """The unpacked images and labels files of one IDX pair, as MNIST publishes them."""
    from errorless.data.idx import idx_bytes

    rng = np.random.default_rng(SEED)
    images = rng.integers(0, 256, size=(IDX_N, IDX_SIDE, IDX_SIDE), dtype=np.uint8)
    return {"images": idx_bytes(images), "labels": idx_bytes(np.arange(IDX_N) % IDX_L)}


def _is_idx(raw: bytes, kind: str, gz: bool) -> int | None:
    """Oracle, written apart from the reader: the item count of a well-formed IDX file of
    unsigned bytes (images: 3 dims, square; labels: 1 dim, values < L), else None."""
    import gzip

    try:
        raw = gzip.decompress(raw) if gz else raw
        ndim = 3 if kind == "images" else 1
        if raw[:4] != bytes([0, 0, 8, ndim]) or len(raw) < 4 + 4 * ndim:
            return None
        dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
        body = raw[4 + 4 * ndim :]
        if dims[0] == 0 or len(body) != int(np.prod(dims, dtype=object)):
            return None
        if kind == "images" and (dims[1] != dims[2] or dims[1] == 0):
            return None
        if kind == "labels" and max(body) >= IDX_L:
            return None
        return dims[0]
    except Exception:  # noqa: BLE001 - the oracle's own failure means "not a file"
        return None


def idx_mutants() -> list[tuple[str, str, bool, bytes]]:
    """(name, mutated file: images|labels, gzipped, bytes): truncations and byte flips of
    each file, plain and gzipped. Plain flips hit the header (magic, dimensions) and, for
    labels, the values; gzipped flips hit anywhere (the gzip CRC catches pixel flips)."""
    import gzip

    rng = np.random.default_rng(SEED)
    out = []
    for kind, raw in idx_originals().items():
        for gz in (False, True):
            data = gzip.compress(raw, mtime=0) if gz else raw
            for cut in rng.choice(len(data), size=30, replace=False):
                out.append(
                    (f"{kind}{' gz' if gz else ''} truncated at {cut}", kind, gz, data[:cut])
                )
            where = len(data) if gz else (16 if kind == "images" else len(data))
            for _ in range(30):
                b = bytearray(data)
                for pos in rng.choice(where, size=int(rng.integers(1, 4)), replace=False):
                    b[pos] ^= int(rng.integers(1, 256))
                out.append((f"{kind}{' gz' if gz else ''} flipped", kind, gz, bytes(b)))
            out.append((f"{kind}{' gz' if gz else ''} one byte more", kind, gz, data + b"\x00"))
    return out


def test_fuzzed_idx_files_give_one_line_naming_the_file(tmp_path, capsys):
    """Every mutated file of an IDX pair that is not a well-formed pair stops ``errorless
    modularize`` with exit code 2 and one line naming the file (a count mismatch names the
    labels file and the images file), nothing written; a mutant that still is a well-formed
    pair (say, a label flipped to another valid label) is data and is accepted."""
    import gzip

    origs = idx_originals()
    cases = idx_mutants()
    assert len(cases) >= 240
    accepted = refused = 0
    for i, (name, kind, gz, raw) in enumerate(cases):
        data, results = tmp_path / f"c{i}" / "data", tmp_path / f"c{i}" / "results"
        data.mkdir(parents=True)
        paths = {}
        for k, good in origs.items():
            p = data / f"train-{k}-idx{3 if k == 'images' else 1}-ubyte{'.gz' if gz else ''}"
            p.write_bytes(raw if k == kind else gzip.compress(good) if gz else good)
            paths[k] = p
        rc = cli.main(
            [
                "modularize",
                "--settings",
                IDX_SETTINGS.replace('"path": ""', f'"path": "{data}"'),
                "--out",
                str(results / "shards"),
                "--manifest",
                str(results / "shards/manifest.tsv"),
            ]
        )
        err = capsys.readouterr().err
        assert "Traceback" not in err, (name, err)
        other = "labels" if kind == "images" else "images"
        counts = _is_idx(raw, kind, gz), _is_idx(paths[other].read_bytes(), other, gz)
        well_formed = None not in counts and counts[0] == counts[1]
        if rc == 0:
            assert well_formed, (name, err)
            accepted += 1
            continue
        assert rc == 2 and not well_formed, (name, rc, err)
        lines = [ln for ln in err.splitlines() if "error" in ln.lower()]
        assert len(lines) == 1 and any(
            lines[0].startswith(f"errorless modularize: error: {p}: ") for p in paths.values()
        ), (name, err)
        assert paths[kind].name in lines[0], (name, err)
        assert not results.exists() or not any(results.rglob("*")), name
        refused += 1
    print(
        f"fuzz idx: {len(cases)} mutated files, {refused} refused in one line, {accepted} still "
        "well-formed pairs accepted, 0 tracebacks"
    )
    assert accepted <= 0.1 * len(cases)
