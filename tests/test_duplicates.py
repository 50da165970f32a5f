"""Exact and near duplicates with different labels (SPEC §8, evidence 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from errorless import duplicates as dup
from errorless.cli import main
from errorless.duplicates import SearchSettings, brute_force_pairs, find_duplicates


def _pairs(res) -> set[tuple[int, int, str]]:
    return {(int(a), int(b), k) for a, b, k in zip(res.pairs["a"], res.pairs["b"], res.pairs["kind"], strict=True)}


def hand_set() -> tuple[np.ndarray, np.ndarray]:
    """Rows 0..9 far apart; planted: 2 = copy of 0 (other label), 3 = copy of 1 (same label),
    4 = 0.1 from 5 (other label), 6 = 0.7 from 7 (other label, beyond 0.5), 8 = 0.1 from 9 (same label)."""
    rng = np.random.default_rng(1)
    x = np.round(rng.uniform(-1, 1, size=(10, 30)), 4).astype(np.float32)
    labels = np.arange(10, dtype=np.int64)
    x[2], labels[2] = x[0], 7
    x[3], labels[3] = x[1], labels[1]
    step = np.zeros(30, np.float32)
    step[0] = 0.1
    x[4] = x[5] + step
    x[6] = x[7] + 7 * step
    x[8], labels[8] = x[9] + step, labels[9]
    return x, labels


@pytest.mark.parametrize("index", ["flat", "ivf"])
def test_hand_built_exact_and_near(index: str) -> None:
    x, labels = hand_set()
    res = find_duplicates(x, labels, SearchSettings(near_threshold=0.5, neighbours=3, index=index))
    assert _pairs(res) == {(0, 2, "exact"), (4, 5, "near")}
    near = res.pairs[res.pairs["kind"] == "near"]
    assert near["distance"].iloc[0] == pytest.approx(0.1, abs=1e-4)
    assert res.group[0] == res.group[2] and res.group[1] == res.group[3]
    assert res.stats["n_unique"] == 8


def test_identical_same_label_not_reported_but_mixed_group_is() -> None:
    x = np.zeros((5, 8), np.float32)
    x[:, 0] = [0.5, 0.5, 0.5, -0.5, -0.5]
    labels = np.array([1, 1, 2, 3, 3])
    res = find_duplicates(x, labels, SearchSettings(near_threshold=0.1))
    # group {0,1,2} holds labels 1 and 2: pairs across labels only; {3,4} same label: nothing
    assert _pairs(res) == {(0, 2, "exact"), (1, 2, "exact")}
    assert res.pairs["group"].nunique() == 1


def test_rounding_noise_below_decimals_is_exact() -> None:
    x = np.array([[0.12344, 0.5], [0.12341, 0.5]], np.float64)
    res = find_duplicates(x, np.array([0, 1]), SearchSettings(decimals=4, index="none"))
    assert _pairs(res) == {(0, 1, "exact")}


@pytest.mark.parametrize("index", ["flat", "ivf"])
def test_equals_brute_force_oracle(index: str) -> None:
    rng = np.random.default_rng(5)
    centres = rng.uniform(-1, 1, size=(40, 16))
    x = centres[rng.integers(0, 40, 400)] + rng.normal(0, 0.15, size=(400, 16))
    x = np.round(x, 4).astype(np.float32)
    labels = rng.integers(0, 4, 400)
    x[rng.integers(0, 400, 30)] = x[rng.integers(0, 400, 30)]  # some exact copies
    thr = 0.45
    s = SearchSettings(near_threshold=thr, neighbours=60, index=index, nprobe=1000, pca_dims=8)
    res = find_duplicates(x, labels, s)
    oracle = brute_force_pairs(x, labels, thr)
    assert len(oracle) > 20 and {k for *_, k in oracle} == {"exact", "near"}
    assert _pairs(res) == oracle


def test_hash_collisions_are_split_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    x, labels = hand_set()
    monkeypatch.setattr(dup, "row_keys", lambda x, *a, **k: np.zeros((len(x), 2), np.uint64))
    group, first = dup.exact_groups(x)
    assert len(first) == 8
    assert group[0] == group[2] and group[1] == group[3] and len(set(group[[0, 1, 4, 5]])) == 4


def test_large_group_gives_star_pairs() -> None:
    n = dup.MAX_GROUP_PAIRS + 10
    x = np.ones((n, 4), np.float32)
    labels = np.arange(n) % 3
    res = find_duplicates(x, labels, SearchSettings(index="none"))
    assert len(res.pairs) == n - 1  # every member once with a head of another label; (0, 1) shared
    assert set(res.pairs["a"]) | set(res.pairs["b"]) == set(range(n))


# ---------------------------------------------------------------- CLI on shards

def write_shard(folder: Path, module: int, sub: int, images: np.ndarray, labels, batch: str, rows) -> None:
    rows = np.asarray(rows, np.int64)
    np.savez(
        folder / f"m{module:02d}_s{sub}.npz",
        images=images, labels=np.asarray(labels, np.int64), batch=np.array([batch] * len(rows)),
        row=rows, ids=np.array([f"{batch}:{r}" for r in rows]), module=np.int64(module),
        submodule=np.int64(sub), label_lo=np.int64((module - 1) * 2), label_hi=np.int64(module * 2),
        num_labels=np.int64(4),
    )


def tiny_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)


def test_cli_cross_module_pairs(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    a, b = tiny_images(6, 1), tiny_images(6, 2)
    b[3] = a[0]  # label 0 in m01, label 3 in m02: cross-module exact duplicate
    b[4] = a[1]  # label 0 in m01, label 2 in m02
    write_shard(shards, 1, 1, a, [0, 0, 1, 1, 0, 1], "train_data_batch_1", range(6))
    write_shard(shards, 2, 1, b, [2, 2, 3, 3, 2, 3], "train_data_batch_2", range(6))
    out = tmp_path / "q" / "duplicates.parquet"
    settings = {"features": ["R", "G", "B"], "featured_models": [3]}
    rc = main(["duplicates", "--settings", json.dumps(settings), "--shards", str(shards), "--out", str(out)])
    assert rc == 0
    df = pd.read_parquet(out)
    assert list(df.columns) == dup.OUTPUT_COLUMNS
    got = {frozenset((i, j)) for i, j in zip(df["id_a"], df["id_b"], strict=True)}
    assert got == {frozenset(("train_data_batch_1:0", "train_data_batch_2:3")),
                   frozenset(("train_data_batch_1:1", "train_data_batch_2:4"))}
    assert set(df["kind"]) == {"exact"} and set(df["module_a"]) | set(df["module_b"]) == {"m01", "m02"}
    stats = json.loads(out.with_suffix(".json").read_text())
    assert stats["n_rows"] == 12 and stats["n_dims"] == 36 and stats["peak_rss_mb"] > 0


def test_cli_no_shards_names_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["duplicates", "--settings", "{}", "--shards", str(tmp_path / "nowhere")])
    assert rc == 2
    assert "nowhere" in capsys.readouterr().err
