"""Full-size rehearsal (issue 15): the streaming synthetic writer, streamed weights, per-module
reading and evaluation -- checked on small sizes against the in-memory versions."""

import csv
import re

import numpy as np
import pytest

from errorless.config import load_config
from errorless.data import datasets, synthetic


def _stream_cfg(tmp_path, **over):
    s = {
        "labels": 10,
        "image_size": 32,
        "images_per_label": 60,
        "batches": 4,
        "validation_per_label": 5,
        "plant_flips": 2,
        "stream": True,
        **over,
    }
    return load_config(
        overrides={
            "dataset": {"path": str(tmp_path), "batches": s["batches"]},
            "synthetic": s,
            "modules": {"labels_per_module": 5, "submodules": 2},
        }
    )


def test_streaming_synthetic_equals_in_memory_and_keeps_the_contract(tmp_path):
    cfg = _stream_cfg(tmp_path)
    want, planted = synthetic.generate_chunked(cfg, chunk=64)
    synthetic.write_streaming(cfg, tmp_path, chunk=64)
    names = [f"train_data_batch_{b}" for b in range(1, 5)] + ["val_data"]
    assert sorted(want) == sorted(names)
    imgs = {}
    for name in names:
        got = datasets.load_batch(cfg, name)
        np.testing.assert_array_equal(got.images, want[name][0])
        np.testing.assert_array_equal(got.labels, want[name][1])
        imgs.update(zip(got.ids, got.images, strict=True))
    with open(tmp_path / "planted.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id_a"] for r in rows] == [p["id_a"] for p in planted]
    kinds = [p["kind"] for p in planted]
    near = cfg["synthetic"]["near_kinds"]
    assert kinds == ["same_shard"] * 2 + ["cross_module"] * 2 + near + ["label_flip"] * 2
    for p in planted:
        assert p["label_a"] != p["label_b"]
        if p["kind"] == "label_flip":
            continue
        if p["placement"] == "same_shard":
            assert (p["module_a"], p["submodule_a"]) == (p["module_b"], p["submodule_b"])
        else:
            assert p["module_a"] != p["module_b"]
        same = np.array_equal(imgs[p["id_a"]], imgs[p["id_b"]])
        assert same == (p["kind"] in ("same_shard", "cross_module"))
        if p["kind"] == "flip":
            np.testing.assert_array_equal(imgs[p["id_a"]][:, ::-1], imgs[p["id_b"]])
    # deterministic, and a rewrite of the same bytes keeps the files (mtime)
    before = {n: (tmp_path / n).stat().st_mtime_ns for n in names}
    synthetic.write_streaming(cfg, tmp_path, chunk=64)
    assert before == {n: (tmp_path / n).stat().st_mtime_ns for n in names}


def test_streaming_synthetic_holds_about_one_batch(tmp_path):
    """Peak Python/numpy allocations: one batch of planes (+ chunk temporaries), not the set."""
    import tracemalloc

    cfg = _stream_cfg(tmp_path, labels=10, images_per_label=400, batches=8, plant_flips=0)
    batch_bytes = 10 * 400 * 3 * 32 * 32  # 12.3 MB; the set is 8 of them
    tracemalloc.start()
    synthetic.write_streaming(cfg, tmp_path, chunk=64)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2 * batch_bytes, (peak, batch_bytes)  # the set: 8 x batch_bytes
    assert len(datasets.load_batch(cfg, "train_data_batch_8")) == 4000


@pytest.mark.parametrize("stream", [False, True])
def test_generator_choice_is_a_setting(tmp_path, stream):
    cfg = _stream_cfg(tmp_path, stream=stream, images_per_label=8, batches=2)
    synthetic.write(cfg, tmp_path)
    assert len(datasets.load_batch(cfg, "train_data_batch_2")) == 80


# ---------------------------------------------------------------- weights: streamed, per module


def _gather_grid(tmp_path, modules=3, features=("R", "G", "B"), models=("h1_m1", "h2_m1")):
    from test_gather import write_job

    from errorless.gather.jobs import job_at

    results = tmp_path / "results"
    jobs = []
    for model in models:
        for f in features:
            for m in range(1, modules + 1):
                for s in ("s1", "s2"):
                    write_job(results, model, f, f"m{m:02d}", s, methods=("S", "Sp", "T"))
                    jobs.append(job_at(results, model, f, f"m{m:02d}", s))
    return jobs


def _all_in_memory(jobs):
    """The old gather: every job's rows in one table (the oracle)."""
    from errorless.gather.jobs import metrics_digest, read_metrics, read_weights
    from errorless.gather.tables import _weight_rows, weights_table

    rows = []
    for job in jobs:
        recs = read_metrics(job)
        w = read_weights(job, [r["method"] for r in recs], metrics_digest(job, recs))
        for rec in recs:
            rows.extend(_weight_rows(job, rec, w[rec["method"]]))
    return weights_table(rows)


