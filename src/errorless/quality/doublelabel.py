"""The double-labelling report of docs/method.md#double-labelling-evidence.

A double label is about *images*: two images that are the same picture with different labels.
Evidence combined per suspect (one report row per suspect pair or group):

* ``exact_duplicate`` / ``near_duplicate``: image matches from ``duplicates.parquet`` (whole
  data set, on the images): every exact group that holds more than one label is one row (all
  its ids, ``kind`` exact); every near pair is one row (``kind`` near or mirrored) with its
  ``similarity`` (aligned correlation of the images, 1 = identical).
* ``conflict``: groups of identical *inputs of one feature* with different labels found by the
  training jobs' pre-check (docs/method.md#the-conflict-pre-check; ``conflicts`` of the T records
  in ``training.parquet``).
  A conflict whose ids all lie in one image-match row marks that row (the strongest evidence:
  the same picture, and no FNN can fit it). Otherwise the images differ and only that
  feature cannot tell them apart (a constant channel maps to zeros after centring; a blue and a
  green gradient share a shape): the row's evidence is ``indistinguishable`` and its kind says
  ``indistinguishable in feature G`` — an FNN that cannot fit, not a double-labelled image.
* ``residual``: an image a T-FNN could not fit (in ``residual_ids`` or in a conflict of some
  T record; conflicts count as residual errors, docs/method.md#the-conflict-pre-check).
  ``n_features_failed`` = the number
  of features of the same (proto, module, submodule) whose T-FNN failed on the image (max
  over the row's images and the T protos), out of ``n_features`` trained there. Residual
  images that are in no other row are rows of their own (group_size 1).
* ``gdt_budget``: an image left wrong by a T-FNN whose GDT stopped on its time or λ-step
  budget (status ``budget``): more budget may well fit it, so it is weak evidence, kept out of
  ``residual`` and ranked below everything else (docs/method.md#double-labelling-evidence).

Ranking score (higher = more suspicious, at most 5)::

    score = D + R
    D = 3                      exact image match (with or without a pre-check conflict)
      = 3                      near/mirrored match that is also a pre-check conflict
      = 1 + (s - t) / (1 - t)  near or mirrored match of similarity s (t = near_similarity), in [1, 2]
      = 0                      otherwise (indistinguishable in a feature, residual only)
    R = 1 + failed / features  residual (failed = n_features_failed, features = n_features), in (1, 2]
      = 0.5                    only budget leftovers (``gdt_budget``)
      = 0                      otherwise

Ties: more failed features, higher similarity, then ids.

Planted-truth check (synthetic and photos data): only rows with an image match
(``exact_duplicate`` or ``near_duplicate``) are reported pairs. A reported row is **correct**
when every one of its images belongs to a planted pair whose two images are both in the row.
A plant is **found** when some reported row contains both of its images. Per plant kind
(``same_shard``, ``cross_module``: exact copies; ``jpeg``, ``rescale``, ``crop``, ``shift``,
``flip``, ``brightness``, ``contrast``, ``combo``: near copies, see ``errorless.data.copies``):
recall = found / planted, and reported / correct count the rows holding a plant of that kind.
``overall``: precision = correct rows / every reported row — a row holding no plant counts
against it (also listed alone as ``not_planted``). ``indistinguishable`` and
``residual_only`` rows are counted on their own lines and in no precision.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from errorless.config import (
    proto_names,
    results_arguments,
    results_paths,
    settings_arguments,
    settings_from_args,
)
from errorless.data.datasets import GENERATED
from errorless.data.shards import manifest_shards
from errorless.errors import DataError
from errorless.grid import fnn_jobs
from errorless.io import atomic_path, write_parquet, write_text
from errorless.names import module_name, proto_name, shard_name, split_shard, submodule_name

log = logging.getLogger(__name__)

EVIDENCE_ORDER = (
    "exact_duplicate",
    "near_duplicate",
    "conflict",
    "indistinguishable",
    "residual",
    "gdt_budget",
)
BUDGET_STATUS = (
    "budget"  # gdt.BUDGET: a T-FNN that stopped on a budget with consistent images wrong
)
EXACT_PLANTS = ("same_shard", "cross_module")
CHECK_COLUMNS = [
    "kind",
    "planted",
    "found",
    "reported",
    "correct",
    "precision",
    "recall",
    "flagged_by_training",
    "note",
]
DETAIL_COLUMNS = [
    "kind",
    "id_a",
    "id_b",
    "found",
    "rank",
    "evidence",
    "match",
    "similarity",
    "flagged_by_training",
]


def report_schema():
    import pyarrow as pa

    s, i, f = pa.string(), pa.int64(), pa.float64()
    return pa.schema(
        [
            ("rank", i),
            ("score", f),
            ("evidence", s),
            ("group_size", i),
            ("ids", s),
            ("labels", s),
            ("id_a", s),
            ("batch_a", s),
            ("row_a", i),
            ("label_a", i),
            ("module_a", s),
            ("submodule_a", s),
            ("id_b", s),
            ("batch_b", s),
            ("row_b", i),
            ("label_b", i),
            ("module_b", s),
            ("submodule_b", s),
            ("kind", s),
            ("similarity", f),
            ("n_features_failed", i),
            ("n_features", i),
            ("fnn_failed", s),
        ]
    )


REPORT_COLUMNS = [name for name in report_schema().names]


# ---------------------------------------------------------------- training evidence


def _as_name(v: Any, prefix: str, width: int = 2) -> str:
    """'m01'/'s1' whether stored as the name or as a 1-based int (modules zero-padded)."""
    if isinstance(v, str):
        return v
    return module_name(int(v), width) if prefix == "m" else submodule_name(int(v))


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
    budget: dict[str, set[str]] = field(
        default_factory=dict
    )  # id -> T-FNNs that stopped on a budget
    conflicts: dict[frozenset, tuple[list[str], list[int]]] = field(default_factory=dict)
    conflict_features: dict[frozenset, set[str]] = field(
        default_factory=dict
    )  # features that could not tell them apart
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
    shards = [split_shard(name) for name in shard_names]
    return {
        (proto_name("T", model), f, m, s)
        for model, f, m, s in fnn_jobs(proto_names(cfg), cfg["features"], shards)
    }


def training_evidence(
    df: pd.DataFrame, expected: set[tuple[str, str, str, str]] | None = None, source: str = ""
) -> TrainingEvidence:
    ev = TrainingEvidence()
    t = df[df["method"] == "T"]
    have = set()
    per_shard: dict[tuple[str, str, str], set[str]] = defaultdict(set)  # (proto, m, s) -> features
    per_image: dict[tuple[str, str, str, str], set[str]] = defaultdict(
        set
    )  # (proto, m, s, id) -> features
    width = _module_width(t["module"])
    for rec in t.to_dict("records"):
        m, s = _as_name(rec["module"], "m", width), _as_name(rec["submodule"], "s")
        proto, feat = str(rec["proto"]), str(rec["feature"])
        have.add((proto, feat, m, s))
        per_shard[(proto, m, s)].add(feat)
        ids = [str(i) for i in _list(rec.get("residual_ids"))]
        labs = _list(rec.get("residual_labels"))
        for k, i in enumerate(ids):
            if k < len(labs):
                ev.label[i] = int(labs[k])
        conflict_groups = _conflict_groups(rec.get("conflicts"))
        if rec.get("status") == BUDGET_STATUS:  # leftovers of a budget stop: weak evidence, apart
            in_conflict = {i for cids, _ in conflict_groups for i in cids}
            for i in ids:
                if i not in in_conflict:
                    ev.budget.setdefault(i, set()).add(f"{proto}/{feat}/{shard_name(m, s)}")
                    ev.shard[i] = (m, s)
            ids = [i for i in ids if i in in_conflict]
        ev.residual_ids.update(ids)
        failing = set(ids)
        for cids, clabs in conflict_groups:
            ev.conflicts.setdefault(frozenset(cids), (cids, clabs))
            ev.conflict_features.setdefault(frozenset(cids), set()).add(feat)
            failing.update(cids)
            for i, lab in zip(cids, clabs, strict=False):
                ev.label[i] = lab
        for i in failing:
            per_image[(proto, m, s, i)].add(feat)
            ev.shard[i] = (m, s)
            ev.failed.setdefault(i, set()).add(f"{proto}/{feat}/{shard_name(m, s)}")
    for (_, m, s), feats in per_shard.items():
        ev.shard_features[(m, s)] = max(ev.shard_features.get((m, s), 0), len(feats))
    for (proto, m, s, i), feats in per_image.items():
        n, tot = len(feats), len(per_shard[(proto, m, s)])
        if n > ev.n_failed.get(i, 0) or (
            n == ev.n_failed.get(i, 0) and tot > ev.n_features.get(i, 0)
        ):
            ev.n_failed[i], ev.n_features[i] = n, tot
    if expected:
        ev.missing = sorted(f"{k[0]}/{k[1]}/{shard_name(k[2], k[3])}" for k in expected - have)
    return ev


# ---------------------------------------------------------------- combining


@dataclass
class Suspect:
    ids: list[str]
    evidence: set[str]
    kind: str | None = None  # exact | near | mirrored | "indistinguishable in feature …"
    similarity: float = float("nan")


def read_duplicates(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{path}: duplicates table missing (run `errorless duplicates`)")
    try:
        return pd.read_parquet(path)
    except Exception as e:
        raise DataError(f"{path}: unreadable duplicates table: {e}") from None


def combine(
    dups: pd.DataFrame,
    ev: TrainingEvidence,
    near_similarity: float,
    features: list[str] | None = None,
) -> pd.DataFrame:
    """All evidence -> the report table (REPORT_COLUMNS), sorted by score."""
    label: dict[str, int] = dict(ev.label)
    shard: dict[str, tuple[str, str]] = dict(ev.shard)
    for side in ("a", "b"):
        for i, lab, m, s in zip(
            dups[f"id_{side}"],
            dups[f"label_{side}"],
            dups[f"module_{side}"],
            dups[f"submodule_{side}"],
            strict=True,
        ):
            label[str(i)] = int(lab)
            shard[str(i)] = (str(m), str(s))
    suspects: list[Suspect] = []
    for _, g in dups[dups["kind"] == "exact"].groupby("group", sort=True):
        ids = list(dict.fromkeys(list(g["id_a"]) + list(g["id_b"])))
        suspects.append(Suspect(sorted(ids, key=_id_key), {"exact_duplicate"}, "exact", 1.0))
    near = dups[dups["kind"] != "exact"]
    for a, b, k, sim in zip(
        near["id_a"], near["id_b"], near["kind"], near["similarity"], strict=True
    ):
        suspects.append(
            Suspect(sorted([str(a), str(b)], key=_id_key), {"near_duplicate"}, str(k), float(sim))
        )
    order = {f: i for i, f in enumerate(features or [])}
    for key in sorted(ev.conflicts, key=sorted):
        homes = [s for s in suspects if "conflict" not in s.evidence and key <= set(s.ids)]
        homes = homes or [s for s in suspects if key <= set(s.ids)]
        if homes:  # the images themselves match: the strongest evidence
            homes[0].evidence.add("conflict")
        else:
            feats = sorted(
                ev.conflict_features.get(key, set()), key=lambda f: (order.get(f, len(order)), f)
            )
            what = f"indistinguishable in feature{'s' if len(feats) > 1 else ''} {', '.join(feats)}"
            suspects.append(Suspect(sorted(key, key=_id_key), {"indistinguishable"}, what))
    covered = {i for s in suspects for i in s.ids}
    for i in sorted(ev.failed.keys() - covered, key=_id_key):
        suspects.append(Suspect([i], set()))
    covered.update(ev.failed)
    for i in sorted(ev.budget.keys() - covered, key=_id_key):
        suspects.append(Suspect([i], set()))
    rows = [_row(s, ev, label, shard, near_similarity) for s in suspects]
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
    if any(i in ev.budget for i in s.ids):
        s.evidence.add("gdt_budget")
    n_failed = max((ev.n_failed.get(i, 0) for i in s.ids), default=0)
    if failed:  # features trained where the worst image lives
        n_feat = max(ev.n_features.get(i, 0) for i in s.ids if ev.n_failed.get(i, 0) == n_failed)
    else:  # features trained in the shards of the row's images
        n_feat = max((ev.shard_features.get(shard.get(i), 0) for i in s.ids), default=0)
    # the two images shown: the first image and the first one with another label
    a = s.ids[0]
    b = next(
        (i for i in s.ids[1:] if label.get(i) != label.get(a)), s.ids[1] if len(s.ids) > 1 else None
    )
    score = _score(s.evidence, s.similarity, n_failed, n_feat, thr)
    row: dict[str, Any] = {
        "score": score,
        "evidence": "+".join(e for e in EVIDENCE_ORDER if e in s.evidence),
        "group_size": len(s.ids),
        "ids": ";".join(s.ids),
        "labels": ";".join("" if label.get(i) is None else str(label[i]) for i in s.ids),
        "kind": s.kind,
        "similarity": s.similarity,
        "n_features_failed": n_failed,
        "n_features": n_feat,
        "fnn_failed": ";".join(
            sorted(set().union(*(ev.failed.get(i, set()) for i in s.ids)))
            + sorted({f"{f} (budget)" for i in s.ids for f in ev.budget.get(i, ())})
        ),
    }
    for side, i in (("a", a), ("b", b)):
        batch, r = _split_id(i)
        m, sub = shard.get(i, (None, None)) if i is not None else (None, None)
        row.update(
            {
                f"id_{side}": i,
                f"batch_{side}": batch,
                f"row_{side}": r,
                f"label_{side}": label.get(i) if i is not None else None,
                f"module_{side}": m,
                f"submodule_{side}": sub,
            }
        )
    return row


def _score(
    evidence: set[str], similarity: float, n_failed: int, n_features: int, thr: float
) -> float:
    if "exact_duplicate" in evidence or ("near_duplicate" in evidence and "conflict" in evidence):
        dup = 3.0
    elif "near_duplicate" in evidence:
        dup = 1.0 + (min(max((similarity - thr) / (1.0 - thr), 0.0), 1.0) if thr < 1 else 1.0)
    else:
        dup = 0.0
    res = (
        1.0 + (n_failed / n_features if n_features else 0.0)
        if "residual" in evidence
        else 0.5
        if "gdt_budget" in evidence
        else 0.0
    )
    return round(dup + res, 6)


def finish(df: pd.DataFrame) -> pd.DataFrame:
    """Sort by score, number the ranks, fix every column's dtype (also when empty)."""
    df = df.copy()
    if len(df):
        df["_s"] = df["similarity"].fillna(-np.inf)
        df = df.sort_values(
            ["score", "n_features_failed", "_s", "ids"],
            ascending=[False, False, False, True],
            kind="stable",
        ).drop(columns="_s")
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


