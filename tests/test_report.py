"""The HTML report: figure/table functions on tiny hand-made tables, and one end-to-end run of
the default workflow that builds Snakemake's report and checks pipeline-level facts."""

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from errorless.errors import DataError
from errorless.evaluate.table2 import choose_wheel_fnn
from errorless.report import confusion_figures, evaluation, runfacts, training
from errorless.report import figures as fg
from errorless.report import htmltables as ht
from errorless.report import report as rp

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path: Path) -> bool:
    return path.exists() and path.read_bytes()[:8] == PNG and path.stat().st_size > 2000


def training_records() -> pd.DataFrame:
    """2 features × 2 partitions, methods S and T; T is error-free except R m02_s1."""
    rows = []
    for method in ("S", "T"):
        for f in ("R", "G"):
            for m, s in (("m01", "s1"), ("m02", "s1")):
                s_acc = 0.98 if f == "R" else 0.99
                acc = s_acc if method == "S" else (0.995 if (f, m) == ("R", "m02") else 1.0)
                t = method == "T"
                rej = 2 if t and (f, m) == ("R", "m02") else 0
                lam = [0.1, 0.2, 0.2 + 0.1 / 1.5, 0.3] if rej else [0.5, 1.0]
                rows.append(
                    {
                        "proto": f"{method}_h1_m1",
                        "method": method,
                        "model": "h1_m1",
                        "feature": f,
                        "module": m,
                        "submodule": s,
                        "accuracy": acc,
                        "accuracy_sgd": s_acc,
                        "status": "error_free"
                        if acc == 1
                        else ("residual_errors" if t else "sgd_only"),
                        "gdt_rounds": 1 if t else 0,
                        "accepted": 2 if t else 0,
                        "rejected": rej,
                        "lambda_path": lam if t else [],
                        "delta_path": [0.1, 0.1, 0.1 / 1.5, 0.1 / 2.25]
                        if rej
                        else ([0.5, 0.5] if t else []),
                        "accepted_path": [True, False, True, False]
                        if rej
                        else ([True, True] if t else []),
                        "seconds_sgd": 0.5,
                        "seconds_gdt": 1.5 if t else 0.0,
                    }
                )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- training section


def test_training_table_puts_protos_side_by_side():
    table = pd.DataFrame(
        {
            "proto": ["T_h1_m1", "S_h1_m1", "Sp_h1_m1"],
            "fnns": [48, 48, 48],
            "partitions": [8, 8, 8],
            "min": [99.3, 98.0, 98.5],
            "mean": [99.9, 98.8, 99.0],
            "median": [100.0, 98.7, 99.0],
            "max": [100.0, 100.0, 100.0],
            "error_free_fnns": [42, 1, 5],
            "error_free_partitions": [7, 0, 0],
        }
    )
    side = training.training_side_by_side(table)
    assert list(side.columns) == ["S (S_h1_m1)", "S′ (Sp_h1_m1)", "T (T_h1_m1)"]
    assert side.loc["error-free FNNs", "T (T_h1_m1)"] == "42/48"
    assert side.loc["fully error-free partitions", "S (S_h1_m1)"] == "0/8"
    assert side.loc["min accuracy %", "S′ (Sp_h1_m1)"] == "98.500"
    assert "<table>" in ht.html_table(side, index=True)


def test_error_free_grid_figure(tmp_path):
    out = tmp_path / "grid.png"
    fg.error_free_grid_figure(training_records(), ["R", "G"], out)
    assert is_png(out)


def test_gdt_path_choice_and_figure(tmp_path):
    t = training_records()
    rec = training.choose_gdt_fnn(t)
    assert (rec["proto"], rec["feature"], rec["module"], rec["rejected"]) == (
        "T_h1_m1",
        "R",
        "m02",
        2,
    )
    fg.gdt_path_figure(rec, tmp_path / "gdt.png")
    assert is_png(tmp_path / "gdt.png")
    # no GDT at all: a figure that says so, not a crash
    assert training.choose_gdt_fnn(t[t["method"] == "S"]) is None
    fg.gdt_path_figure(None, tmp_path / "none.png")
    assert is_png(tmp_path / "none.png")


