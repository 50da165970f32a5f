"""The double-labelling report of SPEC §8.

Evidence combined per suspect (one report row per suspect pair or group):

* ``exact_duplicate`` / ``near_duplicate``: pairs from ``duplicates.parquet`` (whole data set,
  one feature). Every exact group that holds more than one label is one row (all its ids);
  every near pair is one row.
* ``conflict``: groups of identical inputs with different labels found by the training jobs'
  pre-check (SPEC §6.6; ``conflicts`` of the T records in ``training.parquet``). A conflict
  whose ids all lie in one exact-duplicate row marks that row; otherwise it is a row of its own.
* ``residual``: an image a T-FNN could not fit (in ``residual_ids`` or in a conflict of some
  T record; conflicts count as residual errors, SPEC §6.6). ``n_features_failed`` = the number
  of features of the same (proto, module, submodule) whose T-FNN failed on the image (max
  over the row's images and the T protos), out of ``n_features`` trained there. Residual
  images that are in no duplicate/conflict row are rows of their own (group_size 1).

Ranking score (higher = more suspicious, at most 5)::

    score = D + R
    D = 3                      exact duplicate or pre-check conflict
      = 1 + (1 - d / t)        near duplicate at distance d (t = near_threshold), in (1, 2]
      = 0                      otherwise
    R = 1 + failed / features  residual (failed = n_features_failed, features = n_features), in (1, 2]
      = 0                      otherwise

so exact+residual (4..5) ranks above exact alone (3), near+residual (2..4), near alone or
residual alone (1..2). Ties: more failed features, smaller distance, then ids.

Planted-truth check (synthetic data): a report row of two or more images is **correct**
when every one of its images belongs to a planted pair whose two images are both in the row
(for a pair row: its id set equals a plant's id set). A plant is **found** when some report
row contains both of its images. Precision = correct rows / reported rows, recall = found
plants / plants, per kind and overall. A row's kind is ``near`` when its only duplicate
evidence is near; otherwise ``same_shard`` (all images in one shard), ``cross_module``
(images in two or more modules) or ``cross_submodule`` (one module, several submodules: not
a planted kind, counted in the overall line only). Residual-only rows (one image) are not
pairs; they are counted in the ``residual_only`` line and in no precision.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import proto_names, settings_arguments, settings_from_args
from .datasets import GENERATED
from .errors import DataError
from .io import atomic_path, write_parquet, write_text

log = logging.getLogger(__name__)

EVIDENCE_ORDER = ("exact_duplicate", "near_duplicate", "conflict", "residual")
PLANT_KINDS = ("same_shard", "cross_module", "near")
PLANT_COLUMNS = ["kind", "id_a", "label_a", "id_b", "label_b", "module_a", "submodule_a",
                 "module_b", "submodule_b"]
CHECK_COLUMNS = ["kind", "planted", "found", "reported", "correct", "precision", "recall",
                 "flagged_by_training", "note"]
DETAIL_COLUMNS = ["kind", "id_a", "id_b", "found", "rank", "evidence", "flagged_by_training"]


def report_schema():
    import pyarrow as pa

    s, i, f = pa.string(), pa.int64(), pa.float64()
    return pa.schema([
        ("rank", i), ("score", f), ("evidence", s), ("group_size", i), ("ids", s), ("labels", s),
        ("id_a", s), ("batch_a", s), ("row_a", i), ("label_a", i), ("module_a", s), ("submodule_a", s),
        ("id_b", s), ("batch_b", s), ("row_b", i), ("label_b", i), ("module_b", s), ("submodule_b", s),
        ("distance", f), ("n_features_failed", i), ("n_features", i), ("fnn_failed", s),
    ])


REPORT_COLUMNS = [name for name in report_schema().names]


# ---------------------------------------------------------------- training evidence


def _as_name(v: Any, prefix: str, width: int = 2) -> str:
    """'m01'/'s1' whether stored as the name or as a 1-based int (modules zero-padded)."""
    if isinstance(v, str):
        return v
    return f"{prefix}{int(v):0{width}d}" if prefix == "m" else f"{prefix}{int(v)}"


def _module_width(values: pd.Series) -> int:
    ints = [int(v) for v in values if not isinstance(v, str)]
    return max(2, len(str(max(ints)))) if ints else 2


def _conflict_groups(v: Any) -> list[tuple[list[str], list[int]]]:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return []
    if isinstance(v, str):
        v = json.loads(v) if v.strip() else []
    out = []
    for g in list(v):
        ids = [str(i) for i in list(g["ids"])]
        labels = [int(label) for label in list(g["labels"])]
        out.append((ids, labels))
    return out


def _list(v: Any) -> list:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return []
    return list(v)


@dataclass
class TrainingEvidence:
    """Per image: which T-FNNs failed on it; the conflict groups; where each image lives."""

    failed: dict[str, set[str]] = field(default_factory=dict)  # id -> {"proto/feature/m01_s1"}
    n_failed: dict[str, int] = field(default_factory=dict)  # id -> max features failed
    n_features: dict[str, int] = field(default_factory=dict)  # id -> features trained there
    shard_features: dict[tuple[str, str], int] = field(default_factory=dict)  # (m, s) -> features
    residual_ids: set[str] = field(default_factory=set)  # residual_ids only (no conflicts)
    conflicts: dict[frozenset, tuple[list[str], list[int]]] = field(default_factory=dict)
    label: dict[str, int] = field(default_factory=dict)
    shard: dict[str, tuple[str, str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def read_training(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{path}: training table missing (run the gather step)")
    try:
        df = pd.read_parquet(path)
    except Exception as e:
        raise DataError(f"{path}: unreadable training table: {e}") from None
    need = {"proto", "method", "feature", "module", "submodule", "residual_ids"}
    lack = sorted(need - set(df.columns))
    if lack:
        raise DataError(f"{path}: training table lacks column(s) {lack}")
    return df


def expected_fnns(cfg: dict[str, Any], shard_names: list[str]) -> set[tuple[str, str, str, str]]:
    """(proto, feature, module, submodule) of every T-FNN the config asks for."""
    if not cfg["gdt"]["enabled"]:
        return set()
    out = set()
    for p in proto_names(cfg):
        for f in cfg["features"]:
            for name in shard_names:
                m, s = name.split("_")
                out.add((f"T_{p}", f, m, s))
    return out


def training_evidence(
    df: pd.DataFrame, expected: set[tuple[str, str, str, str]] | None = None, source: str = ""
) -> TrainingEvidence:
    ev = TrainingEvidence()
    t = df[df["method"] == "T"]
    have = set()
    per_shard: dict[tuple[str, str, str], set[str]] = defaultdict(set)  # (proto, m, s) -> features
    per_image: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)  # (proto, m, s, id) -> features
    width = _module_width(t["module"])
    for rec in t.to_dict("records"):
        m, s = _as_name(rec["module"], "m", width), _as_name(rec["submodule"], "s")
        proto, feat = str(rec["proto"]), str(rec["feature"])
        have.add((proto, feat, m, s))
        per_shard[(proto, m, s)].add(feat)
        ids = [str(i) for i in _list(rec.get("residual_ids"))]
        labs = _list(rec.get("residual_labels"))
        ev.residual_ids.update(ids)
        for k, i in enumerate(ids):
            if k < len(labs):
                ev.label[i] = int(labs[k])
        failing = set(ids)
        for cids, clabs in _conflict_groups(rec.get("conflicts")):
            ev.conflicts.setdefault(frozenset(cids), (cids, clabs))
            failing.update(cids)
            for i, lab in zip(cids, clabs, strict=False):
                ev.label[i] = lab
        for i in failing:
            per_image[(proto, m, s, i)].add(feat)
            ev.shard[i] = (m, s)
            ev.failed.setdefault(i, set()).add(f"{proto}/{feat}/{m}_{s}")
    for (_, m, s), feats in per_shard.items():
        ev.shard_features[(m, s)] = max(ev.shard_features.get((m, s), 0), len(feats))
    for (proto, m, s, i), feats in per_image.items():
        n, tot = len(feats), len(per_shard[(proto, m, s)])
        if n > ev.n_failed.get(i, 0) or (n == ev.n_failed.get(i, 0) and tot > ev.n_features.get(i, 0)):
            ev.n_failed[i], ev.n_features[i] = n, tot
    if expected:
        ev.missing = sorted("/".join(k[:2]) + f"/{k[2]}_{k[3]}" for k in expected - have)
    return ev


# ---------------------------------------------------------------- combining


@dataclass
class Suspect:
    ids: list[str]
    evidence: set[str]
    distance: float = float("nan")


def read_duplicates(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{path}: duplicates table missing (run `errorless duplicates`)")
    try:
        return pd.read_parquet(path)
    except Exception as e:
        raise DataError(f"{path}: unreadable duplicates table: {e}") from None


def combine(
    dups: pd.DataFrame, ev: TrainingEvidence, near_threshold: float
) -> pd.DataFrame:
    """All evidence -> the report table (REPORT_COLUMNS), sorted by score."""
    label: dict[str, int] = dict(ev.label)
    shard: dict[str, tuple[str, str]] = dict(ev.shard)
    for side in ("a", "b"):
        for i, lab, m, s in zip(dups[f"id_{side}"], dups[f"label_{side}"], dups[f"module_{side}"],
                                dups[f"submodule_{side}"], strict=True):
            label[str(i)] = int(lab)
            shard[str(i)] = (str(m), str(s))
    suspects: list[Suspect] = []
    exact = dups[dups["kind"] == "exact"]
    member_of: dict[str, int] = {}
    for _, g in exact.groupby("group", sort=True):
        ids = list(dict.fromkeys(list(g["id_a"]) + list(g["id_b"])))
        for i in ids:
            member_of[i] = len(suspects)
        suspects.append(Suspect(sorted(ids, key=_id_key), {"exact_duplicate"}, 0.0))
    for key, (cids, _) in sorted(ev.conflicts.items(), key=lambda kv: sorted(kv[1][0])):
        homes = {member_of.get(i) for i in cids}
        if len(homes) == 1 and None not in homes:
            suspects[homes.pop()].evidence.add("conflict")
        else:
            suspects.append(Suspect(sorted(key, key=_id_key), {"conflict"}, 0.0))
    near = dups[dups["kind"] == "near"]
    for a, b, d in zip(near["id_a"], near["id_b"], near["distance"], strict=True):
        suspects.append(Suspect(sorted([str(a), str(b)], key=_id_key), {"near_duplicate"}, float(d)))
    covered = {i for s in suspects for i in s.ids}
    for i in sorted(ev.failed.keys() - covered, key=_id_key):
        suspects.append(Suspect([i], set()))
    rows = [_row(s, ev, label, shard, near_threshold) for s in suspects]
    return finish(pd.DataFrame(rows, columns=[c for c in REPORT_COLUMNS if c != "rank"]))


def _id_key(i: str) -> tuple[str, int]:
    batch, _, row = i.rpartition(":")
    return (batch, int(row)) if row.isdigit() else (i, -1)


def _split_id(i: str | None) -> tuple[str | None, int | None]:
    if i is None:
        return None, None
    batch, _, row = i.rpartition(":")
    return (batch, int(row)) if batch and row.isdigit() else (i, None)


def _row(s: Suspect, ev: TrainingEvidence, label: dict, shard: dict, thr: float) -> dict[str, Any]:
    failed = [i for i in s.ids if i in ev.failed]
    if failed:
        s.evidence.add("residual")
    n_failed = max((ev.n_failed.get(i, 0) for i in s.ids), default=0)
    if failed:  # features trained where the worst image lives
        n_feat = max(ev.n_features.get(i, 0) for i in s.ids if ev.n_failed.get(i, 0) == n_failed)
    else:  # features trained in the shards of the row's images
        n_feat = max((ev.shard_features.get(shard.get(i), 0) for i in s.ids), default=0)
    # the two images shown: the first image and the first one with another label
    a = s.ids[0]
    b = next((i for i in s.ids[1:] if label.get(i) != label.get(a)), s.ids[1] if len(s.ids) > 1 else None)
    score = _score(s.evidence, s.distance, n_failed, n_feat, thr)
    row: dict[str, Any] = {
        "score": score,
        "evidence": "+".join(e for e in EVIDENCE_ORDER if e in s.evidence),
        "group_size": len(s.ids),
        "ids": ";".join(s.ids),
        "labels": ";".join("" if label.get(i) is None else str(label[i]) for i in s.ids),
        "distance": s.distance,
        "n_features_failed": n_failed,
        "n_features": n_feat,
        "fnn_failed": ";".join(sorted(set().union(*(ev.failed.get(i, set()) for i in s.ids)))),
    }
    for side, i in (("a", a), ("b", b)):
        batch, r = _split_id(i)
        m, sub = shard.get(i, (None, None)) if i is not None else (None, None)
        row.update({f"id_{side}": i, f"batch_{side}": batch, f"row_{side}": r,
                    f"label_{side}": label.get(i) if i is not None else None,
                    f"module_{side}": m, f"submodule_{side}": sub})
    return row


def _score(evidence: set[str], distance: float, n_failed: int, n_features: int, thr: float) -> float:
    if evidence & {"exact_duplicate", "conflict"}:
        dup = 3.0
    elif "near_duplicate" in evidence:
        dup = 1.0 + (1.0 - min(distance / thr, 1.0) if thr > 0 else 0.0)
    else:
        dup = 0.0
    res = 1.0 + (n_failed / n_features if n_features else 0.0) if "residual" in evidence else 0.0
    return round(dup + res, 6)


def finish(df: pd.DataFrame) -> pd.DataFrame:
    """Sort by score, number the ranks, fix every column's dtype (also when empty)."""
    df = df.copy()
    if len(df):
        df["_d"] = df["distance"].fillna(np.inf)
        df = df.sort_values(["score", "n_features_failed", "_d", "ids"],
                            ascending=[False, False, True, True], kind="stable").drop(columns="_d")
    df.insert(0, "rank", np.arange(1, len(df) + 1, dtype=np.int64))
    for name, typ in zip(report_schema().names, report_schema().types, strict=True):
        if str(typ) == "int64":
            df[name] = pd.array(df[name].tolist() if len(df) else [], dtype="Int64")
            if name in ("rank", "group_size", "n_features_failed", "n_features"):
                df[name] = df[name].fillna(0).astype(np.int64)
        elif str(typ) == "double":
            df[name] = pd.to_numeric(df[name], errors="coerce").astype(np.float64)
        else:
            df[name] = df[name].astype(object).where(df[name].notna(), None)
    return df[REPORT_COLUMNS].reset_index(drop=True)


