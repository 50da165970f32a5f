"""Inference: the FNNs of a proto-model on images, in passes of modules, and one source batch's
predictions (``evaluate``)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from errorless import fnn
from errorless.device import resolve_device
from errorless.errors import ConfigError, DataError
from errorless.evaluate.vote import PROTOCOLS, Vote, merge_votes, vote

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- the FNNs of a proto-model


def proto_kernels(pw, device="cpu") -> list[fnn.SharedGroup]:
    """One :class:`fnn.SharedGroup` per feature of a :class:`gather.load.ProtoWeights`."""
    return [
        fnn.SharedGroup([(W[f], b[f]) for W, b in pw.layers], pw.label_map, device)
        for f in range(len(pw.features))
    ]


def model_votes(
    images: np.ndarray,
    pw,
    ps: Sequence[int],
    protocols: Sequence[str] = PROTOCOLS,
    *,
    transform: dict[str, int],
    device: str = "cpu",
    batch_size: int = 4096,
) -> dict[tuple[int, str], Vote]:
    """Vote of every featured model Model-p (first p features of ``pw``) on uint8 images (N,H,W,C).

    Per image block: each feature is transformed once, its G FNNs run batched, and all
    featured models and protocols vote on the same FNN outputs.
    """
    from errorless.features import transform_many

    bad = [p for p in ps if p > len(pw.features) or p < 1]
    if bad:
        raise ConfigError(
            f"config key featured_models: {bad} not in 1..{len(pw.features)} features of {pw.proto}"
        )
    t = 3 if "top3" in protocols else 1
    kernels = proto_kernels(pw, device)
    parts: dict[tuple[int, str], list[Vote]] = {(p, pr): [] for p in ps for pr in protocols}
    n = len(images)
    for lo in range(0, n, batch_size):
        block = images[lo : lo + batch_size]
        labs, dists = [], []
        # pooling and trimming once for all features (bit-identical to the training transform)
        xs = transform_many(block, list(pw.features), **transform)
        for x, k in zip(xs, kernels, strict=True):  # x: (n, D) float32
            if x.shape[1] != k.D:
                h, w = block.shape[1:3]
                raise DataError(
                    f"images of {h}x{w} px give {x.shape[1]} inputs per feature; proto-model {pw.proto} "
                    f"expects {k.D} (wrong image size or transform settings)"
                )
            lab, dist = k.top(torch.as_tensor(x, device=device), t)  # (G, n, t)
            labs.append(lab)
            dists.append(dist)
        L, D = torch.stack(labs), torch.stack(dists)  # (F, G, n, t)
        for p in ps:
            for pr in protocols:
                if pr == "top1":
                    parts[(p, pr)].append(vote(L[:p, ..., 0], D[:p, ..., 0]))
                else:
                    parts[(p, pr)].append(vote(L[:p], D[:p], D[:p, ..., 0]))
    empty = Vote(*(np.zeros(0, dtype=np.int64),) * 3, np.zeros(0, dtype=bool), *(np.zeros(0),) * 2)
    return {key: _concat(v) if v else empty for key, v in parts.items()}


def _concat(votes: list[Vote]) -> Vote:
    return Vote(
        *(np.concatenate([getattr(v, f.name) for v in votes]) for f in dataclasses.fields(Vote))
    )


def module_passes(sizes: dict[str, int], max_mb: float | None) -> list[list[str]]:
    """Modules (in order) cut into consecutive passes whose weights fit in ``max_mb`` MB
    (at least one module a pass); ``None`` = one pass over all."""
    if max_mb is None:
        return [list(sizes)]
    passes: list[list[str]] = [[]]
    used = 0
    for m, size in sizes.items():
        if passes[-1] and used + size > max_mb * 1e6:
            passes.append([])
            used = 0
        passes[-1].append(m)
        used += size
    return passes


def proto_votes(
    images: np.ndarray,
    weights,
    proto: str,
    features: Sequence[str],
    ps: Sequence[int],
    protocols: Sequence[str] = PROTOCOLS,
    *,
    transform: dict[str, int],
    device: str = "cpu",
    batch_size: int = 4096,
    max_weights_mb: float | None = None,
):
    """:func:`model_votes` of one proto-model, its weights read a few modules at a time (at
    most ``max_weights_mb`` of float32 weights held; ``None`` = the whole proto-model at once):
    each pass votes over its modules' groups, :func:`merge_votes` joins the passes (the
    images are transformed once per pass). Returns (votes, groups, FNNs, labels per FNN)."""
    from errorless.gather.load import load_proto, module_sizes

    passes = module_passes(module_sizes(weights, proto), max_weights_mb)
    merged: dict[tuple[int, str], Vote] = {}
    groups: list[tuple[str, str]] = []
    fnns = 0
    for i, modules in enumerate(passes):
        pw = load_proto(weights, proto, features, modules=modules if len(passes) > 1 else None)
        if i == 0 and "top3" in protocols and pw.n_labels <= 3:
            log.warning(
                "%s: %d labels per module: every FNN's top 3 names all of them, "
                "so the top-3 protocol cannot separate labels",
                proto,
                pw.n_labels,
            )
        votes = model_votes(
            images, pw, ps, protocols, transform=transform, device=device, batch_size=batch_size
        )
        for key, v in votes.items():
            merged[key] = merge_votes(merged.get(key), v, len(groups))
        groups += pw.groups
        fnns += len(pw.features) * len(pw.groups)
        n_labels = pw.n_labels
        del pw, votes
    if len(passes) > 1:
        log.info("%s: weights read in %d passes of modules", proto, len(passes))
    return merged, groups, fnns, n_labels


# ---------------------------------------------------------------- evaluate one batch


def evaluate_batch(
    cfg: dict[str, Any], batch: str, weights: str | Path, protos: Sequence[str] | None = None
):
    """Predictions table (pandas) and speed record for one source batch."""
    from errorless.data import datasets
    from errorless.gather.load import protos_in

    data = datasets.load_batch(cfg, batch)
    protos = list(protos) if protos else protos_in(weights)
    ps = sorted(cfg["featured_models"])
    protocols = list(PROTOCOLS) if cfg["evaluation"]["top3"] else ["top1"]
    device = resolve_device(cfg["device"]).type
    split = "heldout" if batch == datasets.validation_batch(cfg) else "train"
    frames, speed = [], {"batch": batch, "images": len(data), "device": device, "protos": {}}
    for proto in protos:
        t0 = time.perf_counter()
        votes, groups, fnns, _ = proto_votes(
            data.images,
            weights,
            proto,
            cfg["features"],
            ps,
            protocols,
            transform=cfg["transform"],
            device=device,
            batch_size=cfg["evaluation"]["batch_size"],
            max_weights_mb=cfg["evaluation"].get("weights_mb"),
        )
        sec = time.perf_counter() - t0
        rate = len(data) / sec if sec > 0 else float("inf")
        speed["protos"][proto] = {"seconds": round(sec, 3), "images_per_second": round(rate, 1)}
        log.info(
            "%s %s: %d images in %.2f s = %.1f images/s (%d FNNs)",
            batch,
            proto,
            len(data),
            sec,
            rate,
            fnns,
        )
        modules = np.array([g[0] for g in groups])
        subs = np.array([g[1] for g in groups])
        for (p, pr), v in votes.items():
            frames.append(
                pd.DataFrame(
                    {
                        "image_id": data.ids,
                        "batch": data.batch,
                        "row": data.row,
                        "label": data.labels,
                        "split": split,
                        "proto": proto,
                        "p": np.int64(p),
                        "protocol": pr,
                        "predicted": v.label,
                        "votes": v.votes,
                        "super_majority": v.super_majority,
                        "module": modules[v.group],
                        "submodule": subs[v.group],
                        "correct": v.label == data.labels,
                    }
                )
            )
    total = sum(s["seconds"] for s in speed["protos"].values())
    speed["seconds"] = round(total, 3)
    speed["images_per_second_per_proto"] = (
        round(len(data) * len(protos) / total, 1) if total else None
    )
    return pd.concat(frames, ignore_index=True), speed