def test_wheel_choice_prefers_an_sgd_error_that_gdt_fixed():
    t = training_records()
    # partition order first, then feature order: m01_s1 R has S 0.98 and T 1.0
    assert choose_wheel_fnn(t, ["R", "G"]) == {
        "model": "h1_m1",
        "feature": "R",
        "module": "m01",
        "submodule": "s1",
    }
    assert choose_wheel_fnn(t, ["G", "R"])["feature"] == "G"
    # T never error-free: fall back to the first S-FNN below 100 %
    t2 = t.copy()
    t2.loc[t2["method"] == "T", "accuracy"] = 0.99
    assert choose_wheel_fnn(t2, ["R", "G"])["feature"] == "R"


def test_wheel_geometry():
    c = 5
    sp = confusion_figures.spokes(c)
    assert np.allclose(np.linalg.norm(sp, axis=1), 1)
    assert np.allclose(sp[0], [0, 1])  # label 0 at the top
    onehot = np.eye(c)
    assert np.allclose(
        confusion_figures.wheel_points(onehot), sp
    )  # a certain output sits on its spoke tip
    assert np.allclose(
        confusion_figures.wheel_points(np.full((1, c), 1 / c)), 0
    )  # no preference: the centre


def test_confusion_wheel_figure(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(5), 6)
    s = np.full((30, 5), 0.05)
    s[np.arange(30), labels] = 0.8
    s[:3] = np.roll(s[:3], 1, axis=1)  # three misclassified
    t = np.eye(5)[labels] * 0.96 + 0.01
    confusion_figures.confusion_wheel_figure(
        [("S_h1_m1", s), ("T_h1_m1", t + rng.uniform(0, 1e-3, t.shape))],
        labels,
        10,
        "test wheel",
        tmp_path / "wheel.png",
    )
    assert is_png(tmp_path / "wheel.png")


def test_wheel_is_drawn_from_the_evaluation_file_alone(tmp_path):
    """The report reads what evaluate-training wrote (evaluation/wheel.npz), no weights or
    shards; a file without panels gives a figure that says why."""
    from errorless.io import write_npz

    labels = np.repeat(np.arange(4), 5)
    probs = np.stack([np.eye(4)[labels] * 0.9 + 0.025] * 2).astype(np.float32)
    names = dict(model="h1_m1", feature="R", module="m01", submodule="s1")
    write_npz(
        tmp_path / "wheel.npz",
        protos=np.array(["S_h1_m1", "T_h1_m1"]),
        probs=probs,
        labels=labels,
        label_lo=np.int64(4),
        label_hi=np.int64(8),
        note=np.array(""),
        **{k: np.array(v) for k, v in names.items()},
    )
    assert training.wheel_figure(tmp_path / "wheel.npz", tmp_path / "w.png") == names
    assert is_png(tmp_path / "w.png")
    write_npz(
        tmp_path / "none.npz",
        protos=np.array([], dtype=str),
        probs=np.zeros((0, 0, 0), np.float32),
        note=np.array("no shards"),
    )
    assert training.wheel_figure(tmp_path / "none.npz", tmp_path / "n.png") is None
    assert is_png(tmp_path / "n.png")
    with pytest.raises(DataError, match="evaluate-training"):
        training.wheel_figure(tmp_path / "missing.npz", tmp_path / "m.png")


# ---------------------------------------------------------------- evaluation section


def accuracy_rows() -> pd.DataFrame:
    rows = []
    for proto, base in (("S_h1_m1", 80.0), ("T_h1_m1", 98.0)):
        for p in (3, 6):
            for protocol in ("top1", "top3"):
                for split in ("train", "heldout"):
                    rows.append(
                        {
                            "proto": proto,
                            "featured_model": f"Model-{p}",
                            "p": p,
                            "protocol": protocol,
                            "split": split,
                            "images": 100,
                            "correct": 90,
                            "super_majority_correct": 80,
                            "accuracy_pct": base + p / 3 - (10 if split == "heldout" else 0),
                            "top1_rate_pct": 99.0 - p,
                        }
                    )
    return pd.DataFrame(rows)


def test_accuracy_vs_features_table_and_plot(tmp_path):
    acc = accuracy_rows()
    t = evaluation.accuracy_vs_features(acc)
    assert len(t) == 2 * 2 * 2  # split × protocol × p
    assert list(t.columns[:4]) == ["split", "protocol", "features p", "model"]
    assert t.iloc[0]["split"] == "train" and t.iloc[0]["features p"] == 3
    row = t[(t["split"] == "train") & (t["protocol"] == "top1") & (t["features p"] == 6)].iloc[0]
    assert row["T_h1_m1 accuracy %"] == pytest.approx(100.0) and row["S_h1_m1 Top-1 %"] == 93.0
    fg.accuracy_figure(acc, tmp_path / "acc.png")
    assert is_png(tmp_path / "acc.png")