def write_report(df: pd.DataFrame, parquet: Path, csv: Path) -> None:
    import pyarrow as pa

    write_parquet(parquet, pa.Table.from_pandas(df, schema=report_schema(), preserve_index=False))
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False)


# ---------------------------------------------------------------- planted truth


def read_planted(path: Path) -> pd.DataFrame:
    try:
        p = pd.read_csv(path, dtype={"id_a": str, "id_b": str})
    except Exception as e:
        raise DataError(f"{path}: unreadable planted truth: {e}") from None
    lack = [c for c in ("kind", "id_a", "id_b") if c not in p.columns]
    if lack:
        raise DataError(f"{path}: planted truth lacks column(s) {lack}")
    return p


def _row_kind(evidence: str, modules: set[str], shards: set[tuple[str, str]]) -> str:
    if "exact_duplicate" not in evidence and "conflict" not in evidence:
        return "near" if "near_duplicate" in evidence else "residual_only"
    if len(shards) <= 1:
        return "same_shard"
    return "cross_module" if len(modules) > 1 else "cross_submodule"


def planted_check(
    report: pd.DataFrame, planted: pd.DataFrame, ev: TrainingEvidence
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary per kind + overall, one line per plant). See the module docstring."""
    plants = [(str(k), frozenset((str(a), str(b))))
              for k, a, b in zip(planted["kind"], planted["id_a"], planted["id_b"], strict=True)]
    rows = [(r["ids"].split(";"), r) for r in report.to_dict("records")]
    pair_rows = [(set(ids), r) for ids, r in rows if len(ids) >= 2]
    detail = []
    for (kind, ids), (_, pl) in zip(plants, planted.iterrows(), strict=True):
        hit = next((r for s, r in pair_rows if ids <= s), None)
        flagged = any(ids <= set(c) for c in ev.conflicts) or bool(ids & ev.residual_ids) \
            or bool(ids & set(ev.failed))
        detail.append({"kind": kind, "id_a": pl["id_a"], "id_b": pl["id_b"],
                       "found": hit is not None,
                       "rank": None if hit is None else int(hit["rank"]),
                       "evidence": None if hit is None else hit["evidence"],
                       "flagged_by_training": flagged})
    detail_df = pd.DataFrame(detail, columns=DETAIL_COLUMNS)
    detail_df["rank"] = detail_df["rank"].astype("Int64")
    judged = []
    for s, r in pair_rows:
        inside = [p for _, p in plants if p <= s]
        correct = bool(inside) and set().union(*inside) == s
        mods = {r[c] for c in ("module_a", "module_b") if r[c] is not None}
        shards = {(r[f"module_{x}"], r[f"submodule_{x}"]) for x in "ab" if r[f"module_{x}"] is not None}
        judged.append((_row_kind(r["evidence"], mods, shards), correct))
    out = []
    for kind in (*PLANT_KINDS, "overall"):
        sel = detail_df if kind == "overall" else detail_df[detail_df["kind"] == kind]
        rep = [c for k, c in judged if kind == "overall" or k == kind]
        planted_n, found_n, reported, correct = len(sel), int(sel["found"].sum()), len(rep), int(sum(rep))
        out.append({
            "kind": kind, "planted": planted_n, "found": found_n, "reported": reported,
            "correct": correct,
            "precision": correct / reported if reported else np.nan,
            "recall": found_n / planted_n if planted_n else np.nan,
            "flagged_by_training": int(sel["flagged_by_training"].sum()),
            "note": "",
        })
    n_single = sum(1 for ids, _ in rows if len(ids) < 2)
    other = sum(1 for k, _ in judged if k == "cross_submodule")
    out.append({"kind": "residual_only", "planted": 0, "found": 0, "reported": n_single, "correct": 0,
                "precision": np.nan, "recall": np.nan, "flagged_by_training": 0,
                "note": "single images a T-FNN could not fit; not pairs, in no precision"})
    if other:
        out[-2]["note"] = f"includes {other} cross_submodule row(s) (not a planted kind)"
    return pd.DataFrame(out, columns=CHECK_COLUMNS), detail_df


def no_ground_truth(reason: str) -> pd.DataFrame:
    return pd.DataFrame([{"kind": "overall", "planted": 0, "found": 0, "reported": 0, "correct": 0,
                          "precision": np.nan, "recall": np.nan, "flagged_by_training": 0,
                          "note": f"no ground truth: {reason}"}], columns=CHECK_COLUMNS)


# ---------------------------------------------------------------- figure


def _shard_names(shards: Path) -> list[str]:
    return sorted(p.stem for p in shards.glob("*.npz")) if shards.is_dir() else []


def fetch_images(shards: Path, ids: set[str]) -> dict[str, np.ndarray]:
    """Images by id from the shards (a shard is fully read only if it holds a wanted id)."""
    from .shards import load_shard

    out: dict[str, np.ndarray] = {}
    if not ids or not shards.is_dir():
        return out
    for p in sorted(shards.glob("*.npz")):
        try:
            with np.load(p, allow_pickle=False) as z:
                sid = z["ids"].astype(str)
        except Exception as e:
            log.warning("%s: cannot read ids (%s); its images are not shown", p, e)
            continue
        want = np.flatnonzero(np.isin(sid, list(ids - out.keys())))
        if len(want):
            sh = load_shard(p)
            for k in want.tolist():
                out[str(sid[k])] = sh.images[k]
        if len(out) == len(ids):
            break
    return out


def suspects_figure(report: pd.DataFrame, shards: Path, path: Path, top: int, per_row: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    show = report.head(top)
    if len(show) == 0:
        fig, ax = plt.subplots(figsize=(5, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no double-labelling suspects found" if top else "thumbnails: 0 (figure disabled)",
                ha="center", va="center", fontsize=12)
    else:
        groups = [(r, r["ids"].split(";")[:per_row], r["labels"].split(";")[:per_row])
                  for r in show.to_dict("records")]
        images = fetch_images(shards, {i for _, ids, _ in groups for i in ids})
        cols = max(len(ids) for _, ids, _ in groups)
        fig, axes = plt.subplots(len(groups), cols, figsize=(2.1 * cols + 1.6, 2.3 * len(groups)),
                                 squeeze=False)
        for k, (r, ids, labels) in enumerate(groups):
            for c in range(cols):
                ax = axes[k][c]
                ax.set_xticks([])
                ax.set_yticks([])
                if c >= len(ids):
                    ax.axis("off")
                    continue
                img = images.get(ids[c])
                if img is None:
                    ax.text(0.5, 0.5, "image\nnot found", ha="center", va="center", fontsize=8)
                else:
                    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img,
                              cmap="gray" if img.shape[-1] == 1 else None, interpolation="nearest")
                ax.set_title(f"label {labels[c]}\n{ids[c]}", fontsize=7)
            more = r["group_size"] - len(ids)
            axes[k][0].set_ylabel(
                f"#{r['rank']}  score {r['score']:.2f}\n" + r["evidence"].replace("+", "\n")
                + (f"\n(+{more} more)" if more > 0 else ""), fontsize=7)
        fig.suptitle("double-labelling suspects (top by score)", fontsize=10)
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------- CLI


def doublelabel_arguments(p: argparse.ArgumentParser) -> None:
    settings_arguments(p)
    p.add_argument("--results", help="results folder (default: config key results)")
    p.add_argument("--training", help="default {results}/training.parquet")
    p.add_argument("--duplicates", help="default {results}/quality/duplicates.parquet")
    p.add_argument("--shards", help="shard folder, for the thumbnails and the FNN grid (default {results}/shards)")
    p.add_argument("--planted", help="planted truth CSV (default: {dataset.path}/planted.csv for synthetic data)")
    p.add_argument("--out", help="report Parquet (default {results}/double_labeling.parquet)")
    p.add_argument("--csv", help="report CSV (default: --out with .csv)")
    p.add_argument("--figure", help="thumbnails PNG (default {results}/quality/suspects.png)")
    p.add_argument("--check", help="planted check CSV (default {results}/quality/planted_check.csv)")
    p.add_argument("--check-detail", help="per-plant CSV (default {results}/quality/planted_pairs.csv)")
    p.add_argument("--allow-missing", action="store_true",
                   help="warn (not fail) when training records of expected T-FNNs are missing")


def _planted_path(args: argparse.Namespace, cfg: dict[str, Any]) -> Path | None:
    if args.planted:
        return Path(args.planted)
    if cfg["dataset"]["format"] in GENERATED:
        return Path(cfg["dataset"]["path"]) / "planted.csv"
    return None


def doublelabel_main(args: argparse.Namespace) -> int:
    cfg = settings_from_args(args)
    results = Path(args.results or cfg["results"])
    training = Path(args.training) if args.training else results / "training.parquet"
    dup_path = Path(args.duplicates) if args.duplicates else results / "quality" / "duplicates.parquet"
    shards = Path(args.shards) if args.shards else results / "shards"
    out = Path(args.out) if args.out else results / "double_labeling.parquet"
    csv = Path(args.csv) if args.csv else out.with_suffix(".csv")
    figure = Path(args.figure) if args.figure else results / "quality" / "suspects.png"
    check = Path(args.check) if args.check else results / "quality" / "planted_check.csv"
    detail = Path(args.check_detail) if args.check_detail else check.with_name("planted_pairs.csv")

    df = read_training(training)
    width = _module_width(df["module"])
    shard_names = _shard_names(shards) or sorted(
        {f"{_as_name(m, 'm', width)}_{_as_name(s, 's')}" for m, s in zip(df["module"], df["submodule"], strict=True)})
    ev = training_evidence(df, expected_fnns(cfg, shard_names))
    if ev.missing:
        msg = (f"{training}: no training record for {len(ev.missing)} expected T-FNN(s) "
               f"(proto/feature/shard): {', '.join(ev.missing[:10])}"
               + (" ..." if len(ev.missing) > 10 else ""))
        if not args.allow_missing:
            raise DataError(msg)
        log.warning("%s", msg)
    if not cfg["gdt"]["enabled"]:
        log.warning("gdt.enabled is false: no T records, no residual evidence")
    dups = read_duplicates(dup_path)
    report = combine(dups, ev, cfg["double_labeling"]["near_threshold"])
    write_report(report, out, csv)
    suspects_figure(report, shards, figure, cfg["double_labeling"]["thumbnails"])

    planted = _planted_path(args, cfg)
    if planted is None:
        summary, plants = no_ground_truth("real data set (no planted.csv)"), None
    elif not planted.exists():
        if args.planted:
            raise DataError(f"{planted}: planted truth file (--planted) does not exist")
        summary, plants = no_ground_truth(f"{planted} does not exist"), None
    else:
        summary, plants = planted_check(report, read_planted(planted), ev)
    with atomic_path(check) as tmp:
        summary.to_csv(tmp, index=False)
    if plants is not None:
        with atomic_path(detail) as tmp:
            plants.to_csv(tmp, index=False)
    else:
        write_text(detail, ",".join(DETAIL_COLUMNS) + "\n")
    counts = report["evidence"].value_counts().to_dict()
    log.info("%d suspect row(s) %s -> %s", len(report), counts, out)
    for line in summary.to_dict("records"):
        log.info("planted check %s", {k: v for k, v in line.items() if not _blank(v)})
    return 0


def _blank(v: Any) -> bool:
    return v == "" or (isinstance(v, float) and np.isnan(v))

