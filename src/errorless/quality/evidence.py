"""Double labelling, the training side (docs/method.md#double-labelling-evidence): what the T-FNNs
say — images a T-FNN could not fit, identical rows with different labels, budget leftovers."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from errorless.config import (
    proto_names,
)
from errorless.errors import DataError
from errorless.grid import fnn_jobs
from errorless.names import module_name, proto_name, shard_name, split_shard, submodule_name

BUDGET_STATUS = (
    "budget"  # gdtstate.BUDGET: a T-FNN that stopped on a budget with consistent images wrong
)


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