def test_perfect_labels_table_and_plot(tmp_path):
    keys = {"proto": "T_h1_m1", "featured_model": "Model-3", "protocol": "top1", "split": "train"}
    per_batch = pd.DataFrame(
        [
            {
                **keys,
                "batch": "b1",
                "labels_present": 4,
                "perfect_labels": 3,
                "perfect_label_list": "0 1 2",
            },
            {
                **keys,
                "batch": "b2",
                "labels_present": 4,
                "perfect_labels": 2,
                "perfect_label_list": "0 2",
            },
        ]
    )
    perfect = pd.DataFrame(
        [
            {
                **keys,
                "batches": 2,
                "mean_perfect_per_batch": 2.5,
                "perfect_all_batches": 2,
                "perfect_all_batches_labels": "0 2",
            }
        ]
    )
    t = evaluation.perfect_table(perfect, per_batch)
    r = t.iloc[0]
    assert (r["perfect in b1"], r["perfect in b2"]) == ("3", "2")
    assert r["labels perfect in every batch"] == "0 2" and r["mean per batch"] == 2.5
    fg.perfect_figure(per_batch, tmp_path / "perfect.png")
    assert is_png(tmp_path / "perfect.png")


# ---------------------------------------------------------------- quality and run sections


def args(**kw) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    rp.figures_arguments(p)
    a = p.parse_args(["--section", kw.pop("section"), "--out-dir", str(kw.pop("out_dir"))])
    for k, v in kw.items():
        setattr(a, k, str(v))
    return a


def test_quality_section_pages(tmp_path):
    report = pd.DataFrame(
        [
            {
                "rank": 1,
                "score": 4.5,
                "evidence": "exact_duplicate+residual",
                "group_size": 2,
                "ids": "b1:3;b2:7",
                "labels": "15;17",
                "module_a": "m04",
                "submodule_a": "s1",
                "module_b": "m04",
                "submodule_b": "s1",
                "kind": "exact",
                "similarity": 1.0,
                "n_features_failed": 6,
                "n_features": 6,
            }
        ]
    )
    report.to_parquet(tmp_path / "dl.parquet")
    pd.DataFrame(
        [
            {
                "kind": "overall",
                "planted": 6,
                "found": 6,
                "reported": 6,
                "correct": 6,
                "precision": 1.0,
                "recall": 0.5,
                "flagged_by_training": 2,
                "note": "",
            }
        ]
    ).to_csv(tmp_path / "check.csv", index=False)
    out = tmp_path / "out"
    assert (
        rp.figures_main(
            args(
                section="quality",
                out_dir=out,
                suspects=tmp_path / "dl.parquet",
                planted_check=tmp_path / "check.csv",
            )
        )
        == 0
    )
    page = (out / "suspects.html").read_text()
    assert "b1:3; b2:7" in page and "exact_duplicate + residual" in page and "6/6" in page
    assert "exact_duplicate+residual: 1" in page and "m04_s1" in page
    assert ">match</th>" in page and ">exact</td>" in page
    check = (out / "planted_check.html").read_text()
    assert "100.0 %" in check and "50.0 %" in check


def test_run_section_reads_benchmarks(tmp_path):
    bench = tmp_path / "benchmarks"
    (bench / "train" / "h1_m1" / "R").mkdir(parents=True)
    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for name, s in (("train/h1_m1/R/m01_s1", 3.0), ("train/h1_m1/R/m01_s2", 5.0), ("gather", 2.0)):
        (bench / f"{name}.tsv").write_text(
            head + f"{s}\t0:00:0{int(s)}\t300\t800\t0\t0\t0\t0\t50\t{s / 2}\n"
        )
    phases = runfacts.phase_table(runfacts.read_benchmarks(bench))
    by = phases.set_index("phase")
    assert by.loc["train", "jobs"] == 2 and by.loc["train", "wall s (sum)"] == 8.0
    assert by.loc["total", "jobs"] == 3 and by.loc["total", "CPU s (sum)"] == 5.0
    training_records().to_parquet(tmp_path / "training.parquet")
    (tmp_path / "config.yaml").write_text(
        "dataset: {format: synthetic, path: data}\nfeatures: [R, G]\n"
    )
    out = tmp_path / "out"
    rp.figures_main(
        args(
            section="run",
            out_dir=out,
            config=tmp_path / "config.yaml",
            training=tmp_path / "training.parquet",
            benchmarks=bench,
        )
    )
    page = (out / "run_facts.html").read_text()
    assert "synthetic" in page and "FNNs trained (jobs)" in page and "gather" in page
    assert is_png(out / "compute_time.png")


