"""gather: per-job files -> weights.parquet / training.parquet; exact round trip; missing jobs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from errorless.cli import main
from errorless.errors import DataError
from errorless.gather.gather import gather
from errorless.gather.jobs import job_at
from errorless.gather.load import load_fnn, load_proto
from errorless.io import arrays_digest

FEATURES = ["R", "G"]
GROUPS = [("m01", "s1"), ("m01", "s2"), ("m02", "s1"), ("m02", "s2")]
C = 3


def fake_weights(seed: int, hidden=(5,), n_in: int = 7) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    sizes = [n_in, *hidden, C]
    return [
        (
            np.round(rng.normal(size=(a, b)), 4).astype(np.float32),
            np.round(rng.normal(size=b), 4).astype(np.float32),
        )
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def write_job(
    results: Path, model: str, feature: str, module: str, sub: str, methods=("S", "T")
) -> dict:
    job = job_at(results, model, feature, module, sub)
    job.prefix.parent.mkdir(parents=True, exist_ok=True)
    arrays, records, saved = {}, [], {}
    for k, method in enumerate(methods):
        layers = fake_weights(hash((model, feature, module, sub, k)) % 2**32)
        saved[method] = layers
        for i, (W, b) in enumerate(layers, start=1):
            arrays[f"{method}/W{i}"], arrays[f"{method}/b{i}"] = W, b
        records.append(
            {
                "proto": f"{method}_{model}",
                "method": method,
                "model": model,
                "arch": "h1",
                "replicate": 1,
                "feature": feature,
                "module": module,
                "submodule": sub,
                "n_images": 10,
                "n_inputs": 7,
                "n_labels": C,
                "label_lo": (int(module[1:]) - 1) * C,
                "hidden": [5],
                "n_params": 58,
                "accuracy": 1.0 if method == "T" else 0.9,
                "accuracy_sgd": 0.9,
                "epochs": 3,
                "gdt_rounds": 1,
                "accepted": 4,
                "rejected": 1,
                "lambda_path": [0.1, 0.5, 1.0],
                "delta_path": [0.1, 0.15, 0.2],
                "accepted_path": [True, False, True],
                "residual_ids": [] if method == "T" else ["b:1"],
                "residual_labels": [] if method == "T" else [1],
                "residual_predicted": [] if method == "T" else [2],
                "conflicts": [{"ids": ["b:3", "b:4"], "labels": [0, 1]}] if method == "T" else [],
                "no_anchor_labels": [],
                "status": "error_free" if method == "T" else "sgd_only",
                "seconds_sgd": 0.5,
                "seconds_gdt": 1.5,
                "seed": 7,
                "settings": {"features": FEATURES, "seed": 7},
            }
        )
    np.savez(job.weights, **arrays)
    job_info = {"host": "x", "weights_sha256": arrays_digest(arrays)}
    job.metrics.write_text(json.dumps({"job": job_info, "records": records}))
    return saved


@pytest.fixture
def grid(tmp_path):
    results = tmp_path / "results"
    saved = {}
    for feature in FEATURES:
        for m, s in GROUPS:
            saved[(feature, m, s)] = write_job(results, "h1_m1", feature, m, s)
    jobs = [job_at(results, "h1_m1", f, m, s) for f in FEATURES for m, s in GROUPS]
    return results, jobs, saved


def test_gather_writes_both_tables_and_weights_round_trip_exactly(grid, tmp_path):
    results, jobs, saved = grid
    wout, tout = tmp_path / "weights.parquet", tmp_path / "training.parquet"
    n_w, n_t = gather(jobs, wout, tout)
    assert n_w == 2 * 8 * 2 * 2  # protos x FNNs x layers x {W, b}
    assert n_t == 2 * 8
    w = pq.read_table(wout)
    assert {"proto", "shape", "values", "label_lo", "settings"} <= set(w.column_names)
    assert str(w.schema.field("values").type) == "list<element: float>"
    assert pq.ParquetFile(wout).num_row_groups == 2 * len(FEATURES)  # one per (proto, feature)
    for (feature, m, s), by_method in saved.items():
        for method, layers in by_method.items():
            got = load_fnn(wout, f"{method}_h1_m1", feature, m, s)
            assert len(got) == len(layers)
            for (W, b), (W0, b0) in zip(got, layers, strict=True):
                assert W.dtype == np.float32 and np.array_equal(W, W0) and np.array_equal(b, b0)
    got_tbl = load_fnn(w, "T_h1_m1", "G", "m02", "s2")  # also from an in-memory table
    assert np.array_equal(got_tbl[0][0], saved[("G", "m02", "s2")]["T"][0][0])
    t = pq.read_table(tout).to_pandas()
    assert len(t) == 16 and set(t["proto"]) == {"S_h1_m1", "T_h1_m1"}
    row = t[
        (t.proto == "T_h1_m1") & (t.feature == "R") & (t.module == "m02") & (t.submodule == "s1")
    ].iloc[0]
    assert list(row["lambda_path"]) == [0.1, 0.5, 1.0] and row["status"] == "error_free"
    assert json.loads(row["conflicts"]) == [{"ids": ["b:3", "b:4"], "labels": [0, 1]}]
    assert json.loads(row["job"])["host"] == "x"


def test_load_proto_stacks_all_fnns(grid, tmp_path):
    _, jobs, saved = grid
    wout = tmp_path / "weights.parquet"
    gather(jobs, wout, tmp_path / "training.parquet")
    pw = load_proto(wout, "T_h1_m1", ["G", "R"])
    assert pw.features == ["G", "R"] and pw.groups == GROUPS
    assert pw.layers[0][0].shape == (2, 4, 7, 5) and pw.layers[1][1].shape == (2, 4, C)
    assert list(pw.label_lo) == [0, 0, 3, 3]
    assert np.array_equal(pw.layers[1][0][1, 2], saved[("R", "m02", "s1")]["T"][1][0])
    assert pw.settings == {"features": FEATURES, "seed": 7}
    with pytest.raises(DataError, match="proto-model 'X_h1_m1' not in"):
        load_proto(wout, "X_h1_m1")


def test_missing_job_fails_naming_it_and_writes_nothing(grid, tmp_path):
    _, jobs, _ = grid
    missing = next(j for j in jobs if (j.feature, j.module, j.submodule) == ("G", "m02", "s1"))
    missing.weights.unlink()
    wout, tout = tmp_path / "weights.parquet", tmp_path / "training.parquet"
    with pytest.raises(DataError, match="feature=G module=m02 submodule=s1") as e:
        gather(jobs, wout, tout)
    assert str(missing.weights) in str(e.value)
    assert not wout.exists() and not tout.exists()


def test_corrupt_job_fails_naming_it_and_leaves_no_partial_table(grid, tmp_path):
    _, jobs, _ = grid
    bad = jobs[-1]
    bad.weights.write_bytes(b"not a zip")
    wout, tout = tmp_path / "weights.parquet", tmp_path / "training.parquet"
    with pytest.raises(
        DataError, match=f"feature={bad.feature} module={bad.module}.*unreadable weights"
    ):
        gather(jobs, wout, tout)
    assert not wout.exists() and not tout.exists()
    assert not list(tmp_path.glob(".weights.parquet.*"))  # temporary file removed


def test_metrics_disagreeing_with_path_is_an_error(grid, tmp_path):
    _, jobs, _ = grid
    doc = json.loads(jobs[0].metrics.read_text())
    doc["records"][0]["module"] = "m02"
    jobs[0].metrics.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="module='m02'|module=.m02."):
        gather(jobs, tmp_path / "w.parquet", tmp_path / "t.parquet")


def test_cli_gather_from_jobs_file_and_from_paths(grid, tmp_path, capsys):
    results, jobs, _ = grid
    jobs_file = tmp_path / "jobs.tsv"
    jobs_file.write_text(
        "model\tfeature\tmodule\tsubmodule\n"
        + "".join(f"{j.model}\t{j.feature}\t{j.module}\t{j.submodule}\n" for j in jobs)
    )
    from_file = ["--jobs-file", str(jobs_file), "--results", str(results)]
    from_paths = ["--jobs", *[str(j.weights) for j in jobs]]

    def gather(source, out):
        return main(
            [
                "gather",
                *source,
                "--weights-out",
                str(out / "weights.parquet"),
                "--training-out",
                str(out / "training.parquet"),
            ]
        )

    assert gather(from_file, tmp_path / "a") == 0
    assert gather(from_paths, tmp_path / "b") == 0
    assert pq.read_table(tmp_path / "a" / "weights.parquet").equals(
        pq.read_table(tmp_path / "b" / "weights.parquet")
    )
    jobs[3].metrics.unlink()
    assert gather(from_file, tmp_path / "a") == 2
    assert f"module={jobs[3].module}" in capsys.readouterr().err


def test_weights_of_another_run_beside_a_metrics_file_are_refused(grid, tmp_path):
    """Same shapes, other values: the metrics file's weights_sha256 ties it to its weights."""
    _, jobs, _ = grid
    a, b = jobs[0], jobs[1]  # same architecture, so the swapped file has the same shapes
    a.weights.write_bytes(b.weights.read_bytes())
    wout, tout = tmp_path / "w.parquet", tmp_path / "t.parquet"
    with pytest.raises(DataError, match=f"{a.weights} does not belong to {a.metrics}"):
        gather(jobs, wout, tout)
    assert not wout.exists() and not tout.exists()


