"""Label-issue evidence against label errors that people confirmed: the MNIST test set.

The data: the 10,000 MNIST test images as published (``../shared/data/mnist-test``, the t10k
IDX files) used as a **training** set, and the 15 images whose label five crowd workers
rejected (``label_errors.csv``, ``confirmed_error``; Northcutt, Athalye & Mueller 2021). Only
the 100 images that cleanlab flagged were shown to the workers, so the figure that counts is
where the 15 rank, not precision.

    python bench/label_errors_bench.py                       # run the pipeline, then measure
    python bench/label_errors_bench.py --results DIR         # measure a finished results folder
    python bench/label_errors_bench.py --record   # also docs/benchmarks/label_errors_bench.md
    python bench/label_errors_bench.py --doc label-errors.md     # the full table as its own page

It runs ``config/mnist-test.yaml`` through Snakemake (unless ``--results`` names a finished
folder) and prints, with the time of every step:

* the pipeline: vote accuracy on the training images (T and S), error-free FNNs,
  out-of-sample accuracy of the label-issue probabilities, images flagged, the confirmed errors
  in the top 15 / 50 / 100 / 200 / 300 of ``quality/label_issues.parquet`` and the rank of each,
  the training-set vote's mistakes (and how many confirmed errors they hold), GDT-residual and
  duplicate rows of ``double_labeling.parquet``;
* beside it, in the same run and on the same inputs (the FNNs' transformed pixels): cleanlab's
  self-confidence ranking and ``find_label_issues`` on 5-fold cross-validated probabilities of
  scikit-learn's logistic regression and of an MLP with one hidden layer of the FNNs' width;
* the published anchor: cleanlab's ranking from the cross-validated probabilities of its
  authors' CNN (the data's README; the probabilities are not shipped here).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from record import commit, machine, record, record_argument  # noqa: E402  (bench/record.py)

from errorless.config import load_config  # noqa: E402
from errorless.data import datasets  # noqa: E402
from errorless.features import transform  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "mnist-test"
TOPS = (15, 50, 100, 200, 300)
# cleanlab on the cross-validated probabilities of the authors' CNN (99.1 %), top 15/50/100/200:
# the data's README (../shared/data/mnist-test/README.md)
CNN_ANCHOR = {15: 6, 50: 11, 100: 15, 200: 15}


def confirmed(data: Path) -> list[str]:
    """Image ids (``t10k:<index>``) of the human-confirmed label errors."""
    le = pd.read_csv(data / "label_errors.csv")
    return [f"t10k:{i}" for i in le.loc[le["confirmed_error"].astype(bool), "index"]]


def ranks_of(ranked_ids, truth) -> list[int]:
    """1-based ranks of the ``truth`` ids in ``ranked_ids`` (best first), sorted."""
    pos = {i: k for k, i in enumerate(ranked_ids, start=1)}
    return sorted(pos[t] for t in truth if t in pos)


def found(ranks: list[int]) -> dict[int, int]:
    return {k: sum(r <= k for r in ranks) for k in TOPS}


def run_pipeline(results: Path, cores: int, extra: list[str]) -> float:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(ROOT),
        "--cores",
        str(cores),
        "--configfile",
        str(ROOT / "config" / "mnist-test.yaml"),
        *extra,
        "--config",
        f"results={results}",
        f"dataset={{path: {DATA}}}",
    ]
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def pipeline_figures(res: Path, truth: list[str]) -> dict:
    acc = pd.read_csv(res / "evaluation" / "accuracy.csv")
    acc = acc[(acc["split"] == "train") & (acc["protocol"] == "top1")]
    training = pd.read_csv(res / "evaluation" / "training.csv").set_index("proto")
    oos = pd.read_parquet(res / "quality" / "out_of_sample.parquet")
    issues = pd.read_parquet(res / "quality" / "label_issues.parquet")
    dl = pd.read_parquet(res / "double_labeling.parquet")
    ranks = ranks_of(issues["image_id"], truth)
    by_quality = issues.sort_values(["label_quality", "image_id"], kind="stable")["image_id"]
    out = {
        "vote accuracy (train images)": {
            r["proto"]: round(float(r["accuracy_pct"]), 2) for _, r in acc.iterrows()
        },
        "error-free FNNs": {p: r["error_free_fnns_text"] for p, r in training.iterrows()},
        "out-of-sample accuracy": round(float(np.mean(oos["predicted_prob"] == oos["label"])), 4),
        "the other submodule's vote right, by the image's submodule": {
            k: round(100 * float(np.mean(d["predicted"] == d["label"])), 2)
            for k, d in oos.groupby("submodule")
        },
        "probabilities from": ", ".join(sorted(set(oos["source"]))),
        "images flagged": int(issues["flagged"].sum()),
        "flagged %": round(100 * float(issues["flagged"].mean()), 2),
        "confirmed errors among the flagged": int(
            issues.loc[issues["flagged"].astype(bool), "image_id"].isin(truth).sum()
        ),
        "found": found(ranks),
        "ranks": ranks,
        "found (by label quality alone)": found(ranks_of(by_quality, truth)),
        "double_labeling rows": {str(k): int(v) for k, v in dl["evidence"].value_counts().items()}
        if len(dl)
        else {},
    }
    preds = pd.concat(
        pd.read_parquet(p) for p in sorted((res / "evaluation" / "predictions").glob("*.parquet"))
    )
    preds = preds[(preds["split"] == "train") & (preds["protocol"] == "top1")]
    where = oos.set_index("image_id")["submodule"]  # the image's own submodule
    for proto, g in preds.groupby("proto"):
        g = g[g["p"] == g["p"].max()]
        by_sub = g.groupby(g["image_id"].map(where))["correct"].mean()
        out[f"{proto} vote accuracy by the image's submodule"] = {
            k: round(100 * float(v), 2) for k, v in by_sub.items()
        }
        wrong = set(g.loc[~g["correct"].astype(bool), "image_id"])
        out[f"{proto} training-set vote wrong"] = (
            f"{len(wrong)} images, {len(wrong & set(truth))} of {len(truth)} confirmed errors"
        )
    return out


def own_submodule_figures(cfg: dict, res: Path, truth: list[str]) -> dict:
    """The same ranking from the model's own out-of-sample FNNs (the other submodule's, T
    weights), recomputed in-process: what the pipeline ranked before cross-fitting."""
    from errorless.data.shards import manifest_shards
    from errorless.quality import flags, out_of_sample

    t0 = time.perf_counter()
    paths = list(manifest_shards(res / "shards" / "manifest.tsv").values())
    oos = out_of_sample.out_of_sample(cfg, res / "weights.parquet", paths)
    issues = flags.find_issues(oos, cfg["label_issues"]["flag"])
    ranked = issues.sort_values(["label_quality", "image_id"], kind="stable")["image_id"]
    return {
        "the other submodule's FNNs (T weights, the model's own)": {
            "accuracy": round(float(np.mean(oos["predicted_prob"] == oos["label"])), 4),
            "images flagged": int(issues["cleanlab_issue"].sum()),
            "found": found(ranks_of(ranked, truth)),
            "ranks": ranks_of(ranked, truth),
            "seconds": round(time.perf_counter() - t0, 1),
        }
    }


def baselines(cfg: dict, truth: list[str], hidden: int, folds: int, which: list[str]) -> dict:
    """cleanlab on k-fold cross-validated probabilities of scikit-learn models, on the FNNs'
    inputs (the transformed pixels of the configured feature)."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neural_network import MLPClassifier

    s = datasets.load_training(cfg)
    x = transform(s.images, cfg["features"][0], **cfg["transform"])
    ids = s.ids.astype(str)
    models = {
        "logistic regression": LogisticRegression(max_iter=1000),
        f"MLP, {hidden} hidden": MLPClassifier((hidden,), max_iter=200, random_state=0),
    }
    out = {}
    for name, model in models.items():
        if not any(w in name.lower() for w in which):
            continue
        t0 = time.perf_counter()
        cv = StratifiedKFold(folds, shuffle=True, random_state=0)
        P = cross_val_predict(model, x, s.labels, cv=cv, method="predict_proba")
        q = P[np.arange(len(P)), s.labels]
        ranked = ids[np.lexsort((ids, q))]
        flagged = find_label_issues(s.labels, P, n_jobs=1)
        out[f"cleanlab on {folds}-fold {name}"] = {
            "accuracy": round(float(np.mean(P.argmax(1) == s.labels)), 4),
            "images flagged": int(flagged.sum()),
            "found": found(ranks_of(ranked, truth)),
            "ranks": ranks_of(ranked, truth),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(name, out[f"cleanlab on {folds}-fold {name}"], flush=True)
    return out


def markdown(figs: dict, base: dict, meta: dict) -> str:
    tops = " / ".join(str(k) for k in TOPS)
    lines = [
        "# Label-issue evidence on the MNIST test set (human-confirmed label errors)",
        "",
        "Written by `bench/label_errors_bench.py`; do not edit by hand.",
        "",
        *(f"- {k}: {v}" for k, v in meta.items()),
        "",
        f"Confirmed errors (of 15) in the top {tops} of each ranking:",
        "",
        "| evidence | accuracy | flagged | found | ranks of the 15 |",
        "|---|---|---|---|---|",
        f"| errorless (`quality/label_issues.parquet`) | {figs['out-of-sample accuracy']} "
        f"(out of sample) | {figs['images flagged']} | "
        f"{' / '.join(str(v) for v in figs['found'].values())} | {figs['ranks']} |",
    ]
    for name, b in base.items():
        lines.append(
            f"| {name} | {b['accuracy']} | {b['images flagged']} | "
            f"{' / '.join(str(v) for v in b['found'].values())} | {b['ranks']} |"
        )
    lines.append(
        "| cleanlab on the authors' CNN (published; 99.1 %) | | | "
        f"{' / '.join(str(v) for v in CNN_ANCHOR.values())} / – | |"
    )
    lines += ["", "The pipeline's other figures:", ""]
    lines += [f"- {k}: {v}" for k, v in figs.items() if k not in ("found", "ranks")]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DATA, help="the mnist-test folder")
    ap.add_argument("--results", type=Path, help="a finished results folder (no pipeline run)")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "results-mnist-test", help="results folder of the run"
    )
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--configfile", nargs="*", default=[], help="more config files for the run")
    ap.add_argument("--baselines", nargs="*", default=["logistic", "mlp"], help="logistic, mlp")
    ap.add_argument("--folds", type=int, default=5, help="cross-validation folds of the baselines")
    ap.add_argument("--doc", type=Path, help="write the figures as a Markdown page here")
    record_argument(ap)
    a = ap.parse_args()
    if not (a.data / "label_errors.csv").is_file():
        print(f"{a.data}: the MNIST test set with its label errors is not there", file=sys.stderr)
        return 2
    truth = confirmed(a.data)
    meta = {
        "date": datetime.date.today().isoformat(),
        "commit": commit(),  # bench/record.py: also says when the code differs from it
        "machine": machine(),
        "data": f"MNIST test set ({a.data.name}: t10k IDX files, 10,000 images) as the training set; "
        f"{len(truth)} human-confirmed label errors",
    }
    res = a.results
    if res is None:
        res = a.out
        extra = ["--configfile", *map(str, a.configfile)] if a.configfile else []
        meta["pipeline"] = (
            f"config/mnist-test.yaml {' '.join(a.configfile)}; {run_pipeline(res, a.cores, extra):.0f} s wall on {a.cores} cores"
        )
    meta["results"] = str(res)
    cfg = load_config(res / "config.yaml", {"dataset": {"path": str(a.data)}})
    meta["label_issues settings"] = json.dumps(cfg["label_issues"], sort_keys=True)
    figs = pipeline_figures(res, truth)
    for k, v in figs.items():
        print(f"{k}: {v}")
    hidden = cfg["models"]["architectures"][cfg["models"]["use"][0]][0]
    base = own_submodule_figures(cfg, res, truth)
    print(base)
    base |= baselines(cfg, truth, hidden, a.folds, [b.lower() for b in a.baselines])
    print(f"cleanlab on the authors' CNN (published): {CNN_ANCHOR}")
    if a.doc:
        a.doc.parent.mkdir(parents=True, exist_ok=True)
        a.doc.write_text(markdown(figs, base, meta))
        print(f"-> {a.doc}")
    if a.record:
        tops = " / ".join(str(t) for t in TOPS)
        record(
            "label_errors_bench",
            "Label-issue evidence on the MNIST test set (human-confirmed label errors)",
            meta["data"],
            [
                (
                    f"errorless: confirmed errors in the top {tops}",
                    " / ".join(str(v) for v in figs["found"].values()),
                ),
                *(
                    (
                        f"{name}: confirmed errors in the top {tops}",
                        " / ".join(str(v) for v in b["found"].values()),
                    )
                    for name, b in base.items()
                ),
                *((k, v) for k, v in figs.items() if k not in ("found", "ranks")),
            ],
            notes=f"label_issues settings: {meta['label_issues settings']}. "
            + (meta.get("pipeline", "") and f"Pipeline: {meta['pipeline']}."),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
