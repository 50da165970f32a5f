"""The embedded synthetic data set, written in the imagenet64 (or 32) pickle layout.

Each class is a smooth random colour pattern close to a shared base pattern; an image is its
class pattern, blended with a random other class's pattern, shifted, rescaled and covered in
pixel noise, so classes overlap and SGD stops at its threshold below 100 % (GDT has work to
do). Deterministic for a seed.

Planted double labels (ground truth in ``planted.csv`` next to the batches):
- ``same_shard``: image A (label a) copied over an image B of another label of the same
  (module, submodule) shard: B keeps its label, so one input carries two labels in one shard;
- ``cross_module``: the same, with B in another module (no single FNN can see it);
- near copies (``jpeg``, ``rescale``, ``crop``, ``shift``, ``flip``, ``brightness``,
  ``contrast``, ``combo``; ``errorless.data.copies``): B becomes A changed the way real data sets
  change copies, one kind per plant; alternately in A's shard and in another module
  (``placement``).
- ``label_flip`` (``plant_flips``): one image gets another label of its own module, no copy (the
  single-image label errors GDT memorises; found by ``errorless.quality.labelissues``).

At ImageNet size (``synthetic.stream: true``; 1,000 labels x 1,280 images) :func:`write_streaming`
writes one batch at a time: images are drawn in chunks, each from its own seed
(``[seed, batch, chunk]``), so the plants are chosen from the labels alone (the same
:func:`plant` code, on :class:`_LazyImages` that draw the one chunk holding an image when a plant
reads it) and applied while each batch is written. :func:`generate_chunked` is the same data set
drawn in memory (the oracle of the streaming writer, for small sizes).
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import io
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from errorless.config import module_names, settings_arguments, settings_from_args, submodule_names
from errorless.data.copies import transform_copy
from errorless.data.shards import assign
from errorless.errors import ConfigError
from errorless.io import write_if_changed, write_text
from errorless.names import image_id

log = logging.getLogger(__name__)
PLANTED_COLUMNS = [
    "kind",
    "id_a",
    "label_a",
    "id_b",
    "label_b",
    "module_a",
    "submodule_a",
    "module_b",
    "submodule_b",
    "placement",
]


def class_patterns(
    rng: np.random.Generator, labels: int, side: int, separation: float = 1.0
) -> np.ndarray:
    """Smooth random colour patterns (L, side, side, 3) in 0..255, one per class: a shared
    base pattern plus ``separation`` times each class's own deviation from it (small
    separation = similar classes that an FNN must partly memorise)."""
    own = _smooth_patterns(rng, labels + 1, side)
    base = own[-1]
    return base[None] + separation * (own[:-1] - base[None])


def _smooth_patterns(rng: np.random.Generator, labels: int, side: int) -> np.ndarray:
    coarse = rng.uniform(0, 255, size=(labels, 6, 6, 3))
    rep = -(-side // 6)
    big = np.repeat(np.repeat(coarse, rep, axis=1), rep, axis=2)[:, :side, :side]
    # blur with a box filter along both axes (vectorised, via cumulative sums)
    k = max(3, side // 8)
    for axis in (1, 2):
        c = np.cumsum(
            np.pad(
                big,
                [(0, 0)] + [(k, k) if a == axis else (0, 0) for a in (1, 2)] + [(0, 0)],
                mode="edge",
            ),
            axis=axis,
        )
        hi = np.take(c, np.arange(2 * k, 2 * k + side), axis=axis)
        lo = np.take(c, np.arange(0, side), axis=axis)
        big = (hi - lo) / (2 * k)
    return big


def make_images(
    rng: np.random.Generator, patterns: np.ndarray, labels: np.ndarray, noise: float
) -> np.ndarray:
    """Images (N, S, S, 3) uint8 of the given labels."""
    n = len(labels)
    L, side = patterns.shape[0], patterns.shape[1]
    other = (labels + rng.integers(1, L, size=n)) % L
    w = rng.uniform(0.0, 0.45, size=(n, 1, 1, 1))
    x = (1 - w) * patterns[labels] + w * patterns[other]  # (N, S, S, 3)
    shift = rng.integers(-side // 16, side // 16 + 1, size=(n, 2))
    rows = (np.arange(side)[None, :] - shift[:, :1]) % side  # (N, S)
    cols = (np.arange(side)[None, :] - shift[:, 1:]) % side
    x = x[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    gain = rng.uniform(0.6, 1.3, size=(n, 1, 1, 1))
    bias = rng.uniform(-40, 40, size=(n, 1, 1, 3))
    x = (x - 128) * gain + 128 + bias + rng.normal(0, noise, size=x.shape)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def to_planes(images: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) -> imagenet layout (N, 3*S*S): all R, then G, then B, row-major."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def generate(cfg: dict[str, Any]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[dict]]:
    """Return {batch name: (images, labels 0-based)} and the planted pairs."""
    s = cfg["synthetic"]
    rng = np.random.default_rng(s["seed"])
    patterns = class_patterns(rng, s["labels"], s["image_size"], s["separation"])
    return draw_batches(
        rng, cfg, "synthetic", lambda labels: make_images(rng, patterns, labels, s["noise"])
    )


def module_layout(cfg: dict[str, Any], L: int) -> tuple[np.ndarray, int, int]:
    """(the 0-based module of every label, r, K) of the run's module plan
    (:func:`errorless.grid.module_plan`: contiguous, or the label groups)."""
    from errorless.grid import module_plan

    plan = module_plan(cfg, L)
    return plan.module_of(), cfg["modules"]["submodules"], len(plan.modules)


def draw_batches(
    rng, cfg, section, draw
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[dict]]:
    """The batches of a generated data set (settings ``cfg[section]``: synthetic, photos):
    each train batch holds ``images_per_label`` images of every label in random order,
    ``draw(labels) -> images`` makes them; then the planted pairs; then ``val_data``."""
    s = cfg[section]
    L, per = s["labels"], s["images_per_label"]
    c, r, k = module_layout(cfg, L)
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for b in range(1, s["batches"] + 1):
        labels = np.repeat(np.arange(L), per)
        labels = labels[rng.permutation(len(labels))]
        batches[f"train_data_batch_{b}"] = (draw(labels), labels)
    planted = plant(rng, batches, cfg, k, c, r, section)
    if s["validation_per_label"] > 0:
        labels = np.repeat(np.arange(L), s["validation_per_label"])
        labels = labels[rng.permutation(len(labels))]
        batches["val_data"] = (draw(labels), labels)
    return batches, planted


def plant(rng, batches, cfg, k, c, r, section: str = "synthetic") -> list[dict]:
    """Plant the label flips, then the copies; return one planted.csv row per plant.

    Flips come first because they change labels, and the labels decide the shards (every
    label's images are cut into the submodules): the copies are then planted, and every plant's
    (module, submodule) recorded, in the shards of the final labels."""
    s = cfg[section]
    names = [n for n in batches if n.startswith("train")]
    labels = np.concatenate([batches[n][1] for n in names])
    bidx = np.concatenate([np.full(len(batches[n][1]), i) for i, n in enumerate(names)])
    row = np.concatenate([np.arange(len(batches[n][1])) for n in names])
    used = np.zeros(len(labels), bool)

    def pick(mask) -> int:
        cand = np.flatnonzero(mask & ~used)
        if not len(cand):
            raise ConfigError(
                f"{section}: too many planted pairs for the data set size; lower {section}.plant_*"
            )
        i = int(rng.choice(cand))
        used[i] = True
        return i

    flips = [
        plant_flip(rng, batches, names, labels, bidx, row, pick, c, section)
        for _ in range(s.get("plant_flips", 0))
    ]
    order, mod, part = assign(labels, bidx, row, c, r, s["labels"])
    shard_of = np.empty(len(labels), dtype=np.int64)
    shard_of[order] = mod * r + part  # global position -> shard number
    module_of = shard_of // r
    mnames, snames = module_names(k), submodule_names(r)

    def where(i) -> tuple[str, str]:
        return mnames[shard_of[i] // r], snames[shard_of[i] % r]

    out = []

    def record(kind, a, b, placement):
        na, nb = names[bidx[a]], names[bidx[b]]
        ia, ib = batches[na][0], batches[nb][0]
        ib[row[b]] = (
            ia[row[a]]
            if kind in ("same_shard", "cross_module")
            else transform_copy(ia[row[a]], kind, rng)
        )
        (ma, sa), (mb, sb) = where(a), where(b)
        out.append(
            dict(
                kind=kind,
                id_a=image_id(na, row[a]),
                label_a=int(labels[a]),
                id_b=image_id(nb, row[b]),
                label_b=int(labels[b]),
                module_a=ma,
                submodule_a=sa,
                module_b=mb,
                submodule_b=sb,
                placement=placement,
            )
        )

    everything = np.ones(len(labels), bool)
    for _ in range(s["plant_same_shard"]):
        a = pick(everything)
        record(
            "same_shard", a, pick((shard_of == shard_of[a]) & (labels != labels[a])), "same_shard"
        )
    if k < 2 and (s["plant_cross_module"] or s["plant_near"] > 1):
        raise ConfigError(
            f"{section}: cross-module plants (and more than one near plant) need at least two modules"
        )
    for _ in range(s["plant_cross_module"]):
        a = pick(everything)
        record("cross_module", a, pick(module_of != module_of[a]), "cross_module")
    for i in range(s["plant_near"]):
        kind = s["near_kinds"][i % len(s["near_kinds"])]
        a = pick(everything)
        if i % 2 == 0:
            record(kind, a, pick((shard_of == shard_of[a]) & (labels != labels[a])), "same_shard")
        else:
            record(kind, a, pick(module_of != module_of[a]), "cross_module")
    for f, i in flips:
        f["module_a"], f["submodule_a"] = f["module_b"], f["submodule_b"] = where(i)
        out.append(f)
    return out


def plant_flip(rng, batches, names, labels, bidx, row, pick, c, section) -> tuple[dict, int]:
    """A single-image label flip (no copy): an unused image gets another label **of its own
    module**, so that it stays in its module and the FNNs of the module's other submodules can
    vote on it. ``labels`` and the batch are changed in place. Returns the planted.csv row
    (kind ``label_flip``: id_a and label_a = the image and its given (wrong) label, label_b =
    its true label, no id_b; module and submodule filled in by :func:`plant`) and the image's
    position."""
    # c: the 0-based module of every label (module_layout)
    if np.bincount(c).min() < 2:
        raise ConfigError(
            f"{section}.plant_flips: a flip needs another label in the module (labels_per_module >= 2)"
        )
    i = pick(np.ones(len(labels), bool))
    mates = np.flatnonzero(c == c[labels[i]])
    new = int(rng.choice([v for v in mates.tolist() if v != labels[i]]))
    true = int(labels[i])
    labels[i] = new
    batches[names[bidx[i]]][1][row[i]] = new
    row_ = dict(
        kind="label_flip",
        id_a=image_id(names[bidx[i]], row[i]),
        label_a=int(new),
        id_b="",
        label_b=true,
        placement="flip",
    )
    return row_, i


def write(cfg: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the batches (imagenet pickle layout) and planted.csv; unchanged files keep their mtime."""
    if cfg["synthetic"].get("stream"):
        return write_streaming(cfg, out_dir)
    batches, planted = generate(cfg)
    written = write_batches(out_dir, batches, planted)
    log.info(
        "synthetic: %d batches, %d labels, %d planted pairs -> %s",
        len(batches),
        cfg["synthetic"]["labels"],
        len(planted),
        out_dir,
    )
    return written


def write_batches(
    out_dir: Path, batches: dict[str, tuple[np.ndarray, np.ndarray]], planted: list[dict]
) -> list[Path]:
    """Write {name: (images, labels 0-based)} as imagenet pickles and ``planted.csv``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (images, labels) in batches.items():
        d = {
            "data": to_planes(images),
            "labels": [int(v) + 1 for v in labels],
        }  # imagenet labels are 1-based
        if name.startswith("train"):
            d["mean"] = d["data"].mean(axis=0)
        path = out_dir / name
        write_if_changed(path, pickle.dumps(d, protocol=4))
        written.append(path)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=PLANTED_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(planted)
    write_text(out_dir / "planted.csv", buf.getvalue())
    return written


# ---------------------------------------------------------------- streaming (ImageNet size)

CHUNK = 1024  # images drawn at once (float64 temporaries: a few copies of CHUNK x 12,288 values)


def _draw_chunk(s, patterns, b: int, c: int, labels: np.ndarray) -> np.ndarray:
    """Chunk ``c`` of batch ``b`` (``b`` = 0 for val_data, 1.. for train): its own seed."""
    rng = np.random.default_rng([s["seed"], b, c])
    return make_images_fast(rng, patterns, labels, s["noise"])


def make_images_fast(
    rng: np.random.Generator, patterns: np.ndarray, labels: np.ndarray, noise: float
) -> np.ndarray:
    """The images of :func:`make_images` (same recipe: two class patterns blended, rescaled,
    noised, shifted) in float32, with uniform pixel noise of the same standard deviation, and
    the shift applied last to the uint8 image (it commutes with the per-image gain and bias;
    i.i.d. noise stays i.i.d.): ~4x faster, other bytes. Used by the streaming writer."""
    n = len(labels)
    L, side = patterns.shape[0], patterns.shape[1]
    p = patterns if patterns.dtype == np.float32 else patterns.astype(np.float32)
    other = (labels + rng.integers(1, L, size=n)) % L
    w = rng.uniform(0.0, 0.45, size=(n, 1, 1, 1)).astype(np.float32)
    shift = rng.integers(-side // 16, side // 16 + 1, size=(n, 2))
    x = p[labels]
    x *= 1 - w
    x += w * p[other]
    gain = rng.uniform(0.6, 1.3, size=(n, 1, 1, 1)).astype(np.float32)
    bias = rng.uniform(-40, 40, size=(n, 1, 1, 3)).astype(np.float32)
    x -= 128
    x *= gain
    x += 128 + bias
    u = rng.random(size=x.shape, dtype=np.float32)
    u -= 0.5
    u *= np.float32(noise * 12**0.5)  # uniform, standard deviation ``noise``
    x += u
    del u
    np.rint(x, out=x)
    np.clip(x, 0, 255, out=x)
    y = x.astype(np.uint8)
    del x
    out = np.empty_like(y)
    key = shift[:, 0] * (side + 1) + shift[:, 1]
    for k in np.unique(key):
        sel = np.flatnonzero(key == k)
        out[sel] = np.roll(y[sel], tuple(int(v) for v in shift[sel[0]]), axis=(1, 2))
    return out


class _LazyImages:
    """A batch's images as :func:`plant` sees them: reading row i draws i's chunk, writing a
    row records it; the rows written are applied when the batch is written."""

    def __init__(self, draw, labels: np.ndarray, chunk: int):
        self.draw, self.labels, self.chunk = draw, labels.copy(), chunk  # labels before flips
        self.written: dict[int, np.ndarray] = {}

    def __getitem__(self, i) -> np.ndarray:
        i = int(i)
        if i in self.written:
            return self.written[i]
        c = i // self.chunk
        return self.draw(c, self.labels[c * self.chunk : (c + 1) * self.chunk])[i % self.chunk]

    def __setitem__(self, i, value) -> None:
        self.written[int(i)] = np.asarray(value, dtype=np.uint8).copy()

    def block(self, c: int) -> np.ndarray:
        """Chunk ``c`` with the plants applied: (n, S, S, 3) uint8."""
        lo = c * self.chunk
        imgs = self.draw(c, self.labels[lo : lo + self.chunk])
        for i, v in self.written.items():
            if lo <= i < lo + len(imgs):
                imgs[i - lo] = v
        return imgs


def _plan(cfg: dict[str, Any], chunk: int):
    """Labels, lazy images and plants of every batch (no image held): {name: (lazy, labels)}."""
    s = cfg["synthetic"]
    rng = np.random.default_rng(s["seed"])
    patterns = class_patterns(rng, s["labels"], s["image_size"], s["separation"])
    patterns = patterns.astype(np.float32)
    L, per = s["labels"], s["images_per_label"]
    c, r, k = module_layout(cfg, L)
    batches: dict[str, tuple[_LazyImages, np.ndarray]] = {}

    def batch(b: int, n_per: int):
        labels = np.repeat(np.arange(L), n_per)
        labels = labels[rng.permutation(len(labels))]
        draw = lambda ci, lab, b=b: _draw_chunk(s, patterns, b, ci, lab)  # noqa: E731
        return _LazyImages(draw, labels, chunk), labels

    for b in range(1, s["batches"] + 1):
        batches[f"train_data_batch_{b}"] = batch(b, per)
    planted = plant(rng, batches, cfg, k, c, r, "synthetic")
    if s["validation_per_label"] > 0:
        batches["val_data"] = batch(0, s["validation_per_label"])
    return batches, planted


def generate_chunked(
    cfg: dict[str, Any], chunk: int = CHUNK
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[dict]]:
    """The data set :func:`write_streaming` writes, drawn in memory: {name: (images, labels)}."""
    lazy, planted = _plan(cfg, chunk)
    out = {}
    for name, (imgs, labels) in lazy.items():
        n = len(labels)
        out[name] = (
            np.concatenate([imgs.block(ci) for ci in range(-(-n // chunk))]),
            labels,
        )
    return out, planted


def write_streaming(cfg: dict[str, Any], out_dir: Path, chunk: int = CHUNK) -> list[Path]:
    """Write the data set of :func:`generate_chunked` one batch at a time (the batch's uint8
    planes, about ``12,288 x images`` bytes at 64 px, is the largest thing held); a batch whose
    bytes are unchanged keeps its file and mtime."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = cfg["synthetic"]
    batches, planted = _plan(cfg, chunk)
    side = s["image_size"]
    written = []
    for name, (imgs, labels) in batches.items():
        n = len(labels)
        data = np.empty((n, 3 * side * side), dtype=np.uint8)
        for ci in range(-(-n // chunk)):
            data[ci * chunk : (ci + 1) * chunk] = to_planes(imgs.block(ci))
        d = {"data": data, "labels": [int(v) + 1 for v in labels]}
        if name.startswith("train"):
            d["mean"] = data.mean(axis=0)
        path = out_dir / name
        _dump_if_changed(path, d)
        del d, data
        written.append(path)
        log.info("synthetic (streamed): %s, %d images", name, n)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=PLANTED_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(planted)
    write_text(out_dir / "planted.csv", buf.getvalue())
    log.info(
        "synthetic: %d batches, %d labels, %d planted pairs -> %s (streamed)",
        len(batches),
        s["labels"],
        len(planted),
        out_dir,
    )
    return written


def _dump_if_changed(path: Path, obj: Any) -> None:
    """Pickle straight to a file (protocol 5 writes an array's buffer without copying it);
    keep the old file (and its mtime) when the bytes are the same."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(obj, fh, protocol=5)
    if path.exists() and filecmp.cmp(tmp, path, shallow=False):
        tmp.unlink()
    else:
        os.replace(tmp, path)


def synthesize_arguments(p: argparse.ArgumentParser) -> None:
    settings_arguments(p)
    p.add_argument("--out", required=True, help="folder to write the batches and planted.csv into")


def synthesize_main(args: argparse.Namespace) -> int:
    write(settings_from_args(args), Path(args.out))
    return 0