def test_missing_inputs_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="--accuracy"):
        rp.figures_main(args(section="evaluation", out_dir=tmp_path))
    with pytest.raises(DataError, match="missing"):
        rp.figures_main(
            args(
                section="evaluation",
                out_dir=tmp_path,
                accuracy=tmp_path / "no.csv",
                perfect=tmp_path / "no.csv",
                perfect_per_batch=tmp_path / "no.csv",
            )
        )


# ---------------------------------------------------------------- end to end


REPORT_ITEMS = {  # report file -> label text shown for it
    "training_table.html": "training evaluation, S / S′ / T side by side",
    "error_free_grid.png": "error-free grid",
    "gdt_path.png": "GDT lambda-path of one FNN",
    "confusion_wheel.png": "confusion wheel, SGD beside GDT",
    "accuracy_vs_features.html": "accuracy and Top-1 vs features (table)",
    "accuracy_vs_features.png": "accuracy and Top-1 vs features (plot)",
    "perfect_labels.html": "perfect labels per batch and in every batch",
    "perfect_labels.png": "perfect labels per batch (plot)",
    "confusion_pairs.html": "confusion: most confused label pairs",
    "confusion_pairs.png": "confusion: images behind the top pairs",
    "confusion_modules.png": "confusion: heatmap per module",
    "confusion_module_matrix.png": "confusion: module x module",
    "suspects.png": "suspect thumbnails",
    "suspects.html": "suspects, ranked",
    "planted_check.html": "planted truth: precision and recall",
    "run_facts.html": "run facts",
    "compute_time.png": "compute time per phase",
}


@pytest.mark.slow
def test_default_run_builds_the_report(default_run):
    """The default workflow and `snakemake --report` (the shared default_run fixture): the report
    and pipeline-level facts (GDT error-free where no conflict is planted, SGD below 100 % somewhere)."""
    tmp_path = default_run
    res = tmp_path / "results"
    training = pd.read_parquet(res / "training.parquet")
    planted = pd.read_csv(res / "data/synthetic/planted.csv")
    conflict_shards = {
        (m, s)
        for k, m, s, m2, s2 in planted[
            ["kind", "module_a", "submodule_a", "module_b", "submodule_b"]
        ].itertuples(index=False)
        if k == "same_shard" and (m, s) == (m2, s2)
    }
    assert conflict_shards, "the default data plants same-shard conflicts"
    t = training[training["method"] == "T"]
    clean = t[
        [(m, s) not in conflict_shards for m, s in zip(t["module"], t["submodule"], strict=True)]
    ]
    assert (
        len(clean) > 0
        and (clean["accuracy"] == 1.0).all()
        and (clean["status"] == "error_free").all()
    )
    dirty = t[[(m, s) in conflict_shards for m, s in zip(t["module"], t["submodule"], strict=True)]]
    assert (dirty["accuracy"] < 1.0).all()  # two labels on one input cannot both be fitted
    s = training[training["method"] == "S"]
    assert (s["accuracy"] < 1.0).any() and (s["accuracy"] >= 0.98).all()
    # the published figures for SGD (docs/performance.md) are those of this run
    readme = (ROOT / "docs" / "performance.md").read_text()
    row = re.search(
        r"S_h1_m1: (\d+)/48 error-free, the others stop at ([\d.]+)-([\d.]+) % "
        r"\(median of all 48: ([\d.]+) %; (\d+) of 48 at 99\.0-99\.7 %\)",
        readme,
    )
    assert row, "docs/performance.md lacks the default run's SGD figures"
    pct = (s["accuracy"] * 100).round(1)
    below = pct[pct < 100]
    assert int(row[1]) == int((pct == 100).sum())
    assert (float(row[2]), float(row[3])) == (below.min(), below.max())
    assert float(row[4]) == round(float(np.median(s["accuracy"] * 100)), 1)
    assert int(row[5]) == int(((pct >= 99.0) & (pct < 100)).sum())

    page = (tmp_path / "report.html").read_text()
    for name, label in REPORT_ITEMS.items():
        assert name in page, f"report lacks {name}"
        # labels sit in the report's JSON data (non-ASCII characters \u-escaped)
        assert label in page or json.dumps(label)[1:-1] in page, f"report lacks the label {label!r}"
    for category in ("1. Training", "2. Model evaluation", "3. Double labelling", "4. Run"):
        assert category in page
    for name in REPORT_ITEMS:
        if name.endswith(".png") and name != "suspects.png":
            assert is_png(res / "report" / name), name
    facts = (res / "report/run_facts.html").read_text()
    assert "train" in facts and "FNNs trained (jobs)" in facts
    # the third evidence (single mislabelled images) with its planted check
    for label in (
        "label issues: single mislabelled images (label_issues.csv)",
        "label issues: planted flips, precision and recall",
    ):
        assert label in page or json.dumps(label)[1:-1] in page, f"report lacks {label!r}"
    # every planted copy of the default data set is found with its kind of match
    copies = pd.read_csv(res / "quality/planted_check.csv").set_index("kind")
    kinds = sorted(set(planted["kind"]) - {"label_flip"})
    assert len(kinds) == 10 and (copies.loc[kinds, "recall"] == 1.0).all(), copies.loc[kinds]
    check = pd.read_csv(res / "quality/label_issues_check.csv").set_index("evidence")
    flips = int((planted["kind"] == "label_flip").sum())
    assert (
        flips > 0 and check.loc["either", "planted"] == flips and check.loc["either", "recall"] > 0
    )


