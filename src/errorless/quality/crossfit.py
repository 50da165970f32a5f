"""Cross-fitted evidence FNNs: an out-of-sample probability for every training image.

The model's own FNNs give out-of-sample votes too (an image of submodule s through the FNNs
of the other submodules), but each of those saw 1/r of the module and stopped at the SGD
threshold, so their probabilities are weak evidence (docs/label-issues.md). Here, per module,
the images of every label are dealt into K **folds** at random (seeded, stratified: each fold
holds about 1/K of every label); for each fold an FNN of the model's architecture is trained on
the other K-1 folds and predicts the fold. Confident learning (Northcutt et al., 2021) ranks
the images by these cross-validated probabilities.

What makes these FNNs better predictors than the model's (all settings under
``label_issues.crossfit``):

* they see (K-1)/K of the module instead of 1/r;
* a fixed number of epochs with a cosine learning rate instead of the stop at 98 %;
* **augmentation**: every epoch sees each image moved, rotated, scaled and sheared at random
  (``augment``; one ``torch.nn.functional.grid_sample`` over the whole batch), so the FNN
  learns that a digit moved by a pixel is the same digit;
* every configured feature's FNN and ``replicates`` seeds, averaged (softmax mean);
* test-time shifts (``tta``): the fold is predicted as it is and moved by half the training
  shift in the four directions (one pixel of a 28-px digit), averaged.

One job per (module, fold): ``errorless cross-fit`` writes the fold's images with their
probabilities over the module's c labels (``quality/crossfit/{module}_{fold}.parquet``); rule
``out_of_sample`` puts them beside the model's own out-of-sample votes.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
import zlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from errorless import fnn
from errorless.config import SGDSettings, device_argument, settings_arguments, settings_from_args
from errorless.data.shards import Shard, load_shard, manifest_shards
from errorless.errors import ConfigError, DataError
from errorless.features import transform_many
from errorless.io import write_parquet
from errorless.names import split_fold
from errorless.train.sgd import Member, Trainer

log = logging.getLogger(__name__)

COLUMNS = ["image_id", "batch", "row", "module", "submodule", "fold", "label", "label_local"]


@dataclass(frozen=True)
class AugmentSettings:
    """Random changes of an image for one epoch (0 turns a change off)."""

    shift: float = 0.07  # fraction of the image side, uniform in ±shift, each axis
    rotate: float = 10.0  # degrees, uniform in ±rotate
    scale: float = 0.1  # log-scale, uniform in ±scale (0.1: ×0.90 … ×1.11)
    shear: float = 0.1  # horizontal shear, uniform in ±shear
    flip: bool = False  # mirror left-right with probability 1/2 (photographs, not digits)

    @property
    def off(self) -> bool:
        return not (self.shift or self.rotate or self.scale or self.shear or self.flip)


@dataclass(frozen=True)
class CrossFitSettings:
    folds: int = 5  # K; 0: no cross-fitting (the model's own out-of-sample votes only)
    replicates: int = 1  # seeds per (feature, fold), averaged
    epochs: int = 40
    tta: bool = True  # also predict the fold moved by augment.shift / 2 in the 4 directions
    augment: AugmentSettings = field(default_factory=AugmentSettings)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CrossFitSettings:
        d = dict(d)
        aug = dict(d.pop("augment", {}))
        known = {f.name for f in fields(cls)}
        unknown = (set(d) - known) | (set(aug) - {f.name for f in fields(AugmentSettings)})
        if unknown:
            raise ConfigError(f"config key label_issues.crossfit: unknown {sorted(unknown)}")
        return cls(**d, augment=AugmentSettings(**aug))


# ---------------------------------------------------------------- folds


def assign_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold (0..K-1) of every image: each label's images, in a seeded random order, dealt
    round-robin (stratified: every fold holds ⌊n/K⌋ or ⌈n/K⌉ images of each label).

    ``labels`` in a stable image order (the module's shards, concatenated); the same labels
    and seed give the same folds."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    shuffled = rng.permutation(n)
    by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]  # label groups, random within
    counts = np.bincount(labels[by_label])
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(n) - first[labels[by_label]]
    fold = np.empty(n, dtype=np.int64)
    fold[by_label] = pos % folds
    return fold


def fold_seed(base: int, module: str, fold: str) -> int:
    """Base seed + a stable hash of the job's wildcards (as ``train.job.job_seed``)."""
    return int(base) + zlib.crc32(f"crossfit/{module}/{fold}".encode())