def test_streamed_weights_equal_the_all_in_memory_table_and_read_per_module(tmp_path):
    import pyarrow.parquet as pq

    from errorless.gather.gather import gather
    from errorless.gather.load import load_proto, module_sizes, modules_in, protos_in

    jobs = _gather_grid(tmp_path)
    out = tmp_path / "weights.parquet"
    gather(jobs, out, tmp_path / "training.parquet")
    old = _all_in_memory(jobs)
    keys = [(k, "ascending") for k in ("proto", "feature", "module", "submodule", "layer", "kind")]
    new = pq.read_table(out)
    assert new.sort_by(keys).equals(old.sort_by(keys))
    # one row group per (proto, module), so a module filter reads one row group
    md = pq.ParquetFile(out).metadata
    assert md.num_row_groups == 6 * 3
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        for c in range(rg.num_columns):
            if rg.column(c).path_in_schema in ("proto", "module"):
                st = rg.column(c).statistics
                assert st.min == st.max
    for proto in protos_in(out):
        full = load_proto(old, proto)
        assert load_proto(out, proto).groups == full.groups
        assert modules_in(out, proto) == ["m01", "m02", "m03"]
        assert sum(module_sizes(out, proto).values()) == 4 * sum(
            W.size + b.size for W, b in full.layers
        )
        for k, m in enumerate(["m01", "m02", "m03"]):
            part = load_proto(out, proto, modules=[m])
            assert part.groups == [(m, "s1"), (m, "s2")]
            np.testing.assert_array_equal(part.label_lo, full.label_lo[2 * k : 2 * k + 2])
            for (W, b), (Wf, bf) in zip(part.layers, full.layers, strict=True):
                np.testing.assert_array_equal(W, Wf[:, 2 * k : 2 * k + 2])
                np.testing.assert_array_equal(b, bf[:, 2 * k : 2 * k + 2])


def test_gather_holds_about_one_module_not_all_weights(tmp_path):
    """Peak Python/numpy allocations of gather: one (module, architecture)'s weights (3 of
    the 24 (module, architecture) pairs here), not the whole grid's."""
    import tracemalloc

    import test_gather

    from errorless.gather.gather import gather

    saved = test_gather.fake_weights
    test_gather.fake_weights = lambda seed: saved(seed, hidden=(64,), n_in=300)  # 80 KB an FNN
    try:
        jobs = _gather_grid(tmp_path, modules=12, features=("R", "G", "B", "X"))
    finally:
        test_gather.fake_weights = saved
    total = sum(j.weights.stat().st_size for j in jobs)  # ~2 x 12 x 8 x 3 x 80 KB = 46 MB
    one_module_one_arch = total / 24
    tracemalloc.start()
    gather(jobs, tmp_path / "w.parquet", tmp_path / "t.parquet")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * one_module_one_arch, (peak, one_module_one_arch, total)
    assert peak < 0.2 * total


def _random_proto_table(features, modules, c, D, seed=0, same_as_first=()):
    """A weights table of one proto-model (T_h1_m1) with random FNNs; the modules named in
    ``same_as_first`` get module 1's weights (exact ties between groups across passes)."""
    from errorless.gather.tables import weights_table

    rng = np.random.default_rng(seed)
    rows, first = [], {}
    for f in features:
        for mi, m in enumerate(modules):
            for s in ("s1", "s2"):
                if m in same_as_first:
                    layers = first[(f, s)]
                else:
                    layers = [
                        (
                            rng.normal(size=(D, 16)).astype(np.float32),
                            rng.normal(size=16).astype(np.float32),
                        ),
                        (
                            rng.normal(size=(16, c)).astype(np.float32),
                            rng.normal(size=c).astype(np.float32),
                        ),
                    ]
                    if mi == 0:
                        first[(f, s)] = layers
                base = dict(
                    proto="T_h1_m1", method="T", model="h1_m1", arch="h1", replicate=1,
                    feature=f, module=m, submodule=s, label_lo=mi * c, n_labels=c, settings="{}",
                )  # fmt: skip
                for i, (W, b) in enumerate(layers, start=1):
                    rows += [
                        ({**base, "layer": i, "kind": "W"}, W),
                        ({**base, "layer": i, "kind": "b"}, b),
                    ]
    return weights_table(rows)


