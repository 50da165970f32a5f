"""Double labelling: the suspects — image matches and training evidence joined into one ranked
report (``double_labeling.parquet``; columns ``REPORT_COLUMNS``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from errorless.errors import DataError
from errorless.io import atomic_path, write_parquet
from errorless.names import image_id_key, join_ids, split_ids, split_image_id
from errorless.quality.evidence import TrainingEvidence

EVIDENCE_ORDER = (
    "exact_duplicate",
    "near_duplicate",
    "conflict",
    "indistinguishable",
    "residual",
    "gdt_budget",
)


def report_schema():
    import pyarrow as pa

    s, i, f = pa.string(), pa.int64(), pa.float64()
    return pa.schema(
        [
            ("rank", i),
            ("score", f),
            ("evidence", s),
            ("group_size", i),
            ("ids", pa.list_(s)),
            ("labels", pa.list_(i)),
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
            ("fnn_failed", pa.list_(s)),
        ]
    )


REPORT_COLUMNS = [name for name in report_schema().names]


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
        suspects.append(Suspect(sorted(ids, key=image_id_key), {"exact_duplicate"}, "exact", 1.0))
    near = dups[dups["kind"] != "exact"]
    for a, b, k, sim in zip(
        near["id_a"], near["id_b"], near["kind"], near["similarity"], strict=True
    ):
        suspects.append(
            Suspect(
                sorted([str(a), str(b)], key=image_id_key), {"near_duplicate"}, str(k), float(sim)
            )
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
            suspects.append(Suspect(sorted(key, key=image_id_key), {"indistinguishable"}, what))
    covered = {i for s in suspects for i in s.ids}
    for i in sorted(ev.failed.keys() - covered, key=image_id_key):
        suspects.append(Suspect([i], set()))
    covered.update(ev.failed)
    for i in sorted(ev.budget.keys() - covered, key=image_id_key):
        suspects.append(Suspect([i], set()))
    rows = [_row(s, ev, label, shard, near_similarity) for s in suspects]
    return finish(pd.DataFrame(rows, columns=[c for c in REPORT_COLUMNS if c != "rank"]))


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
        "ids": list(s.ids),
        "labels": [None if label.get(i) is None else int(label[i]) for i in s.ids],
        "kind": s.kind,
        "similarity": s.similarity,
        "n_features_failed": n_failed,
        "n_features": n_feat,
        "fnn_failed": (
            sorted(set().union(*(ev.failed.get(i, set()) for i in s.ids)))
            + sorted({f"{f} (budget)" for i in s.ids for f in ev.budget.get(i, ())})
        ),
    }
    for side, i in (("a", a), ("b", b)):
        batch, r = split_image_id(i)
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
    import pyarrow as pa

    df = df.copy()
    if len(df):
        df["_s"] = df["similarity"].fillna(-np.inf)
        df["_ids"] = df["ids"].map(join_ids)
        df = df.sort_values(
            ["score", "n_features_failed", "_s", "_ids"],
            ascending=[False, False, False, True],
            kind="stable",
        ).drop(columns=["_s", "_ids"])
    df.insert(0, "rank", np.arange(1, len(df) + 1, dtype=np.int64))
    for name, typ in zip(report_schema().names, report_schema().types, strict=True):
        if isinstance(typ, pa.ListType):  # lists (a ";"-joined cell is split: a CSV's rows)
            items = [split_ids(v) for v in df[name]]
            if pa.types.is_integer(typ.value_type):
                items = [[int(x) if x not in ("", "None") else None for x in v] for v in items]
            df[name] = pd.Series(items, index=df.index, dtype=object)
        elif str(typ) == "int64":
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
    flat = df.copy()  # the CSV for people: a list column becomes one ";"-joined cell
    for name in ("ids", "fnn_failed"):
        flat[name] = flat[name].map(join_ids)
    flat["labels"] = flat["labels"].map(lambda v: join_ids("" if x is None else x for x in v))
    with atomic_path(csv) as tmp:
        flat.to_csv(tmp, index=False)