# ---------------------------------------------------------------- in a browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=60000",  # lets the page's JS (React, timers) run to the end
]


def chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(dir=tmp_path, prefix="chromium-")
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("ERRORLESS_REQUIRE_BROWSER"),
    reason="no chromium (apt-get install chromium; .ci/run installs it)",
)
def test_report_renders_in_a_browser(default_run, tmp_path):
    """Headless Chromium opens report.html, goes through every category and result as a reader
    would (tests/browser/report_driver.js), and each section shows its tables and figures."""
    assert CHROMIUM, "ERRORLESS_REQUIRE_BROWSER is set but chromium is not installed"
    page = (default_run / "report.html").read_text()
    driver = (ROOT / "tests/browser/report_driver.js").read_text()
    end = page.rfind("</body>")
    test_page = tmp_path / "report_driven.html"
    test_page.write_text(page[:end] + f"<script>{driver}</script>" + page[end:])

    r = chromium(tmp_path, test_page.as_uri(), "--dump-dom")
    # the last match: the driver's own source (in a <script>) names the element too
    found = re.findall(r'<pre id="errorless-check"[^>]*>(\{.*?)</pre>', r.stdout, re.S)
    assert found, f"the report's JavaScript did not finish: {r.stderr[-2000:]}"
    seen = json.loads(html.unescape(found[-1]))
    assert "fatal" not in seen, seen
    shown = seen["categories"]
    assert set(shown) == {"1. Training", "2. Model evaluation", "3. Double labelling", "4. Run"}
    names = {item["name"] for items in shown.values() for item in items}
    assert set(REPORT_ITEMS) | {"label_issues.png", "training.csv", "accuracy.csv"} <= names
    confusion = {
        n for n in REPORT_ITEMS if n.startswith("confusion_") and n != "confusion_wheel.png"
    }
    assert confusion <= {item["name"] for item in shown["2. Model evaluation"]}
    for category, items in shown.items():
        kinds = {item["shown"] for item in items}
        assert "img" in kinds and kinds & {"iframe", "download"}, (category, kinds)
        for item in items:
            where = (category, item["name"])
            assert item["listed"], f"{where}: its label is not in the category's list"
            if item["shown"] == "img":  # decoded and laid out by the browser
                assert item["width"] >= 300 and item["height"] >= 200, (where, item)
            elif item["name"].endswith(".html"):
                assert item["shown"] == "iframe", where
                assert item["tables"] >= 1 and item["rows"] >= 2, (where, item)
            else:  # CSV: a download with a header and rows
                assert item["shown"] == "download" and item["rows"] >= 2, (where, item)

    # one figure left on screen: the screenshot has the report's menu and the figure
    shot = tmp_path / "confusion_wheel.png"
    url = test_page.as_uri() + "#show=results/report/confusion_wheel.png"
    r = chromium(tmp_path, url, "--window-size=1400,900", f"--screenshot={shot}")
    assert r.returncode == 0 and is_png(shot), r.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        right = np.asarray(im.convert("RGB"))[:, 700:]  # the content pane, right of the menu
    colours = np.unique(right.reshape(-1, 3) // 32, axis=0)
    assert len(colours) >= 8, "the content pane of the screenshot is blank"
