"""Confusion figures on real data: the MNIST test set and the photos data set.

* ``mnist``: the pipeline on the MNIST test set (``config/mnist-test.yaml``, the shared
  ``../shared/data/mnist-test`` with its 15 human-confirmed label errors): the most confused
  pairs (``evaluation/confusion/pairs.csv``) and how many confirmed errors sit in the top-10
  pairs (the model predicts the image as the other label of one of those pairs);
* ``photos``: the photos data set (``config/photos.yaml``) with contiguous modules and with
  modules grouped by photograph (``config/photos-grouped.yaml``): vote accuracy (training and
  held-out), error-free FNNs, the share of the errors that stay inside a photograph.

Each run goes to the evaluation and confusion targets only (no duplicate search, no label
issues). The page (``--doc``) records date, commit, machine, data set and command.

    python bench/confusion_bench.py --data mnist photos --doc docs/benchmarks/confusion.md
    python bench/confusion_bench.py --data photos --set gdt.max_seconds=20   # a shorter run
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from record import commit, machine  # bench/record.py (the script's folder)

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist-test"
TARGETS = [
    "evaluation/confusion/summary.csv",
    "evaluation/accuracy.csv",
    "evaluation/training.csv",
]


def snakemake(results: Path, configs: list[str], config: list[str], cores: int) -> float:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(ROOT)]
    cmd += ["--cores", str(cores), "--configfile", *configs]
    cmd += ["--config", f"results={results}", *config, "--", *[f"{results}/{t}" for t in TARGETS]]
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def settings(extra: list[str]) -> list[str]:
    """``--set a.b=v`` -> snakemake ``--config a={b: v}``."""
    out = []
    for item in extra:
        key, _, value = item.partition("=")
        section, _, leaf = key.partition(".")
        out.append(f"{section}={{{leaf}: {value}}}" if leaf else f"{section}={value}")
    return out


# ---------------------------------------------------------------- MNIST


def mnist(out: Path, cores: int, extra: list[str]) -> dict:
    le = pd.read_csv(MNIST / "label_errors.csv")
    truth = {f"t10k:{i}" for i in le.loc[le["confirmed_error"].astype(bool), "index"]}
    res = out / "mnist"
    conf = ["config/mnist-test.yaml"]
    seconds = snakemake(res, conf, [f"dataset={{path: {MNIST}}}", *settings(extra)], cores)
    pairs = pd.read_csv(res / "evaluation/confusion/pairs.csv")
    pred = pd.read_parquet(res / "evaluation/predictions/t10k.parquet")
    bench = pd.read_csv(res / "benchmarks/confusion.tsv", sep="\t")
    rows = []
    for proto in sorted(pairs["proto"].unique()):
        top = pairs[(pairs["proto"] == proto) & (pairs["protocol"] == "top1")]
        top = top[top["p"] == top["p"].max()].head(10)
        p = pred[(pred["proto"] == proto) & (pred["protocol"] == "top1")]
        p = p[p["p"] == p["p"].max()]
        lo = np.minimum(p["label"], p["predicted"]).to_numpy()
        hi = np.maximum(p["label"], p["predicted"]).to_numpy()
        inside = (
            pd.MultiIndex.from_arrays([lo, hi]).isin(
                pd.MultiIndex.from_arrays([top["a"], top["b"]])
            )
            & (p["label"] != p["predicted"]).to_numpy()
        )
        hit = sorted(set(p.loc[inside, "image_id"]) & truth)
        rows.append(
            {
                "proto": proto,
                "accuracy %": round(100 * float(p["correct"].mean()), 2),
                "errors": int((~p["correct"]).sum()),
                "top pairs (a↔b: count, a→b / b→a)": "; ".join(
                    f"{r.a}↔{r.b}: {r.count} ({r.a_to_b}/{r.b_to_a})" for r in top.itertuples()
                ),
                "errors in the top-10 pairs": int(inside.sum()),
                "confirmed errors in them": f"{len(hit)} of {len(truth)} ({', '.join(hit)})",
            }
        )
    return {
        "table": pd.DataFrame(rows),
        "seconds": seconds,
        "confusion_seconds": float(bench["s"].iloc[0]),
        "command": f"config/mnist-test.yaml, dataset.path {MNIST}",
    }


# ---------------------------------------------------------------- photos


def photos(out: Path, cores: int, extra: list[str]) -> dict:
    groups = pd.read_csv(ROOT / "config/photos-groups.csv")
    photo = groups.set_index("label")["group"]
    rows = []
    runs = {
        "contiguous (labels_per_module 5)": ["config/photos.yaml"],
        "grouped by photograph": ["config/photos.yaml", "config/photos-grouped.yaml"],
    }
    seconds = {}
    for name, conf in runs.items():
        res = out / ("photos-grouped" if "grouped" in name else "photos")
        data = f"dataset={{path: {res}/data/photos}}"
        seconds[name] = snakemake(res, conf, [data, *settings(extra)], cores)
        acc = pd.read_csv(res / "evaluation/accuracy.csv")
        acc = acc[acc["protocol"] == "top1"]
        training = pd.read_csv(res / "evaluation/training.csv").set_index("proto")
        counts = pd.read_parquet(res / "evaluation/confusion/counts.parquet")
        counts = counts[counts["protocol"] == "top1"]
        modules = pd.read_csv(res / "evaluation/confusion/labels.csv")["module"].nunique()
        for proto in ("S_h1_m1", "T_h1_m1"):
            for p in sorted(acc["p"].unique()):
                a = acc[(acc["proto"] == proto) & (acc["p"] == p)].set_index("split")
                c = counts[(counts["proto"] == proto) & (counts["p"] == p)]
                wrong = c[c["given"] != c["predicted"]]
                same_photo = (
                    photo[wrong["given"]].to_numpy() == photo[wrong["predicted"]].to_numpy()
                )
                same_module = (wrong["given_module"] == wrong["predicted_module"]).to_numpy()
                n = wrong["count"].to_numpy()
                rows.append(
                    {
                        "modules": f"{name}: {modules}",
                        "proto": proto,
                        "featured": f"Model-{p}",
                        "train acc %": round(float(a.loc["train", "accuracy_pct"]), 1),
                        "held-out acc %": round(float(a.loc["heldout", "accuracy_pct"]), 1)
                        if "heldout" in a.index
                        else np.nan,
                        "error-free FNNs": training.loc[proto, "error_free_fnns_text"],
                        "errors": int(n.sum()),
                        "within the photograph %": round(100 * n[same_photo].sum() / n.sum(), 1),
                        "within the module %": round(100 * n[same_module].sum() / n.sum(), 1),
                    }
                )
    return {"table": pd.DataFrame(rows), "seconds": seconds}


# ---------------------------------------------------------------- page


def markdown(figs: dict, meta: dict) -> str:
    lines = [
        "## Confusion: measured figures",
        "",
        "Written by `bench/confusion_bench.py` (docs/confusion.md explains the tables).",
        "",
        *[f"- {k}: {v}" for k, v in meta.items()],
        "",
    ]
    if "mnist" in figs:
        m = figs["mnist"]
        lines += [
            "### MNIST test set: the most confused pairs",
            "",
            f"Pipeline {m['command']}: {m['seconds']:.0f} s wall; rule confusion "
            f"{m['confusion_seconds']:.1f} s. Top-1 vote of the largest featured model on the "
            "10,000 training images; a confirmed error is *in* the top-10 pairs when the model "
            "predicts it as the other label of one of those pairs.",
            "",
            m["table"].to_markdown(index=False),
            "",
        ]
    if "photos" in figs:
        ph = figs["photos"]
        secs = ", ".join(f"{k} {v:.0f} s" for k, v in ph["seconds"].items())
        lines += [
            "### Photos: contiguous modules vs modules grouped by photograph",
            "",
            f"config/photos.yaml against config/photos.yaml + config/photos-grouped.yaml (wall: {secs}). "
            "Top-1 vote; error-free FNNs of the proto-model; the share of the vote's errors whose "
            "predicted label is a part of the same photograph, and of the same module.",
            "",
            ph["table"].to_markdown(index=False),
            "",
        ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["mnist", "photos"], choices=["mnist", "photos"])
    ap.add_argument("--out", type=Path, default=ROOT / "results-confusion-bench")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument(
        "--set", nargs="*", default=[], help="config edits for every run: gdt.max_seconds=20"
    )
    ap.add_argument("--doc", type=Path, help="write the figures as a Markdown page here")
    a = ap.parse_args()
    meta = {
        "date": datetime.date.today().isoformat(),
        "commit": commit(),  # bench/record.py: also says when the code differs from it
        "machine": machine(),
        "command": "python bench/confusion_bench.py " + " ".join(sys.argv[1:]),
        "data": ", ".join(
            {
                "mnist": "MNIST test set (10,000 t10k images, 15 human-confirmed label errors)",
                "photos": "photos data set (20 parts of 6 photographs, 2,400 training crops, "
                "200 held out)",
            }[d]
            for d in a.data
        ),
    }
    figs = {}
    if "mnist" in a.data:
        if not (MNIST / "label_errors.csv").is_file():
            print(f"{MNIST}: the MNIST test set is not there", file=sys.stderr)
            return 2
        figs["mnist"] = mnist(a.out, a.cores, a.set)
        print(figs["mnist"]["table"].to_string())
    if "photos" in a.data:
        figs["photos"] = photos(a.out, a.cores, a.set)
        print(figs["photos"]["table"].to_string())
    if a.doc:
        a.doc.parent.mkdir(parents=True, exist_ok=True)
        a.doc.write_text(markdown(figs, meta))
        print(f"-> {a.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
