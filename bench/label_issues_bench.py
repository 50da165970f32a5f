"""Label issues: the ensemble's out-of-sample evidence vs cleanlab on a plain logistic regression.

Reads a finished results folder of a generated data set with planted label flips (default: the
real-photo bench, ``config/photos-flips.yaml``: 2,400 photo crops, 20 labels, 48 flips = 2 %):

    snakemake --cores 2 --configfile config/photos.yaml config/photos-flips.yaml \\
        results-photos-flips/quality/label_issues.csv
    python bench/label_issues_bench.py --results results-photos-flips

and prints precision / recall of the flagged images against the planted flips, and at
top-k (k = number of flips, ranked by cleanlab's label quality), for

* the ensemble (``quality/out_of_sample.parquet``: the FNNs of the other submodule, all
  features) with each flag rule: cleanlab, vote (super-majority against the label), either, both;
* cleanlab on out-of-fold probabilities of ``sklearn.linear_model.LogisticRegression`` with
  ``cross_val_predict`` on the same inputs: every configured feature's transformed 900-vector,
  **concatenated** (6 x 900 = 5,400 inputs), one model per module (its c labels, as the FNNs),
  folds = the submodules (the same out-of-sample split as the ensemble) and, second, 5
  stratified folds (each image predicted by a model trained on 80 % of its module).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from record import record, record_argument  # noqa: E402  (bench/record.py)

from errorless.config import load_config  # noqa: E402
from errorless.data.shards import load_shard  # noqa: E402
from errorless.features import transform_many  # noqa: E402
from errorless.gather.load import protos_in  # noqa: E402
from errorless.quality import flags, issue_check, out_of_sample  # noqa: E402
from errorless.quality.planted import read_planted  # noqa: E402


def logistic_oos(cfg, shards: Path, folds: str, C: float) -> pd.DataFrame:
    """An out_of_sample-like table (image_id, module, label, label_local, probs, ...) from a
    cross-validated logistic regression per module."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import PredefinedSplit, StratifiedKFold, cross_val_predict

    by_module: dict[int, list] = {}
    for p in sorted(shards.glob("*.npz")):
        sh = load_shard(p)
        by_module.setdefault(sh.module, []).append(sh)
    frames = []
    for m, parts in sorted(by_module.items()):
        X = np.concatenate(
            [
                np.hstack(transform_many(sh.images, cfg["features"], **cfg["transform"]))
                for sh in parts
            ]
        )
        y = np.concatenate([sh.labels - sh.label_lo for sh in parts])
        sub = np.concatenate([np.full(len(sh.labels), sh.submodule - 1) for sh in parts])
        cv = (
            PredefinedSplit(sub)
            if folds == "submodules"
            else StratifiedKFold(5, shuffle=True, random_state=0)
        )
        P = cross_val_predict(
            LogisticRegression(C=C, max_iter=2000), X, y, cv=cv, method="predict_proba"
        )
        lo = parts[0].label_lo
        frames.append(
            pd.DataFrame(
                {
                    "image_id": np.concatenate([sh.ids for sh in parts]),
                    "module": f"m{m:02d}",
                    "label": y + lo,
                    "label_local": y,
                    "probs": list(P),
                    "predicted": P.argmax(1) + lo,
                    "votes": 1,
                    "super_majority": False,
                    "batch": np.concatenate([sh.batch for sh in parts]),
                    "row": np.concatenate([sh.row for sh in parts]),
                    "submodule": np.concatenate(
                        [np.full(len(sh.labels), f"s{sh.submodule}") for sh in parts]
                    ),
                    "p": 1,
                    "agreement": 1.0,
                    "prob_given": P[np.arange(len(y)), y],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def score(issues: pd.DataFrame, planted: pd.DataFrame, method: str, rules) -> list[dict]:
    check = issue_check.planted_check(issues, planted, rules[0]).set_index("evidence")
    top = check.iloc[-1]
    out = []
    for rule in rules:
        r = check.loc[rule]
        out.append(
            {
                "method": method,
                "flag": rule,
                "flagged": int(r["flagged"]),
                "correct": int(r["correct"]),
                "precision": r["precision"],
                "recall": r["recall"],
                "top_k_correct": int(top["correct"]),
                "top_k_precision_recall": top["precision"],
            }
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--results", default="results-photos-flips")
    ap.add_argument(
        "--C", type=float, default=1.0, help="logistic regression inverse regularisation"
    )
    ap.add_argument(
        "--out", help="CSV of the table (default {results}/quality/label_issues_bench.csv)"
    )
    record_argument(ap)
    a = ap.parse_args()
    res = Path(a.results)
    cfg = load_config(res / "config.yaml")
    planted = read_planted(Path(cfg["dataset"]["path"]) / "planted.csv")
    k = int((planted["kind"] == "label_flip").sum())
    oos = pd.read_parquet(res / "quality" / "out_of_sample.parquet")
    rows = []
    paths = sorted((res / "shards").glob("*.npz"))
    for proto in protos_in(res / "weights.parquet"):
        t0 = time.perf_counter()
        table = out_of_sample.out_of_sample(cfg, res / "weights.parquet", paths, proto)
        sec = time.perf_counter() - t0
        if proto == oos["proto"][0] and (oos["source"] == "submodules").all():
            # the pipeline's table (cross-fitting off), recomputed in-process
            assert np.allclose(np.stack(table["probs"]), np.stack(oos["probs"]), atol=1e-6)
        rows += score(
            flags.find_issues(table, "either"),
            planted,
            f"ensemble {proto} (p={table['p'][0]}, {sec:.1f} s)",
            ["cleanlab", "vote", "either", "both"],
        )
    for folds in ("submodules", "5-fold"):
        t0 = time.perf_counter()
        lr = logistic_oos(cfg, res / "shards", folds, a.C)
        sec = time.perf_counter() - t0
        rows += score(
            flags.find_issues(lr, "cleanlab"),
            planted,
            f"logistic regression ({folds}, {sec:.0f} s)",
            ["cleanlab"],
        )
    table = pd.DataFrame(rows)
    n = len(oos)
    print(
        f"data: {cfg['dataset']['format']} {res}, {n} training images, {k} planted label flips "
        f"({100 * k / n:.1f} %), {len(cfg['features'])} features {cfg['features']}"
    )
    print(
        table.to_markdown(index=False, floatfmt=".3f")
        if hasattr(table, "to_markdown")
        else table.to_string()
    )
    out = Path(a.out) if a.out else res / "quality" / "label_issues_bench.csv"
    table.to_csv(out, index=False, float_format="%.4f")
    if a.record:
        record(
            f"label_issues_bench-{res.name}",
            f"Label issues on planted flips: ensemble vs logistic regression ({res.name})",
            f"{cfg['dataset']['format']} data of the results folder {res.name}: {n} training "
            f"images, {k} planted label flips ({100 * k / n:.1f} %), features {cfg['features']}",
            [
                (
                    " ".join(str(r[c]) for c in table.columns[:2]),
                    "; ".join(f"{c} {r[c]}" for c in table.columns[2:]),
                )
                for r in table.to_dict("records")
            ],
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