def _is_match(evidence: str) -> bool:
    return "exact_duplicate" in evidence or "near_duplicate" in evidence


def planted_check(
    report: pd.DataFrame, planted: pd.DataFrame, ev: TrainingEvidence
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary per kind + overall, one line per plant). See the module docstring."""
    planted = planted[
        planted["kind"] != "label_flip"
    ]  # single-image label flips: errorless.quality.labelissues checks them
    plants = [
        (str(k), frozenset((str(a), str(b))))
        for k, a, b in zip(planted["kind"], planted["id_a"], planted["id_b"], strict=True)
    ]
    rows = [(r["ids"].split(";"), r) for r in report.to_dict("records")]
    pair_rows = [(set(ids), r) for ids, r in rows if len(ids) >= 2 and _is_match(r["evidence"])]
    detail = []
    for (kind, ids), (_, pl) in zip(plants, planted.iterrows(), strict=True):
        hit = next((r for s, r in pair_rows if ids <= s), None)
        flagged = (
            any(ids <= set(c) for c in ev.conflicts)
            or bool(ids & ev.residual_ids)
            or bool(ids & set(ev.failed))
        )
        detail.append(
            {
                "kind": kind,
                "id_a": pl["id_a"],
                "id_b": pl["id_b"],
                "found": hit is not None,
                "rank": None if hit is None else int(hit["rank"]),
                "evidence": None if hit is None else hit["evidence"],
                "match": None if hit is None else hit["kind"],
                "similarity": np.nan if hit is None else hit["similarity"],
                "flagged_by_training": flagged,
            }
        )
    detail_df = pd.DataFrame(detail, columns=DETAIL_COLUMNS)
    detail_df["rank"] = detail_df["rank"].astype("Int64")
    judged = []  # (plant kinds inside the row, correct)
    for s, _ in pair_rows:
        inside = [(k, p) for k, p in plants if p <= s]
        correct = bool(inside) and set().union(*(p for _, p in inside)) == s
        judged.append(({k for k, _ in inside}, correct))
    kinds = list(dict.fromkeys([*EXACT_PLANTS, *(k for k, _ in plants)]))
    out = []
    for kind in (*kinds, "overall"):
        sel = detail_df if kind == "overall" else detail_df[detail_df["kind"] == kind]
        rep = [c for k, c in judged if kind == "overall" or kind in k]
        planted_n, found_n, reported, correct = (
            len(sel),
            int(sel["found"].sum()),
            len(rep),
            int(sum(rep)),
        )
        note = ""
        if kind not in (*EXACT_PLANTS, "overall") and len(sel):
            matches = sel["match"].dropna().value_counts().to_dict()
            note = (
                "matched as " + ", ".join(f"{m} {n}" for m, n in matches.items()) if matches else ""
            )
        flagged = int(sel["flagged_by_training"].sum())
        out.append(check_row(kind, note, (planted_n, found_n, reported, correct), flagged))
    unplanted = sum(1 for k, _ in judged if not k)
    out[-1]["note"] = (
        f"precision counts every reported pair; {unplanted} reported row(s) hold no plant"
    )
    out.append(
        count_row(
            "not_planted",
            unplanted,
            "image matches that are not planted (false pairs, or copies in the data themselves)",
        )
    )
    n_indist = sum(1 for ids, r in rows if "indistinguishable" in r["evidence"])
    out.append(
        count_row(
            "indistinguishable",
            n_indist,
            "different images with identical inputs in one feature; not double labels, in no precision",
        )
    )
    n_budget = sum(1 for ids, r in rows if len(ids) < 2 and r["evidence"] == "gdt_budget")
    n_single = sum(1 for ids, _ in rows if len(ids) < 2) - n_budget
    out.append(
        count_row(
            "budget_only",
            n_budget,
            "single images left by a GDT that stopped on its budget; weak evidence, in no precision",
        )
    )
    out.append(
        count_row(
            "residual_only",
            n_single,
            "single images a T-FNN could not fit; not pairs, in no precision",
        )
    )
    return pd.DataFrame(out, columns=CHECK_COLUMNS), detail_df


def check_row(
    kind: str,
    note: str,
    counts: tuple[int, int, int, int] = (0, 0, 0, 0),
    flagged: int = 0,
) -> dict[str, Any]:
    """One row of the planted check (CHECK_COLUMNS) from ``counts`` = (planted, found,
    reported, correct): precision = correct / reported, recall = found / planted (NaN when
    undefined)."""
    planted, found, reported, correct = counts
    precision = correct / reported if reported else np.nan
    recall = found / planted if planted else np.nan
    values = (kind, planted, found, reported, correct, precision, recall, flagged, note)
    return dict(zip(CHECK_COLUMNS, values, strict=True))


def count_row(kind: str, reported: int, note: str) -> dict[str, Any]:
    """A row of the planted check that only counts reported rows (no precision or recall)."""
    return {**check_row(kind, note), "reported": reported}


def no_ground_truth(reason: str) -> pd.DataFrame:
    return pd.DataFrame([check_row("overall", f"no ground truth: {reason}")], columns=CHECK_COLUMNS)


# ---------------------------------------------------------------- figure


def fetch_images(shards: Sequence[Path], ids: set[str]) -> dict[str, np.ndarray]:
    """Images by id from the shards (a shard is fully read only if it holds a wanted id)."""
    from errorless.data.shards import load_shard

    out: dict[str, np.ndarray] = {}
    if not ids:
        return out
    for p in shards:
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


def _match_text(r: dict) -> str:
    """'near, similarity 0.973' / 'exact' / 'indistinguishable in feature G' / 'residual only' /
    'GDT budget leftover'."""
    kind = r.get("kind")
    if not isinstance(kind, str) or not kind:
        return "GDT budget leftover" if r.get("evidence") == "gdt_budget" else "residual only"
    sim = r.get("similarity")
    if kind in ("near", "mirrored") and sim is not None and not pd.isna(sim):
        return f"{kind}, similarity {float(sim):.3f}"
    return kind.replace("indistinguishable in ", "indistinguishable\nin ")


def suspects_figure(
    report: pd.DataFrame, shards: Sequence[Path], path: Path, top: int, per_row: int = 4
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    show = report.head(top)
    if len(show) == 0:
        fig, ax = plt.subplots(figsize=(5, 1.5))
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            "no double-labelling suspects found" if top else "thumbnails: 0 (figure disabled)",
            ha="center",
            va="center",
            fontsize=12,
        )
    else:
        groups = [
            (r, r["ids"].split(";")[:per_row], r["labels"].split(";")[:per_row])
            for r in show.to_dict("records")
        ]
        images = fetch_images(shards, {i for _, ids, _ in groups for i in ids})
        cols = max(len(ids) for _, ids, _ in groups)
        fig, axes = plt.subplots(
            len(groups), cols, figsize=(2.1 * cols + 1.6, 2.3 * len(groups)), squeeze=False
        )
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
                    ax.imshow(
                        img[..., 0] if img.shape[-1] == 1 else img,
                        cmap="gray" if img.shape[-1] == 1 else None,
                        vmin=0,  # grey as stored: a darker copy looks darker (no per-image stretch)
                        vmax=255,
                        interpolation="nearest",
                    )
                ax.set_title(f"label {labels[c]}\n{ids[c]}", fontsize=7)
            more = r["group_size"] - len(ids)
            axes[k][0].set_ylabel(
                f"#{r['rank']}  score {r['score']:.2f}\n"
                + _match_text(r)
                + "\n"
                + r["evidence"].replace("+", "\n")
                + (f"\n(+{more} more)" if more > 0 else ""),
                fontsize=7,
            )
        fig.suptitle(
            "double-labelling suspects by score\n(kind of match and similarity at left)", fontsize=9
        )
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------- CLI


def doublelabel_arguments(p: argparse.ArgumentParser) -> None:
    settings_arguments(p)
    results_arguments(p)  # the shard manifest: the FNN grid and the thumbnails' images
    p.add_argument("--training", help="default {results}/training.parquet")
    p.add_argument("--duplicates", help="default {results}/quality/duplicates.parquet")
    p.add_argument(
        "--planted",
        help="planted truth CSV (default: {dataset.path}/planted.csv for synthetic data)",
    )
    p.add_argument("--out", help="report Parquet (default {results}/double_labeling.parquet)")
    p.add_argument("--csv", help="report CSV (default: --out with .csv)")
    p.add_argument("--figure", help="thumbnails PNG (default {results}/quality/suspects.png)")
    p.add_argument(
        "--no-figure", action="store_true", help="draw no thumbnails (the report draws them)"
    )
    p.add_argument(
        "--check", help="planted check CSV (default {results}/quality/planted_check.csv)"
    )
    p.add_argument(
        "--check-detail", help="per-plant CSV (default {results}/quality/planted_pairs.csv)"
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="warn (not fail) when training records of expected T-FNNs are missing",
    )


def _planted_path(args: argparse.Namespace, cfg: dict[str, Any]) -> Path | None:
    if args.planted:
        return Path(args.planted)
    if cfg["dataset"]["format"] in GENERATED:
        return Path(cfg["dataset"]["path"]) / "planted.csv"
    return None


def doublelabel_main(args: argparse.Namespace) -> int:
    cfg = settings_from_args(args)
    results, manifest = results_paths(args, cfg)
    training = Path(args.training) if args.training else results / "training.parquet"
    dup_path = (
        Path(args.duplicates) if args.duplicates else results / "quality" / "duplicates.parquet"
    )
    out = Path(args.out) if args.out else results / "double_labeling.parquet"
    csv = Path(args.csv) if args.csv else out.with_suffix(".csv")
    figure = Path(args.figure) if args.figure else results / "quality" / "suspects.png"
    check = Path(args.check) if args.check else results / "quality" / "planted_check.csv"
    detail = Path(args.check_detail) if args.check_detail else check.with_name("planted_pairs.csv")

    df = read_training(training)
    shards = manifest_shards(manifest)
    shard_names = list(shards)
    ev = training_evidence(df, expected_fnns(cfg, shard_names))
    if ev.missing:
        msg = (
            f"{training}: no training record for {len(ev.missing)} expected T-FNN(s) "
            f"(proto/feature/shard): {', '.join(ev.missing[:10])}"
            + (" ..." if len(ev.missing) > 10 else "")
        )
        if not args.allow_missing:
            raise DataError(msg)
        log.warning("%s", msg)
    if not cfg["gdt"]["enabled"]:
        log.warning("gdt.enabled is false: no T records, no residual evidence")
    dups = read_duplicates(dup_path)
    report = combine(dups, ev, cfg["double_labeling"]["near_similarity"], cfg["features"])
    write_report(report, out, csv)
    if not args.no_figure:
        suspects_figure(report, list(shards.values()), figure, cfg["double_labeling"]["thumbnails"])

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
