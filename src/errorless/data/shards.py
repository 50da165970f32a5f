"""Modularize (docs/method.md#modules-and-submodules): one shard per (module, submodule).

Module j (1..k) holds labels [(j-1)c, jc). Within it, the images of each label, in the stable
order (source batch, row), are cut into r contiguous parts of floor(n/r) images (the last
takes the rest); part s of every label forms submodule s. So every submodule holds every
label of its module whatever the layout of the source batches (one file, or batches that each
hold a few labels), and every image lies in exactly one shard. A label with fewer than r
images lies wholly in the last submodule (docs/method.md#modules-and-submodules).
Inside a shard the images keep the module's order (source batch, label, row).
A shard whose content did not change is not rewritten (same bytes, same mtime), so a
change to one module's data re-trains only that module.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from errorless.config import module_names, settings_arguments, settings_from_args, submodule_names
from errorless.data import datasets
from errorless.errors import ConfigError, DataError
from errorless.io import write_npz, write_text
from errorless.names import image_ids, shard_name, submodule_name

log = logging.getLogger(__name__)
KEYS = (
    "images",
    "labels",
    "batch",
    "row",
    "ids",
    "module",
    "submodule",
    "label_lo",
    "label_hi",
    "num_labels",
)


@dataclass
class Shard:
    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray  # int64 (N,), global 0-based
    batch: np.ndarray  # str (N,)
    row: np.ndarray  # int64 (N,)
    ids: np.ndarray  # str (N,)
    module: int  # 1-based j
    submodule: int  # 1-based s
    label_lo: int  # the module's smallest label
    label_hi: int  # its largest label + 1
    num_labels: int
    # the module's global labels, sorted (local label k = module_labels[k]); contiguous modules
    # [label_lo, label_hi), a label group's (modules.groups) otherwise
    module_labels: np.ndarray | None = None
    num_modules: int | None = None  # K (stored with groups; else L / c)

    def __post_init__(self):
        if self.module_labels is None:
            self.module_labels = np.arange(self.label_lo, self.label_hi, dtype=np.int64)
        if self.num_modules is None:
            self.num_modules = self.num_labels // (self.label_hi - self.label_lo)

    @property
    def n_labels(self) -> int:
        """c of this module (modules of label groups differ in size)."""
        return len(self.module_labels)

    @property
    def local_labels(self) -> np.ndarray:
        return local_of(self.module_labels, self.labels)

    @property
    def name(self) -> str:
        return shard_name(
            module_names(self.num_modules)[self.module - 1], submodule_name(self.submodule)
        )


def local_of(module_labels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Global labels -> positions in the module's sorted ``module_labels`` (-1 where absent)."""
    module_labels = np.asarray(module_labels, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    pos = np.searchsorted(module_labels, labels)
    pos = np.minimum(pos, len(module_labels) - 1)
    return np.where(module_labels[pos] == labels, pos, -1)


def module_index(c, L: int) -> np.ndarray:
    """The 0-based module of every label: from ``c`` labels per module (contiguous) or ``c``
    itself when it is already that array."""
    if np.ndim(c) == 0:
        num_modules(L, int(c))  # L divisible by c, or the one-line error
        return np.arange(L, dtype=np.int64) // int(c)
    return np.asarray(c, dtype=np.int64)


def num_modules(num_labels: int, labels_per_module: int) -> int:
    if num_labels % labels_per_module:
        raise ConfigError(
            f"config key modules.labels_per_module: {num_labels} labels cannot be split into "
            f"modules of {labels_per_module} (L must be divisible by labels_per_module)"
        )
    return num_labels // labels_per_module


def assign(
    labels: np.ndarray, batch_index: np.ndarray, row: np.ndarray, c, r: int, L: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (order, module, submodule): the images sorted by (module, batch, label, row) and
    each sorted image's 0-based module and submodule. ``c``: labels per module (contiguous
    modules) or the 0-based module of every label, int64 (L,) (``grid.ModulePlan.module_of``).

    Submodule: the image's position among the images of its label in (batch, row) order,
    cut into r parts of floor(n/r) (the last takes the rest; all in the last when n < r)."""
    module_of = module_index(c, L)
    k = int(module_of.max()) + 1
    module = module_of[labels]
    order = np.lexsort((row, labels, batch_index, module))  # last key is primary
    mod_sorted = module[order]
    counts = np.bincount(mod_sorted, minlength=k)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        j = int(empty[0])
        held = np.flatnonzero(module_of == j)
        raise DataError(
            f"module {module_names(k)[j]} (labels {held[0]}..{held[-1]}) has no images; "
            f"{len(empty)} of {k} modules are empty (wrong dataset.labels or labels_per_module?)"
        )
    by_label = np.lexsort((row, batch_index, labels))  # each label's images in (batch, row)
    n_label = np.bincount(labels, minlength=L)
    first = np.concatenate([[0], np.cumsum(n_label)[:-1]])
    y = labels[by_label]
    pos = np.arange(len(labels)) - first[y]  # position among the images of its label
    size = n_label[y] // r  # part size; 0 when the label has fewer than r images
    part = np.empty(len(labels), dtype=np.int64)
    part[by_label] = np.where(size > 0, np.minimum(pos // np.maximum(size, 1), r - 1), r - 1)
    part = part[order]
    filled = np.bincount(mod_sorted * r + part, minlength=k * r).reshape(k, r)
    if (filled == 0).any():
        j, s = map(int, np.argwhere(filled == 0)[0])
        raise DataError(
            f"module {module_names(k)[j]} has no image for submodule {submodule_name(s + 1)}: "
            f"its labels have fewer than {r} images each ({counts[j]} images in all); "
            f"lower modules.submodules"
        )
    return order, mod_sorted, part


def modularize(cfg: dict[str, Any], out_dir: Path) -> list[dict[str, Any]]:
    """Write every shard (only those whose content changed) and return the manifest rows.

    Streams: one source batch at a time is read and its images are appended, per module, to a
    spill file (in the shards' sorted order, since batches are read in order); then one module
    at a time is read back and cut into its shards. Memory: about one batch plus one module,
    not the training set (ImageNet64: ~1.6 GB a batch, ~0.4 GB a module of 25 labels)."""
    from errorless.grid import module_plan

    t0 = time.time()
    r = cfg["modules"]["submodules"]
    plan = module_plan(cfg)
    grouped = bool(cfg["modules"].get("groups"))
    names = datasets.train_batches(cfg)
    spill = out_dir / ".spill"
    created = out_dir  # the topmost folder this run creates: a failed run leaves none behind
    while not created.parent.exists():
        created = created.parent
    created = None if out_dir.exists() else created
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir(parents=True)
    try:
        module_of = plan.module_of()
        meta, shape, L = _spill_batches(cfg, names, spill, module_of)
        labels, batch_index, row, batch, ids = meta
        if L != plan.labels:
            raise DataError(f"the data has {L} labels, the module plan {plan.labels}")
        k = len(plan.modules)
        order, mod, part = assign(labels, batch_index, row, module_of, r, L)
        starts = np.concatenate([[0], np.cumsum(np.bincount(mod, minlength=k))])
        rows = []
        for j, mname in enumerate(module_names(k)):
            held = plan.modules[j]
            lo, hi = int(held[0]), int(held[-1]) + 1
            # the spill file of module j holds its images in sorted order: (batch, label, row)
            images = np.fromfile(spill / f"{j}.u8", dtype=np.uint8).reshape(-1, *shape)
            os.unlink(spill / f"{j}.u8")
            module_part = part[starts[j] : starts[j + 1]]
            for s, sname in enumerate(submodule_names(r)):
                mine = np.flatnonzero(module_part == s)  # positions in the module, in order
                sel = order[starts[j] + mine]
                arrays = {
                    "images": images[mine],
                    "labels": labels[sel],
                    "batch": batch[sel],
                    "row": row[sel],
                    "ids": ids[sel],
                    "module": np.int64(j + 1),
                    "submodule": np.int64(s + 1),
                    "label_lo": np.int64(lo),
                    "label_hi": np.int64(hi),
                    "num_labels": np.int64(L),
                }
                if grouped:  # contiguous shards keep their bytes (no retraining after an update)
                    arrays["module_labels"] = np.asarray(held, dtype=np.int64)
                    arrays["num_modules"] = np.int64(k)
                path = out_dir / f"{mname}_{sname}.npz"
                changed = not _same(path, arrays)
                if changed:
                    write_npz(path, **arrays)
                rows.append(
                    dict(
                        module=mname,
                        submodule=sname,
                        images=len(sel),
                        label_lo=lo,
                        label_hi=hi,
                        changed=changed,
                        path=str(path),
                    )
                )
            del images
    finally:
        shutil.rmtree(spill, ignore_errors=True)
        if created is not None and not any(p.is_file() for p in created.rglob("*")):
            shutil.rmtree(created, ignore_errors=True)
    n_changed = sum(r_["changed"] for r_ in rows)
    log.info(
        "%d images -> %d shards (%d written, %d unchanged) in %.1f s",
        len(labels),
        len(rows),
        n_changed,
        len(rows) - n_changed,
        time.time() - t0,
    )
    return rows


def _spill_batches(cfg: dict[str, Any], names: list[str], spill: Path, module_of: np.ndarray):
    """Read the source batches in order; append each batch's images of module j, sorted by
    (label, row), to ``spill/{j}.u8``. Returns the per-image metadata in source order
    (labels, batch index, row, batch name, id), the image shape and L."""
    labels, batch_index, row, batch, given = [], [], [], [], []
    shape = L = None
    for b, name in enumerate(names):
        t = time.time()
        s = datasets.load_batch(cfg, name, contiguous=False)
        if shape is None:
            shape, L = s.images.shape[1:], s.num_labels
        elif s.images.shape[1:] != shape:
            raise DataError(
                f"source batches have different image shapes: {names[0]} {tuple(shape)}, "
                f"{name} {tuple(s.images.shape[1:])}"
            )
        module = module_of[s.labels]
        within = np.lexsort((s.row, s.labels, module))  # by module, then label, then row
        bounds = np.searchsorted(module[within], np.arange(module.max() + 2))
        for j in np.flatnonzero(np.diff(bounds)):
            with open(spill / f"{j}.u8", "ab") as fh:
                fh.write(np.ascontiguousarray(s.images[within[bounds[j] : bounds[j + 1]]]).data)
        labels.append(s.labels)
        batch_index.append(np.full(len(s), b, dtype=np.int64))
        row.append(s.row)
        batch.append(s.batch.astype(str))
        given.append(s.names)
        log.info("%s: %d images read and spilled in %.1f s", name, len(s), time.time() - t)
        del s
    sizes = np.cumsum([len(r_) for r_ in row])  # images per batch, cumulated
    labels, batch_index, row, batch = (np.concatenate(a) for a in (labels, batch_index, row, batch))
    # ids as ImageSet.ids / imageset.concat make them (the same strings and dtype as before)
    if any(g is not None for g in given):
        parts = np.split(np.arange(len(labels)), sizes[:-1])
        ids = np.concatenate(
            [
                g if g is not None else image_ids(batch[p], row[p])
                for g, p in zip(given, parts, strict=True)
            ]
        )
    else:
        ids = image_ids(batch, row)
    return (labels, batch_index, row, batch, ids.astype(str)), shape, L


def _same(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    if not path.exists():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            if set(z.files) != set(arrays):
                return False
            return all(
                np.array_equal(z[k], v) and z[k].dtype == np.asarray(v).dtype
                for k, v in arrays.items()
            )
    except Exception:  # unreadable old shard: rewrite it
        return False


def load_shard(path: str | Path) -> Shard:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: shard missing (run the modularize step)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path}: not a shard, missing keys {missing}")
            d = {k: z[k] for k in KEYS}
            extra = {k: z[k] for k in ("module_labels", "num_modules") if k in z.files}
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: unreadable shard (truncated or corrupt?): {e}") from None
    return Shard(
        images=d["images"],
        labels=d["labels"].astype(np.int64),
        batch=d["batch"],
        row=d["row"],
        ids=d["ids"],
        module=int(d["module"]),
        submodule=int(d["submodule"]),
        label_lo=int(d["label_lo"]),
        label_hi=int(d["label_hi"]),
        num_labels=int(d["num_labels"]),
        module_labels=extra.get("module_labels"),
        num_modules=int(extra["num_modules"]) if "num_modules" in extra else None,
    )


MANIFEST_COLUMNS = ("module", "submodule", "images", "label_lo", "label_hi", "changed", "path")


def write_manifest(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """``manifest.tsv``: one row per shard (:data:`MANIFEST_COLUMNS`), written atomically."""
    lines = ["\t".join(MANIFEST_COLUMNS)]
    lines += ["\t".join(str(r[k]) for k in MANIFEST_COLUMNS) for r in rows]
    write_text(path, "\n".join(lines) + "\n")


def manifest_shards(manifest: str | Path) -> dict[str, Path]:
    """The shards of a run, by name (``m01_s1`` ...), as ``manifest.tsv`` lists them.

    The manifest, not the folder, is the set of shards: a shard left from an earlier grid (e.g.
    before ``modules.labels_per_module`` changed) is not part of the run. A relative path is
    taken from the working folder, else from the manifest's folder."""
    import pandas as pd

    manifest = Path(manifest)
    if not manifest.is_file():
        raise DataError(f"{manifest}: shard manifest missing (run the modularize step)")
    try:
        df = pd.read_csv(manifest, sep="\t", dtype=str)
    except Exception as e:
        raise DataError(f"{manifest}: unreadable shard manifest: {e}") from None
    missing = {"module", "submodule", "path"} - set(df.columns)
    if missing or df.empty:
        why = f"columns {sorted(missing)} missing" if missing else "no shards listed"
        raise DataError(f"{manifest}: not a shard manifest ({why}); rerun the modularize step")
    out: dict[str, Path] = {}
    for m, s, path in zip(df["module"], df["submodule"], df["path"], strict=True):
        p = Path(path)
        if not p.is_absolute() and not p.exists():
            p = manifest.parent / p.name
        out[shard_name(m, s)] = p
    return dict(sorted(out.items()))


# ---------------------------------------------------------------- CLI


def modularize_arguments(p: argparse.ArgumentParser) -> None:
    settings_arguments(p)
    p.add_argument("--out", required=True, help="folder of the shards")
    p.add_argument("--manifest", required=True, help="manifest TSV written last")


def modularize_main(args: argparse.Namespace) -> int:
    cfg = settings_from_args(args)
    rows = modularize(cfg, Path(args.out))
    write_manifest(args.manifest, rows)
    for r in rows:
        log.info(
            "%s_%s: %d images, labels %d..%d%s",
            r["module"],
            r["submodule"],
            r["images"],
            r["label_lo"],
            r["label_hi"] - 1,
            "" if r["changed"] else " (unchanged)",
        )
    return 0
