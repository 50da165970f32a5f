"""One training job (``errorless train``): its FNNs (a model × one or more features of one shard),
their seeds, settings and transformed inputs (``Job``, ``load_job``)."""

from __future__ import annotations

import argparse
import logging
import time
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from errorless import fnn
from errorless.config import GDTSettings, SGDSettings, TransformSettings, parse_settings
from errorless.data.shards import Shard, load_shard
from errorless.device import resolve_device
from errorless.errors import ConfigError, DataError
from errorless.features import transform
from errorless.names import split_model, split_shard

log = logging.getLogger(__name__)


def job_seed(base: int, model: str, feature: str, module: str, submodule: str) -> int:
    """Base seed + a stable (process-independent) hash of the job's wildcards."""
    return int(base) + zlib.crc32(f"{model}/{feature}/{module}/{submodule}".encode())


def parse_model(model: str, cfg: dict[str, Any]) -> tuple[str, int, list[int]]:
    arch, rep = split_model(model)
    if rep is None:
        raise ConfigError(f"--model {model!r}: expected '<arch>_m<replicate>', e.g. h1_m1")
    archs = cfg["models"]["architectures"]
    if arch not in archs:
        raise ConfigError(
            f"config key models.architectures: no architecture {arch!r} "
            f"(model {model!r}); known: {sorted(archs)}"
        )
    return arch, rep, [int(h) for h in archs[arch]]


# ---------------------------------------------------------------- the job


@dataclass
class Job:
    """One training job's inputs: its settings, the shard and each FNN's transformed inputs.
    A job trains M FNNs of one shard side by side (M = 1 unless several ``--feature``)."""

    cfg: dict[str, Any]
    sgd: SGDSettings
    gdt: GDTSettings
    model: str  # h1_m1
    arch: str  # h1
    replicate: int
    hidden: list[int]
    shard_path: str
    shard: Shard
    module: str  # m01
    submodule: str  # s1
    features: list[str]  # one per FNN
    seeds: list[int]  # one per FNN
    xs_np: list[np.ndarray]  # one (N, D) float32 per FNN
    x: torch.Tensor  # (M, N, D) on the device
    y_np: np.ndarray  # (N,) local labels
    y: torch.Tensor  # (N,) on the device
    device: torch.device

    @property
    def m(self) -> int:
        return len(self.features)

    @property
    def n_labels(self) -> int:
        return self.shard.n_labels

    @property
    def sizes(self) -> list[int]:
        return fnn.layer_sizes(self.xs_np[0].shape[1], self.hidden, self.n_labels)

    @property
    def names(self) -> list[str]:
        """Log tags of the FNNs: their features in a group, none for one FNN."""
        return self.features if self.m > 1 else [""]

    @property
    def loss(self) -> fnn.Loss:
        return fnn.Loss(self.sgd.loss, self.sgd.temperature)


def check_outputs(args: argparse.Namespace) -> list[str]:
    """The job's features, each named once and with one --weights and --metrics file."""
    features = list(args.feature)
    if len(args.weights) != len(features) or len(args.metrics) != len(features):
        raise ConfigError(
            f"--weights and --metrics: one file each per --feature ({len(features)} features, "
            f"{len(args.weights)} weights, {len(args.metrics)} metrics)"
        )
    if len(set(features)) != len(features):
        raise ConfigError(f"--feature: a feature is named twice in {features}")
    return features


def read_shard(path: str) -> tuple[Shard, np.ndarray]:
    """The shard and its local labels (N,), checked against the module's label range."""
    shard = load_shard(path)
    if shard.labels.shape[0] == 0:
        raise DataError(f"{path}: shard has no images")
    y_np = shard.local_labels
    if y_np.min() < 0:
        raise DataError(
            f"{path}: labels outside the module's labels "
            f"({shard.label_lo}..{shard.label_hi - 1}: {shard.n_labels} labels)"
        )
    return shard, y_np


def load_job(args: argparse.Namespace) -> Job:
    """Settings, shard and every feature's inputs of the job the command line names."""
    cfg = parse_settings(args.settings)
    if args.device:
        cfg["device"] = args.device
    torch.set_num_threads(max(1, int(args.threads)))
    device = resolve_device(cfg["device"])
    arch, rep, hidden = parse_model(args.model, cfg)
    features = check_outputs(args)
    sgd_s, gdt_s = SGDSettings.from_dict(cfg["sgd"]), GDTSettings.from_dict(cfg["gdt"])
    tr_s = TransformSettings.from_dict(cfg["transform"])
    shard, y_np = read_shard(args.shard)
    module, submodule = split_shard(shard.name)
    xs_np, seeds = [], []
    for feature in features:
        t = time.perf_counter()
        xs_np.append(
            transform(shard.images, feature, pool=tr_s.pool, trim=tr_s.trim, decimals=tr_s.decimals)
        )
        seeds.append(job_seed(cfg["seed"], args.model, feature, module, submodule))
        log.info(
            "job %s %s %s_%s: %d images, %d inputs, %d labels (transform %.1f s)",
            args.model,
            feature,
            module,
            submodule,
            len(y_np),
            xs_np[-1].shape[1],
            shard.n_labels,
            time.perf_counter() - t,
        )
    if len({x.shape[1] for x in xs_np}) > 1:
        raise ConfigError(
            f"--feature {' '.join(features)}: a group needs features of one input size "
            f"(got {[x.shape[1] for x in xs_np]})"
        )
    return Job(
        cfg=cfg,
        sgd=sgd_s,
        gdt=gdt_s,
        model=args.model,
        arch=arch,
        replicate=rep,
        hidden=hidden,
        shard_path=str(args.shard),
        shard=shard,
        module=module,
        submodule=submodule,
        features=features,
        seeds=seeds,
        xs_np=xs_np,
        x=torch.as_tensor(np.stack(xs_np), device=device),  # (M, N, D)
        y_np=y_np,
        y=torch.as_tensor(y_np, dtype=torch.int64, device=device),
        device=device,
    )
