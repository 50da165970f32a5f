"""``errorless train``: files per docs/ARCHITECTURE.md, user errors, determinism, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from errorless import cli, fnn

torch.set_num_threads(1)
CLI = [sys.executable, "-c", "import sys; from errorless.cli import main; sys.exit(main())"]


def write_shard(
    path: Path,
    n: int = 240,
    side: int = 16,
    c: int = 5,
    module: int = 2,
    signal: float = 20.0,
    seed: int = 0,
    conflict: bool = False,
) -> Path:
    """A shard .npz with every key of ARCHITECTURE.md: module ``module`` of L = 4c labels."""
    rng = np.random.default_rng(seed)
    templates = 128 + rng.normal(0, signal, size=(c, side, side, 3))  # weak class signal
    local = np.arange(n) % c
    img = np.clip(templates[local] + rng.normal(0, 60, size=(n, side, side, 3)), 0, 255).astype(
        np.uint8
    )
    if conflict:
        img[1] = img[0]  # same image, labels 0 and 1
    lo = (module - 1) * c
    np.savez(
        path,
        images=img,
        labels=(local + lo).astype(np.int64),
        batch=np.array(["train"] * n),
        row=np.arange(n, dtype=np.int64),
        ids=np.array([f"train:{i}" for i in range(n)]),
        module=np.int64(module),
        submodule=np.int64(1),
        label_lo=np.int64(lo),
        label_hi=np.int64(lo + c),
        num_labels=np.int64(4 * c),
    )
    return path


def settings(**over) -> str:
    cfg = {
        "seed": 11,
        "device": "cpu",
        "models": {"architectures": {"h1": [32]}, "use": ["h1"]},
        "sgd": {"threshold": 0.9, "batch_size": 32},
        "gdt": {},
    }
    for k, v in over.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return json.dumps(cfg)


def train_args(
    tmp: Path, shard: Path, tag: str, sett: str, feature: str = "RG", model: str = "h1_m1"
) -> list[str]:
    return [
        "train",
        "--shard",
        str(shard),
        "--feature",
        feature,
        "--model",
        model,
        "--settings",
        sett,
        "--weights",
        str(tmp / f"{tag}.weights.npz"),
        "--metrics",
        str(tmp / f"{tag}.metrics.json"),
        "--checkpoint",
        str(tmp / f"{tag}.pt"),
        "--threads",
        "1",
    ]


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


RECORD_FIELDS = {
    "proto",
    "method",
    "model",
    "arch",
    "replicate",
    "feature",
    "module",
    "submodule",
    "n_images",
    "n_inputs",
    "n_labels",
    "label_lo",
    "module_labels",
    "hidden",
    "n_params",
    "accuracy",
    "accuracy_sgd",
    "epochs",
    "gdt_rounds",
    "accepted",
    "rejected",
    "lambda_path",
    "delta_path",
    "accepted_path",
    "steps_path",
    "gdt_steps",
    "consolidation_steps",
    "round_ends",
    "gdt_stop_reason",
    "residual_ids",
    "residual_labels",
    "residual_predicted",
    "conflicts",
    "no_anchor_labels",
    "status",
    "seconds_sgd",
    "seconds_gdt",
    "seed",
    "settings",
}


def test_train_writes_contract_files(tmp_path):
    shard = write_shard(tmp_path / "m02_s1.npz", conflict=True)
    sett = settings(sgd={"released_epochs": 2})
    assert cli.main(train_args(tmp_path, shard, "a", sett)) == 0
    w = load_npz(tmp_path / "a.weights.npz")
    assert sorted(w) == sorted(
        f"{m}/{k}{i}" for m in ("S", "Sp", "T") for k in "Wb" for i in (1, 2)
    )
    assert (
        w["T/W1"].shape == (196, 32) and w["T/b2"].shape == (5,) and w["T/W1"].dtype == np.float32
    )
    assert np.allclose(w["T/W1"], np.round(w["T/W1"], 4), atol=1e-7)  # saved rounded
    doc = json.loads((tmp_path / "a.metrics.json").read_text())
    recs = {r["method"]: r for r in doc["records"]}
    assert set(recs) == {"S", "Sp", "T"}
    for r in recs.values():
        assert set(r) == RECORD_FIELDS
    t = recs["T"]
    assert (t["proto"], t["module"], t["submodule"], t["label_lo"]) == ("T_h1_m1", "m02", "s1", 5)
    assert t["module_labels"] == list(range(5, 5 + t["n_labels"]))
    assert t["n_params"] == fnn.n_params([196, 32, 5]) and t["hidden"] == [32]
    # the planted pair is a conflict; the rest is fitted: only pair members are residuals
    assert t["conflicts"] == [{"ids": ["train:0", "train:1"], "labels": [5, 6]}]
    assert t["status"] == "conflicts" and 1 <= len(t["residual_ids"]) <= 2
    assert set(t["residual_ids"]) <= {"train:0", "train:1"}
    assert t["accuracy"] == pytest.approx(1 - len(t["residual_ids"]) / 240)
    assert recs["S"]["status"] == "sgd_only" and 0.9 <= recs["S"]["accuracy_sgd"]
    assert recs["Sp"]["epochs"] == recs["S"]["epochs"] + 2
    assert t["lambda_path"][-1] == 1.0 and t["accepted"] == sum(t["accepted_path"])
    # reported accuracy is that of the saved (rounded) weights
    from errorless.data.shards import load_shard
    from errorless.features import transform

    sh = load_shard(shard)
    x = torch.tensor(transform(sh.images, "RG"))
    pred = fnn.predict(fnn.from_numpy(w, "T"), x).numpy() + sh.label_lo
    assert np.mean(pred == sh.labels) == pytest.approx(t["accuracy"])
    assert not (tmp_path / "a.pt").exists()  # checkpoint removed on success


def test_same_seed_same_weights(tmp_path):
    shard = write_shard(tmp_path / "m02_s1.npz", n=150)
    for tag in ("a", "b"):
        assert cli.main(train_args(tmp_path, shard, tag, settings())) == 0
    a, b = load_npz(tmp_path / "a.weights.npz"), load_npz(tmp_path / "b.weights.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = json.loads((tmp_path / "a.metrics.json").read_text())["records"]
    d = json.loads((tmp_path / "b.metrics.json").read_text())["records"]
    assert [r["lambda_path"] for r in c] == [r["lambda_path"] for r in d]


@pytest.mark.parametrize(
    ("over", "feature", "model", "needle"),
    [
        ({}, "RG", "h7_m1", "models.architectures"),
        ({}, "gray", "h1_m1", "gray"),
        ({"device": "cuda"}, "RG", "h1_m1", "cuda"),
    ],
)
def test_user_errors_exit_2(tmp_path, capsys, over, feature, model, needle):
    if over.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    shard = write_shard(tmp_path / "m02_s1.npz", n=20)
    assert cli.main(train_args(tmp_path, shard, "e", settings(**over), feature, model)) == 2
    err = capsys.readouterr().err
    assert "errorless train: error:" in err and needle in err


def test_kill_and_resume_is_bit_identical(tmp_path):
    # slow continuation (small Δ, no growth) so that the kill lands mid-GDT
    shard = write_shard(tmp_path / "m02_s1.npz", n=300, side=32, signal=10)
    sett = settings(
        gdt={"delta0": 0.02, "streak": 1000, "checkpoint_seconds": 0},
        models={"architectures": {"h1": [64]}},
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = subprocess.run(
        CLI + train_args(tmp_path, shard, "ref", sett), env=env, capture_output=True, text=True
    )
    assert ref.returncode == 0, ref.stderr

    ckpt = tmp_path / "run.pt"
    proc = subprocess.Popen(
        CLI + train_args(tmp_path, shard, "run", sett),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            try:
                state = torch.load(ckpt, weights_only=False)
            except Exception:  # being replaced right now
                state = None
            if state and state.get("gdt") and state["gdt"][0]["accepted"] >= 3:
                break
        time.sleep(0.005)
    assert proc.poll() is None, "the job finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (tmp_path / "run.weights.npz").exists()

    # a checkpoint written with other settings is ignored, with a log line
    other = tmp_path / "other.pt"
    other.write_bytes(ckpt.read_bytes())
    args = train_args(tmp_path, shard, "other", settings(gdt={"enabled": False}))
    res = subprocess.run(CLI + args, env=env, capture_output=True, text=True)
    assert res.returncode == 0 and "ignored" in res.stderr

    # resuming across thread counts would give a third result (issue #13): refused, with a line
    thr = tmp_path / "thr.pt"
    thr.write_bytes(ckpt.read_bytes())
    args = train_args(tmp_path, shard, "thr", sett)
    res = subprocess.run(CLI + args[:-1] + ["2"], env=env, capture_output=True, text=True)
    assert res.returncode == 0 and "other numerics (threads 1 -> 2)" in res.stderr, res.stderr
    assert "resuming from checkpoint" not in res.stderr

    # a kill during a checkpoint write leaves a 0-byte temporary: the next start removes it
    stale = [tmp_path / ".run.pt.k1ll3d.tmp", tmp_path / ".run.weights.npz.k1ll3d.tmp"]
    for p in stale:
        p.write_bytes(b"")
    res = subprocess.run(
        CLI + train_args(tmp_path, shard, "run", sett), env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert "resuming from checkpoint" in res.stderr and "at round 1" in res.stderr
    assert not any(p.exists() for p in stale) and "removed a stale temporary file" in res.stderr
    assert not list(tmp_path.glob(".*.tmp"))
    a, b = load_npz(tmp_path / "ref.weights.npz"), load_npz(tmp_path / "run.weights.npz")
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    ra = json.loads((tmp_path / "ref.metrics.json").read_text())["records"][-1]
    rb = json.loads((tmp_path / "run.metrics.json").read_text())["records"][-1]
    assert ra["lambda_path"] == rb["lambda_path"] and ra["accepted"] == rb["accepted"]
    assert not ckpt.exists()
