"""Full-size rehearsal (issue 15): the streaming synthetic writer, streamed weights, per-module
reading and evaluation -- checked on small sizes against the in-memory versions."""

import csv

import numpy as np
import pytest

from errorless import datasets, synthetic
from errorless.config import load_config


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
