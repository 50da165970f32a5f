"""Which labels the models confuse, from the prediction files alone (no new inference).

``errorless confusion --predictions P... --settings S --out-dir DIR`` writes, per proto-model,
featured model Model-p, protocol and split (``KEYS``):

* ``counts.parquet``: the sparse confusion table ``given, predicted, count`` (zero counts left
  out; the diagonal holds the correct predictions) with ``given_module``/``predicted_module``;
* ``modules.parquet``: the module × module matrix over all labels (``given_module,
  predicted_module, count, errors``); one module's own matrix is the rows of ``counts.parquet``
  with ``given_module == predicted_module`` (the report draws it as a heatmap);
* ``pairs.csv``: the most confused unordered label pairs {a, b} (``confusion.top_pairs`` per
  key), with the count and the rate in each direction (a→b over the images given a), whether the
  two share a module (and a group when ``modules.groups`` is set) and a few image ids behind each
  direction (``confusion.examples``);
* ``summary.csv``: images, errors and the share of the errors that stay inside the module (and
  inside the label group);
* ``labels.csv``: every label with its name (CIFAR ``batches.meta``, the photos data set's
  ``labels.csv``, ``dataset.label_names``; else the number), module and group.

The prediction files are read one at a time, two columns of codes each, and counted with
``np.unique``; memory follows one file, not the grid.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from errorless.config import settings_arguments, settings_from_args
from errorless.errors import DataError
from errorless.io import write_parquet, write_text
from errorless.names import join_ids

log = logging.getLogger(__name__)

KEYS = ["proto", "p", "protocol", "split"]


# ---------------------------------------------------------------- the counts (pure)


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    import pyarrow.parquet as pq

    if not path.exists():
        raise DataError(f"{path}: predictions file missing (run the evaluate step)")
    try:
        return pq.read_table(path, columns=columns).to_pandas()
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: unreadable predictions file: {e}") from None


def count_frame(pred: pd.DataFrame, num_labels: int) -> pd.DataFrame:
    """The sparse counts of one predictions table: KEYS + ``given, predicted, count``."""
    given = pred["label"].to_numpy(np.int64)
    predicted = pred["predicted"].to_numpy(np.int64)
    bad = (given < 0) | (given >= num_labels) | (predicted < 0) | (predicted >= num_labels)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"predictions hold label {given[k]} / predicted {predicted[k]} outside 0..{num_labels - 1}"
        )
    keys = pred[KEYS].drop_duplicates(ignore_index=True)
    key_idx = pd.MultiIndex.from_frame(keys).get_indexer(pd.MultiIndex.from_frame(pred[KEYS]))
    code = (key_idx.astype(np.int64) * num_labels + given) * num_labels + predicted
    uniq, count = np.unique(code, return_counts=True)
    k, rest = np.divmod(uniq, num_labels * num_labels)
    out = keys.iloc[k].reset_index(drop=True)
    out["given"], out["predicted"] = np.divmod(rest, num_labels)
    out["count"] = count.astype(np.int64)
    return out


def count_predictions(paths: Sequence[str | Path], num_labels: int) -> pd.DataFrame:
    """:func:`count_frame` over every prediction file, one file at a time, summed."""
    if not paths:
        raise DataError("no prediction files to count")
    parts = [count_frame(_read(Path(p), [*KEYS, "label", "predicted"]), num_labels) for p in paths]
    counts = pd.concat(parts, ignore_index=True)
    counts = counts.groupby([*KEYS, "given", "predicted"], sort=True, as_index=False)["count"].sum()
    return counts


def with_modules(counts: pd.DataFrame, module_of: np.ndarray, modules: Sequence[str]):
    """``counts`` with ``given_module`` and ``predicted_module`` (module names)."""
    names = np.asarray(modules, dtype=object)
    return counts.assign(
        given_module=names[module_of[counts["given"].to_numpy()]],
        predicted_module=names[module_of[counts["predicted"].to_numpy()]],
    )


def module_matrix(counts: pd.DataFrame) -> pd.DataFrame:
    """The module × module table: KEYS + ``given_module, predicted_module, count, errors``."""
    c = counts.assign(errors=np.where(counts["given"] != counts["predicted"], counts["count"], 0))
    return c.groupby([*KEYS, "given_module", "predicted_module"], sort=True, as_index=False)[
        ["count", "errors"]
    ].sum()


def module_block(counts: pd.DataFrame, labels: Sequence[int]) -> np.ndarray:
    """One module's matrix (given × predicted over ``labels``, in that order) from the counts
    of one key (errors into other modules are not in it)."""
    labels = np.asarray(labels, dtype=np.int64)
    pos = np.full(int(max(labels.max(), counts["given"].max(), counts["predicted"].max())) + 1, -1)
    pos[labels] = np.arange(len(labels))
    g, p = pos[counts["given"].to_numpy()], pos[counts["predicted"].to_numpy()]
    inside = (g >= 0) & (p >= 0)
    out = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(out, (g[inside], p[inside]), counts["count"].to_numpy()[inside])
    return out


def top_pairs(counts: pd.DataFrame, top: int, group_of: np.ndarray | None = None) -> pd.DataFrame:
    """The ``top`` most confused unordered pairs {a < b} per key: ``a_to_b`` (given a, predicted
    b), ``b_to_a``, their sum ``count``, the rates over the images given a (b), ``rank``.
    Ties: larger count, then smaller (a, b)."""
    images = counts.groupby([*KEYS, "given"], as_index=False)["count"].sum()
    err = counts[counts["given"] != counts["predicted"]]
    a = np.minimum(err["given"], err["predicted"])
    b = np.maximum(err["given"], err["predicted"])
    forward = err["given"].to_numpy() == a.to_numpy()
    e = err[KEYS].assign(
        a=a.to_numpy(),
        b=b.to_numpy(),
        a_to_b=np.where(forward, err["count"], 0),
        b_to_a=np.where(forward, 0, err["count"]),
    )
    pairs = e.groupby([*KEYS, "a", "b"], as_index=False)[["a_to_b", "b_to_a"]].sum()
    pairs["count"] = pairs["a_to_b"] + pairs["b_to_a"]
    n = images.rename(columns={"given": "a", "count": "images_a"})
    pairs = pairs.merge(n, on=[*KEYS, "a"], how="left")
    pairs = pairs.merge(n.rename(columns={"a": "b", "images_a": "images_b"}), on=[*KEYS, "b"])
    pairs["rate_a_to_b"] = pairs["a_to_b"] / pairs["images_a"]
    pairs["rate_b_to_a"] = pairs["b_to_a"] / pairs["images_b"]
    pairs = pairs.sort_values(
        [*KEYS, "count", "a", "b"], ascending=[True] * 4 + [False, True, True]
    )
    pairs["rank"] = pairs.groupby(KEYS).cumcount() + 1
    pairs = pairs[pairs["rank"] <= top].reset_index(drop=True)
    if group_of is not None:
        pairs["same_group"] = group_of[pairs["a"]] == group_of[pairs["b"]]
    return pairs


def summary(counts: pd.DataFrame, group_of: np.ndarray | None = None) -> pd.DataFrame:
    """Per key: images, errors, errors inside the module (and inside the group), as shares."""
    wrong = counts["given"] != counts["predicted"]
    c = counts.assign(
        errors=np.where(wrong, counts["count"], 0),
        within_module=np.where(
            wrong & (counts["given_module"] == counts["predicted_module"]), counts["count"], 0
        ),
    )
    cols = ["count", "errors", "within_module"]
    if group_of is not None:
        same = group_of[counts["given"].to_numpy()] == group_of[counts["predicted"].to_numpy()]
        c["within_group"] = np.where(wrong & same, counts["count"], 0)
        cols.append("within_group")
    s = c.groupby(KEYS, as_index=False)[cols].sum().rename(columns={"count": "images"})
    s["accuracy_pct"] = 100 * (1 - s["errors"] / s["images"])
    for col in cols[2:]:
        s[f"{col}_pct"] = 100 * s[col] / s["errors"].where(s["errors"] > 0)
    return s


def pair_examples(paths: Sequence[str | Path], pairs: pd.DataFrame, k: int) -> pd.DataFrame:
    """``pairs`` with ``examples_a_to_b``/``examples_b_to_a``: the first ``k`` image ids (in
    file order) given a and predicted b (and the reverse), ';'-joined. A second pass over the
    prediction files that keeps only the rows of the listed pairs."""
    pairs = pairs.copy()
    if k <= 0 or len(pairs) == 0:
        pairs["examples_a_to_b"] = pairs["examples_b_to_a"] = ""
        return pairs
    want = pd.concat(
        [
            pairs[KEYS].assign(given=pairs["a"], predicted=pairs["b"]),
            pairs[KEYS].assign(given=pairs["b"], predicted=pairs["a"]),
        ],
        ignore_index=True,
    )
    index = pd.MultiIndex.from_frame(want[[*KEYS, "given", "predicted"]])
    found: dict[int, list[str]] = {}
    for path in paths:
        pred = _read(Path(path), [*KEYS, "label", "predicted", "image_id"])
        wrong = pred[pred["label"] != pred["predicted"]]
        key = pd.MultiIndex.from_frame(
            wrong[KEYS].assign(given=wrong["label"], predicted=wrong["predicted"])
        )
        hit = index.get_indexer(key)
        sel = hit >= 0
        ids, which = wrong["image_id"].to_numpy()[sel], hit[sel]
        order = np.argsort(which, kind="stable")
        for w, i in zip(which[order], ids[order], strict=True):
            have = found.setdefault(int(w), [])
            if len(have) < k:
                have.append(str(i))
    n = len(pairs)
    pairs["examples_a_to_b"] = [join_ids(found.get(i, [])) for i in range(n)]
    pairs["examples_b_to_a"] = [join_ids(found.get(n + i, [])) for i in range(n)]
    return pairs


# ---------------------------------------------------------------- labels, modules, groups


def label_table(cfg: dict[str, Any]) -> pd.DataFrame:
    """``label, name, module, group`` of every label of the run (the module plan of
    :func:`errorless.grid.module_plan`; group empty without ``modules.groups``)."""
    from errorless.data.labelnames import label_names
    from errorless.grid import module_plan
    from errorless.names import module_names

    plan = module_plan(cfg)
    L = plan.labels
    modules = module_names(len(plan.modules))
    module_of = np.empty(L, dtype=object)
    for name, labels in zip(modules, plan.modules, strict=True):
        module_of[labels] = name
    group = np.full(L, "", dtype=object)
    if plan.groups is not None:
        group[:] = [plan.groups[i] for i in range(L)]
    return pd.DataFrame(
        {"label": np.arange(L), "name": label_names(cfg, L), "module": module_of, "group": group}
    )


def write_confusion(
    cfg: dict[str, Any], paths: Sequence[str | Path], out: Path
) -> dict[str, pd.DataFrame]:
    labels = label_table(cfg)
    L = len(labels)
    modules = sorted(set(labels["module"]))
    module_idx = {m: i for i, m in enumerate(modules)}
    module_of = labels["module"].map(module_idx).to_numpy(np.int64)
    grouped = bool((labels["group"] != "").any())
    group_of = pd.factorize(labels["group"])[0] if grouped else None
    counts = with_modules(count_predictions(paths, L), module_of, modules)
    settings = cfg["confusion"]
    pairs = top_pairs(counts, settings["top_pairs"], group_of)
    pairs["same_module"] = module_of[pairs["a"]] == module_of[pairs["b"]]
    pairs = pair_examples(paths, pairs, settings["examples"])
    tables = {
        "counts": counts,
        "modules": module_matrix(counts),
        "pairs": pairs,
        "summary": summary(counts, group_of),
        "labels": labels,
    }
    write_parquet(out / "counts.parquet", counts)
    write_parquet(out / "modules.parquet", tables["modules"])
    write_text(out / "pairs.csv", pairs.to_csv(index=False, float_format="%.4f"))
    write_text(out / "summary.csv", tables["summary"].to_csv(index=False, float_format="%.4f"))
    write_text(out / "labels.csv", labels.to_csv(index=False))
    return tables


# ---------------------------------------------------------------- CLI


def confusion_arguments(p: argparse.ArgumentParser) -> None:
    settings_arguments(p)
    p.add_argument("--predictions", nargs="+", required=True, help="predictions Parquet files")
    p.add_argument(
        "--out-dir", required=True, help="folder of the tables (results/evaluation/confusion)"
    )


def confusion_main(args: argparse.Namespace) -> int:
    cfg = settings_from_args(args)
    tables = write_confusion(cfg, args.predictions, Path(args.out_dir))
    for r in tables["summary"].itertuples():
        log.info(
            "%s Model-%d %s %s: %d errors of %d images, %.1f %% inside the module",
            r.proto,
            r.p,
            r.protocol,
            r.split,
            r.errors,
            r.images,
            r.within_module_pct,
        )
    return 0