@pytest.mark.parametrize("max_mb", [None, 1e-9, 0.05])
def test_evaluation_in_module_passes_equals_one_pass(tmp_path, max_mb):
    import pyarrow.parquet as pq

    from errorless.evaluate.inference import model_votes, proto_votes
    from errorless.features import transform_many
    from errorless.gather.load import load_proto

    transform = {"pool": 2, "trim": 1, "decimals": 4}
    features = ["R", "G", "B"]
    images = np.random.default_rng(1).integers(0, 256, (300, 16, 16, 3), dtype=np.uint8)
    D = transform_many(images[:1], features, **transform)[0].shape[1]
    modules = ["m01", "m02", "m03", "m04", "m05"]
    table = _random_proto_table(features, modules, 4, D, same_as_first=("m04",))
    path = tmp_path / "w.parquet"
    pq.write_table(table, path)
    want = model_votes(
        images,
        load_proto(table, "T_h1_m1", features),
        [1, 3],
        ["top1", "top3"],
        transform=transform,
    )
    got, groups, fnns, _ = proto_votes(
        images, path, "T_h1_m1", features, [1, 3], ["top1", "top3"],
        transform=transform, batch_size=64, max_weights_mb=max_mb,
    )  # fmt: skip
    assert fnns == 3 * 10 and groups == load_proto(table, "T_h1_m1").groups
    for key, v in want.items():
        for f in ("label", "votes", "group", "super_majority"):
            np.testing.assert_array_equal(getattr(got[key], f), getattr(v, f), err_msg=f"{key} {f}")
    # m04 is m01 again: wherever m04's group would tie m01's, the earlier group wins
    assert not np.isin(got[(3, "top1")].group, [6, 7]).any()


def test_module_passes_fit_the_budget():
    from errorless.evaluate.inference import module_passes

    sizes = {"m01": 400_000, "m02": 400_000, "m03": 400_000, "m04": 900_000}
    assert module_passes(sizes, None) == [["m01", "m02", "m03", "m04"]]
    assert module_passes(sizes, 0.85) == [["m01", "m02"], ["m03"], ["m04"]]
    assert module_passes(sizes, 0.1) == [["m01"], ["m02"], ["m03"], ["m04"]]


def test_rehearsal_config_is_the_papers_grid():
    from pathlib import Path

    from errorless.config import load_config
    from errorless.grid import job_grid

    root = Path(__file__).resolve().parents[1]
    reh, paper = (load_config(root / f"config/{n}.yaml") for n in ("rehearsal", "imagenet64"))
    for key in ("modules", "features", "featured_models", "models", "transform", "weights"):
        assert reh[key] == paper[key], key
    s = reh["synthetic"]
    assert (s["labels"], s["image_size"], s["stream"]) == (1000, 64, True)
    assert s["images_per_label"] * s["batches"] >= 1280
    g = job_grid(reh)
    assert len(g.models) * len(g.features) * len(g.modules) * len(g.submodules) == 2720
    assert len(g.protos) == 6


@pytest.mark.slow
def test_labels_changed_in_one_module_replan_only_that_modules_jobs(tmp_path):
    """After the labels of one module change (and modularize has rerun: a checkpoint),
    ``snakemake -n`` plans that module's training jobs and what depends on them, no other."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 12)  # 3 modules of 2 labels, 1 submodule each
    images = rng.integers(0, 256, (len(labels), 8, 8, 3), dtype=np.uint8)
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "train.npz", images=images, labels=labels)
    cfg = {
        "results": "results",
        "dataset": {"format": "npz", "path": "data", "validation": False, "labels": 6},
        "modules": {"labels_per_module": 2, "submodules": 1},
        "features": ["R"],
        "featured_models": [1],
        "models": {"architectures": {"h1": [4]}, "use": ["h1"]},
        "sgd": {"max_epochs": 1, "released_epochs": 0},
        "gdt": {"enabled": False},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "--configfile"]
    cmd += [str(tmp_path / "c.yaml"), "--cores", "2"]

    def smk(*args):
        r = subprocess.run([*cmd, *args], cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        return r.stdout

    target = "results/weights.parquet"
    smk("--", target)
    assert "Nothing to be done" in smk("-n", "--", target)
    # m02 = labels 2 and 3: swap them in 3 images (the module's content changes, not its size)
    labels[np.flatnonzero(labels == 2)[:3]] = 3
    np.savez(tmp_path / "data" / "train.npz", images=images, labels=labels)
    shards = tmp_path / "results" / "shards"
    before = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.npz")}
    smk("--", "results/shards/manifest.tsv")  # the checkpoint reruns
    after = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.npz")}
    assert [n for n in before if before[n] != after[n]] == ["m02_s1.npz"]
    out = smk("-n", "--", target)
    planned = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    output: (.*)$", out, re.M)
    trains = [o for rule, o in planned if rule == "train"]
    assert len(trains) == 1 and "m02_s1" in trains[0], planned
    assert {rule for rule, _ in planned} == {"train", "gather"}, planned