def test_metrics_without_a_weights_digest_are_refused(grid, tmp_path):
    _, jobs, _ = grid
    doc = json.loads(jobs[2].metrics.read_text())
    del doc["job"]["weights_sha256"]
    jobs[2].metrics.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="has no job.weights_sha256"):
        gather(jobs, tmp_path / "w.parquet", tmp_path / "t.parquet")


@pytest.mark.parametrize("with_manifest", [False, True])
def test_a_glob_with_a_hole_is_refused(grid, tmp_path, capsys, with_manifest):
    """`gather --jobs results/fnn/*/*/*.metrics.json` with one metrics file gone: the shell's
    glob just leaves it out; gather names the hole instead of gathering 7 of 8."""
    results, jobs, _ = grid
    if with_manifest:  # a whole module missing for every feature is seen through the manifest
        (results / "shards").mkdir()
        (results / "shards" / "manifest.tsv").write_text(
            "module\tsubmodule\n" + "".join(f"{m}\t{s}\n" for m, s in [*GROUPS, ("m03", "s1")])
        )
    else:
        jobs[5].metrics.unlink()
    listed = sorted(str(p) for p in results.glob("fnn/*/*/*.metrics.json"))
    out = tmp_path / "out"
    rc = main(
        [
            "gather",
            "--jobs",
            *listed,
            "--weights-out",
            str(out / "w.parquet"),
            "--training-out",
            str(out / "t.parquet"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    line = next(ln for ln in err.splitlines() if "error:" in ln)
    hole = (
        "m03_s1"
        if with_manifest
        else f"feature={jobs[5].feature} {jobs[5].module}_{jobs[5].submodule}"
    )
    assert "missing from the job list" in line and hole in line
    assert not out.exists() or not any(out.iterdir())


def test_a_write_removes_temporaries_a_killed_write_left(tmp_path):
    """atomic_path (every output of every rule) first removes `.<name>.*.tmp` of the same path."""
    from errorless.io import write_bytes

    target = tmp_path / "weights.parquet"
    stale = tmp_path / ".weights.parquet.x1y2.tmp"
    other = tmp_path / ".training.parquet.x1y2.tmp"  # another path's: not this write's business
    stale.write_bytes(b"")
    other.write_bytes(b"")
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and not stale.exists() and other.exists()