# ---------------------------------------------------------------- augmentation


def augment(images: np.ndarray, s: AugmentSettings, gen: torch.Generator) -> np.ndarray:
    """``images`` uint8 (N, H, W, C), each moved, rotated, scaled, sheared (and mirrored) at
    random: one affine sampling grid per image, bilinear, the border pixel repeated outside.
    Returns uint8 of the same shape (the transform of the features reads uint8 images)."""
    if s.off or len(images) == 0:
        return images
    n = len(images)
    u = torch.rand(n, 5, generator=gen, dtype=torch.float64) * 2 - 1  # (N, 5) in [-1, 1]
    angle = torch.deg2rad(u[:, 0] * s.rotate)
    zoom = torch.exp(u[:, 1] * s.scale)
    shear = u[:, 2] * s.shear
    # output -> input coordinates, in grid_sample's [-1, 1] units (align_corners=False)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin + shear
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    theta[:, 0, 2] = u[:, 3] * s.shift * 2  # a fraction f of the side is 2f in these units
    theta[:, 1, 2] = u[:, 4] * s.shift * 2
    if s.flip:
        mirror = torch.rand(n, generator=gen) < 0.5
        theta[mirror, :, 0] *= -1
    return warp(images, theta)


def warp(images: np.ndarray, theta: torch.Tensor) -> np.ndarray:
    """uint8 images (N, H, W, C) resampled through affine maps ``theta`` (N, 2, 3) (output ->
    input, grid_sample units): bilinear, the border pixel repeated outside, rounded to uint8."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()  # (N, C, H, W)
    grid = torch.nn.functional.affine_grid(theta.float(), list(x.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(
        x, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def translated(images: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """``images`` (N, H, W, C) moved down by ``dy`` and right by ``dx`` (fractions of the side;
    1/side is one whole pixel), bilinear, the edge repeated."""
    if dy == dx == 0:
        return images
    theta = torch.zeros(len(images), 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2], theta[:, 1, 2] = -2 * dx, -2 * dy
    return warp(images, theta)


# test-time shifts: the fold as it is and moved in the four directions by half the training
# shift (crossfit.augment.shift); on 28-px digits with the default 0.07 that is one pixel
TTA_DIRECTIONS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


# ---------------------------------------------------------------- train and predict


def _inputs(images: np.ndarray, features: list[str], transform: dict[str, int], reps: int, device):
    """The stacked inputs (F·R, N, D) of every member: feature f's transform, once per replicate
    (the replicates of a feature see the same augmented images)."""
    xs = transform_many(images, features, **transform)
    x = torch.as_tensor(np.stack(xs), device=device)  # (F, N, D)
    return x.repeat_interleave(reps, dim=0) if reps > 1 else x


def train_fold(
    images: np.ndarray,
    labels: np.ndarray,
    c: int,
    features: list[str],
    hidden: list[int],
    transform: dict[str, int],
    sgd: SGDSettings,
    cf: CrossFitSettings,
    seed: int,
    device: str | torch.device = "cpu",
) -> fnn.Params:
    """Train F·R FNNs (every feature × ``cf.replicates`` seeds) side by side on ``images``
    (uint8 (N, H, W, C)) with local ``labels`` (N,) in 0..c-1, for ``cf.epochs`` epochs:
    momentum SGD (``sgd``'s lr, momentum, batch size and loss), the learning rate on a cosine
    from ``sgd.lr`` to 0, every epoch on newly augmented images. Returns the stacked weights
    (member m = feature m // R, replicate m % R). Deterministic for a seed on CPU."""
    F, R = len(features), cf.replicates
    gen = torch.Generator().manual_seed(seed)
    d = transform_many(images[:1], features[:1], **transform)[0].shape[1]
    sizes = fnn.layer_sizes(d, hidden, c)
    params = fnn.stack(
        [
            fnn.init_params(sizes, seed + 7919 * m, device, sgd.init, sgd.init_bound)
            for m in range(F * R)
        ]
    )
    members = [
        Member(sgd, torch.Generator().manual_seed(seed + 104729 * (m + 1))) for m in range(F * R)
    ]
    y = torch.as_tensor(labels, dtype=torch.int64, device=device).expand(F * R, -1)
    x = _inputs(augment(images, cf.augment, gen), features, transform, R, device)
    trainer = Trainer(params, x, y, sgd, members)
    t0 = time.perf_counter()
    for epoch in range(cf.epochs):
        if epoch:
            trainer.x = _inputs(augment(images, cf.augment, gen), features, transform, R, device)
        lr = 0.5 * sgd.lr * (1 + math.cos(math.pi * epoch / cf.epochs))
        for mb in members:
            mb.lr = lr
        loss = trainer.epoch()
        if epoch == 0 or epoch == cf.epochs - 1 or (epoch + 1) % 5 == 0:
            log.info(
                "cross-fit epoch %d/%d: lr %.4f, loss %.4f (mean of %d FNNs), %.1f s",
                epoch + 1,
                cf.epochs,
                lr,
                float(loss.mean()),
                F * R,
                time.perf_counter() - t0,
            )
    return trainer.params


@torch.no_grad()
def predict_fold(
    params: fnn.Params,
    images: np.ndarray,
    features: list[str],
    transform: dict[str, int],
    replicates: int,
    tta: float,
    device: str | torch.device = "cpu",
    batch_size: int = 4096,
) -> np.ndarray:
    """Mean softmax (N, c) of every member of ``params`` on ``images`` and, with ``tta`` > 0,
    on the images moved by ``tta`` (a fraction of the side) in the four directions."""
    shifts = [(dy * tta, dx * tta) for dy, dx in TTA_DIRECTIONS] if tta else [(0, 0)]
    c = params[-1][0].shape[-1]
    out = np.zeros((len(images), c), dtype=np.float64)
    for lo in range(0, len(images), batch_size):
        block = images[lo : lo + batch_size]
        acc = torch.zeros(len(block), c, dtype=torch.float64, device=device)
        for dy, dx in shifts:
            x = _inputs(translated(block, dy, dx), features, transform, replicates, device)
            acc += fnn.softmax(fnn.forward(params, x)).double().mean(dim=0)  # (n, c)
        out[lo : lo + batch_size] = (acc / len(shifts)).cpu().numpy()
    return out


# ---------------------------------------------------------------- one job


def module_shards(manifest: str | Path, module: str) -> list[Shard]:
    """The shards of ``module`` (s1, s2, ... in order), as the manifest lists them."""
    shards = [
        load_shard(p)
        for name, p in manifest_shards(manifest).items()
        if name.startswith(f"{module}_")
    ]
    if not shards:
        raise DataError(f"{manifest}: no shard of module {module}")
    return shards


def cross_fit(
    cfg: dict[str, Any], shards: list[Shard], module: str, fold: str, device: str = "cpu"
) -> pd.DataFrame:
    """The images of fold ``fold`` of ``module`` with the probabilities (over the module's c
    labels) of FNNs trained on the module's other folds (COLUMNS + ``probs``)."""
    from errorless.device import resolve_device

    cf = CrossFitSettings.from_dict(cfg["label_issues"]["crossfit"])
    K = cf.folds
    k = number_of_fold(fold, K)
    labels = np.concatenate([sh.labels for sh in shards])
    local = np.concatenate([sh.local_labels for sh in shards])  # 0..c-1
    c = shards[0].n_labels
    folds = assign_folds(local, K, fold_seed(cfg["seed"], module, "folds"))
    train, test = folds != k, folds == k
    if not test.any() or not train.any():
        raise DataError(
            f"module {module}: {int(train.sum())} training and {int(test.sum())} held-out images "
            f"in fold {fold} of {K} (label_issues.crossfit.folds larger than the module?)"
        )
    images = np.concatenate([sh.images for sh in shards])
    hidden = cfg["models"]["architectures"][cfg["models"]["use"][0]]  # the first model's
    dev = resolve_device(device)
    features = list(cfg["features"])
    sgd = SGDSettings.from_dict(cfg["sgd"])
    seed = fold_seed(cfg["seed"], module, fold)
    t0 = time.perf_counter()
    log.info(
        "%s %s: %d FNNs (%d features x %d replicates) on %d images, predicting %d",
        module,
        fold,
        len(features) * cf.replicates,
        len(features),
        cf.replicates,
        int(train.sum()),
        int(test.sum()),
    )
    params = train_fold(
        images[train],
        local[train],
        c,
        features,
        hidden,
        cfg["transform"],
        sgd,
        cf,
        seed,
        dev,
    )
    tta = cf.augment.shift / 2 if cf.tta else 0.0
    probs = predict_fold(params, images[test], features, cfg["transform"], cf.replicates, tta, dev)
    y = local[test]
    log.info(
        "%s %s: held-out accuracy %.4f (%d images) in %.1f s",
        module,
        fold,
        float(np.mean(probs.argmax(1) == y)),
        len(y),
        time.perf_counter() - t0,
    )
    cat = {
        k_: np.concatenate([getattr(sh, k_) for sh in shards])[test]
        for k_ in ("ids", "batch", "row")
    }
    sub = np.concatenate([np.full(len(sh.labels), sh.submodule) for sh in shards])[test]
    return pd.DataFrame(
        {
            "image_id": cat["ids"].astype(str),
            "batch": cat["batch"].astype(str),
            "row": cat["row"].astype(np.int64),
            "module": module,
            "submodule": [f"s{s}" for s in sub],
            "fold": fold,
            "label": labels[test],
            "label_local": y,
            "probs": list(probs.astype(np.float32)),
        }
    )


def number_of_fold(fold: str, folds: int) -> int:
    """0-based number of fold ``f3`` (of K), checked."""
    k = split_fold(fold)
    if not 1 <= k <= folds:
        raise ConfigError(f"fold {fold!r} outside label_issues.crossfit.folds = {folds}")
    return k - 1


# ---------------------------------------------------------------- CLI


def crossfit_arguments(p: argparse.ArgumentParser) -> None:
    settings_arguments(p)
    device_argument(p)
    p.add_argument("--manifest", required=True, help="shards/manifest.tsv (the run's shards)")
    p.add_argument("--module", required=True, help="module, e.g. m01")
    p.add_argument("--fold", required=True, help="fold, e.g. f1 (of label_issues.crossfit.folds)")
    p.add_argument("--out", required=True, help="Parquet of the fold's images and probabilities")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")


def crossfit_main(args: argparse.Namespace) -> int:
    cfg = settings_from_args(args)
    if cfg["label_issues"]["crossfit"]["folds"] < 2:
        raise ConfigError("label_issues.crossfit.folds < 2: no cross-fitting to run")
    shards = module_shards(args.manifest, args.module)
    torch.set_num_threads(max(1, int(args.threads)))
    df = cross_fit(cfg, shards, args.module, args.fold, cfg["device"])
    write_parquet(Path(args.out), df)
    log.info("%d images -> %s", len(df), args.out)
    return 0


__all__ = [
    "AugmentSettings",
    "CrossFitSettings",
    "assign_folds",
    "augment",
    "cross_fit",
    "predict_fold",
    "translated",
    "train_fold",
]
