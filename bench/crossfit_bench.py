"""How the cross-fitted evidence FNNs were chosen: settings compared on planted label flips.

The label-issue settings (``label_issues.crossfit``: folds, replicates, epochs, augmentation,
test-time shifts) were chosen on two data sets with **planted** label flips, so that the figures
reported on the MNIST test set's human-confirmed errors (``bench/label_errors_bench.py``) come
from data the choice never saw:

* ``digits``: scikit-learn's real 8x8 handwritten digits (1,797 images, one grey feature),
  5 % of the labels changed at random (90 flips, seed 0), one module of 10 labels;
* ``photos``: the real-photo data set of ``config/photos.yaml`` + ``config/photos-flips.yaml``
  (2,400 crops, 20 labels in 4 modules, 6 colour features, 48 flips within modules).

``--data mnist`` measures a setting on the MNIST test set and its 15 human-confirmed errors
(``../shared/data/mnist-test``) the same way: a measurement of a budget, not a choice (the
choice is made on the two sets above).

For each setting it trains every (module, fold) in-process (``errorless.quality.crossfit.cross_fit``,
the pipeline's function) and prints the out-of-sample accuracy, the flips among the k, 2k and
4k lowest label qualities (k = number of flips), cleanlab's flagged images and the flips among
them, and the time.

    python bench/crossfit_bench.py                 # both data sets, every setting
    python bench/crossfit_bench.py --data digits --settings '{"folds": 10}'
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from record import record, record_argument  # noqa: E402  (bench/record.py)

from errorless.config import load_config  # noqa: E402
from errorless.data import photos  # noqa: E402
from errorless.data.shards import load_shard, modularize  # noqa: E402
from errorless.quality import crossfit  # noqa: E402

NO_AUGMENT = {"shift": 0, "rotate": 0, "scale": 0, "shear": 0}
SETTINGS = {
    "default": {},
    "no test-time shifts": {"tta": False},
    "no augmentation": {"augment": NO_AUGMENT},
    "mirroring too": {"augment": {"flip": True}},
    "10 folds": {"folds": 10},
    "3 replicates": {"replicates": 3},
    "20 epochs": {"epochs": 20},
}


def digits_set(tmp: Path, seed: int = 0):
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    true = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    flip = rng.choice(len(true), 90, replace=False)
    given = true.copy()
    given[flip] = (true[flip] + rng.integers(1, 10, 90)) % 10
    np.savez(tmp / "train.npz", images=images, labels=given)
    cfg = {
        "dataset": {"format": "npz", "path": str(tmp / "train.npz"), "validation": False},
        "modules": {"labels_per_module": 10, "submodules": 2},
        "features": ["gray"],
        "featured_models": [1],
        "transform": {"pool": 2, "trim": 0, "decimals": 4},
    }
    return cfg, {f"train:{i}" for i in flip}


def photos_set(tmp: Path):
    import yaml

    cfg = yaml.safe_load((ROOT / "config" / "photos.yaml").read_text())
    flips = yaml.safe_load((ROOT / "config" / "photos-flips.yaml").read_text())
    cfg["photos"] = {**cfg.get("photos", {}), **flips["photos"]}
    cfg["dataset"] = {"format": "photos", "path": str(tmp / "photos"), "validation": False}
    planted = photos.write(load_config(overrides=cfg), tmp / "photos")
    del planted
    table = pd.read_csv(tmp / "photos" / "planted.csv")
    return cfg, set(table.loc[table["kind"] == "label_flip", "id_a"])


def mnist_set(tmp: Path):
    data = ROOT.parent / "shared" / "data" / "mnist-test"
    le = pd.read_csv(data / "label_errors.csv")
    cfg = {
        "dataset": {"format": "mnist", "path": str(data), "idx_train": "t10k", "validation": False},
        "modules": {"labels_per_module": 10, "submodules": 2},
        "features": ["gray"],
        "featured_models": [1],
    }
    return cfg, {f"t10k:{i}" for i in le.loc[le["confirmed_error"].astype(bool), "index"]}


def measure(base: dict, truth: set[str], shards_dir: Path, name: str, over: dict) -> dict:
    from cleanlab.filter import find_label_issues

    cfg = load_config(overrides={**base, "label_issues": {"crossfit": over}})
    K = cfg["label_issues"]["crossfit"]["folds"]
    by_module: dict[str, list] = {}
    for p in sorted(shards_dir.glob("m*_s*.npz")):
        by_module.setdefault(p.stem.split("_")[0], []).append(load_shard(p))
    t0 = time.perf_counter()
    frames = [
        crossfit.cross_fit(cfg, shards, module, f"f{k}")
        for module, shards in by_module.items()
        for k in range(1, K + 1)
    ]
    seconds = time.perf_counter() - t0
    df = pd.concat(frames, ignore_index=True)
    quality = np.empty(len(df))
    issue = np.zeros(len(df), bool)
    for _, idx in df.groupby("module").groups.items():
        P = np.stack(df.loc[idx, "probs"]).astype(np.float64)
        y = df.loc[idx, "label_local"].to_numpy()
        quality[idx] = P[np.arange(len(y)), y]
        issue[idx] = find_label_issues(y, P / P.sum(1, keepdims=True), n_jobs=1)
    ids = df["image_id"].to_numpy()[np.lexsort((df["image_id"], quality))]
    k = len(truth)
    flagged = set(df["image_id"][issue])
    return {
        "setting": name,
        "oos accuracy": round(
            float(
                np.mean([np.argmax(p) == y for p, y in zip(df.probs, df.label_local, strict=True)])
            ),
            4,
        ),
        f"found in top k={k}": len(set(ids[:k]) & truth),
        "top 2k": len(set(ids[: 2 * k]) & truth),
        "top 4k": len(set(ids[: 4 * k]) & truth),
        "top 50 / 300": f"{len(set(ids[:50]) & truth)} / {len(set(ids[:300]) & truth)}",
        "flagged": len(flagged),
        "flagged errors": len(flagged & truth),
        "seconds": round(seconds, 1),
    }


DATA_SETS = {
    "digits": "digits: scikit-learn's 8x8 digits (1,797 images, grey), 90 labels (5 %) changed "
    "at random (seed 0), one module of 10 labels",
    "photos": "photos: config/photos.yaml + config/photos-flips.yaml (2,400 crops, 20 labels in "
    "4 modules, 6 colour features, 48 flips within modules)",
    "mnist": "mnist: the MNIST test set (10,000 images) and its 15 human-confirmed label errors",
}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", nargs="*", default=["digits", "photos"])
    ap.add_argument("--settings", help="one JSON object of label_issues.crossfit settings")
    record_argument(ap)
    a = ap.parse_args()
    figures: list[tuple[str, str]] = []
    torch.set_num_threads(1)
    settings = {"given": json.loads(a.settings)} if a.settings else SETTINGS
    for data in a.data:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            make = {"digits": digits_set, "photos": photos_set, "mnist": mnist_set}[data]
            base, truth = make(tmp)
            modularize(load_config(overrides=base), tmp / "shards")
            rows = [measure(base, truth, tmp / "shards", n, s) for n, s in settings.items()]
        print(
            f"\n{data}: {len(truth)} label errors ({'confirmed' if data == 'mnist' else 'planted'})"
        )
        print(pd.DataFrame(rows).to_string(index=False))
        for r in rows:
            cells = list(r.items())
            figures.append((f"{data}: {cells[0][1]}", "; ".join(f"{c} {v}" for c, v in cells[1:])))
    if a.record:
        record(
            "crossfit_bench-" + "-".join(a.data),
            "Cross-fitting settings on planted (or confirmed) label errors",
            "; ".join(DATA_SETS[d] for d in a.data)
            + (f"; settings {a.settings}" if a.settings else "; every setting of SETTINGS"),
            figures,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
