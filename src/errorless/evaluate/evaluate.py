"""Evaluation (docs/method.md#the-vote, paper §4-5): the training table, the majority vote, the
summaries.

Commands
--------
``evaluate-training`` (paper Table 2): per proto-model the min / mean / median / max training
accuracy over its FNNs, error-free FNNs out of all, and (module, submodule) partitions where
every feature is error-free; then the same with every weight *truncated* (cut toward zero, not
rounded) to ``weights.check_decimals`` decimals, and whether any prediction changed.
Accuracies are recomputed from the saved weights on the shards (they should equal the
recorded ``accuracy``; the largest difference is reported).

``evaluate``: one source batch through every proto-model and featured model Model-p (first p
configured features) with the top-1 and the expanded top-3 protocol. Writes
``{results}/evaluation/predictions/{batch}.parquet``, long format, one row per
(image, proto, p, protocol):
``image_id, batch, row, label, split (train|heldout), proto, p, protocol (top1|top3),
predicted, votes, super_majority, module, submodule (the winning group), correct``,
and ``{batch}.speed.json`` beside it (images per second).

``summarize``: from all prediction files, ``accuracy.csv`` (per proto, p, protocol, split:
accuracy and Top-1 rate, in percent), ``accuracy_per_batch.csv``, and the confusion statistics
of Table 4: ``perfect_labels_per_batch.csv`` (labels whose every image in that batch is
predicted correctly) and ``perfect_labels.csv`` (their mean count over the batches of a split,
and the labels perfect in every batch, listed by number).

The vote (docs/method.md#the-vote), choices where the paper is silent
------------------------------------------------------------
* An FNN's *distance* for a label ℓ is ‖softmax − e_ℓ‖₂ (docs/method.md#the-fnn). In the top-1
  protocol each
  FNN casts one vote (its argmax); in the expanded top-3 protocol (paper Table 5) it casts one
  vote for each of its three best labels, each with its own distance, so a label's count in a
  group is still at most p and a super-majority is still a count of p.
* Step 2 (per group): most votes; ties -> smaller mean distance of the votes for that label;
  exact ties -> smaller label number.
* Step 3 (across groups): largest count; ties -> smallest variance (population variance) of the
  group's p FNN distances (each FNN's top-1 distance, in both protocols: the paper's "variance
  of the loss values over the features"); remaining exact ties (e.g. p = 1, where every
  variance is 0) -> smaller mean distance of the group's winning label, then the first group
  in (module, submodule) order. (Exact ties between groups with the same distances in a
  different feature order can resolve differently on CPU and GPU: reduction order. With real
  float distances such ties do not occur; CPU and H100 gave identical votes on 4096 images.)
* Accuracy = correct / images. Top-1 rate = share of the correct predictions won with a
  super-majority (NaN when nothing is correct).
* Perfect labels: a label is perfect in a batch when it has at least one image there and all
  are predicted correctly; "perfect in every batch" (Table 4 "all") = perfect in every batch
  of the split that holds the label, i.e. all its images of the split are correct.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from errorless import fnn
from errorless.config import device_argument, settings_arguments, settings_from_args
from errorless.device import resolve_device
from errorless.errors import ConfigError, DataError
from errorless.io import write_json, write_npz, write_parquet, write_text
from errorless.names import featured_model, number, proto_key, shard_name

log = logging.getLogger(__name__)

PROTOCOLS = ("top1", "top3")


# ---------------------------------------------------------------- the vote (pure)


@dataclass
class Vote:
    """Result of the three-step vote for N images."""

    label: np.ndarray  # int64 (N,) predicted global label
    votes: np.ndarray  # int64 (N,) winning count
    group: np.ndarray  # int64 (N,) index of the winning (module, submodule) group
    super_majority: np.ndarray  # bool (N,) votes == p
    # the winner's step-3 keys (after votes): variance of its p FNN distances, mean distance of
    # its label's votes -- what merge_votes needs to join votes over disjoint sets of groups
    variance: np.ndarray | None = None  # float64 (N,)
    distance: np.ndarray | None = None  # float64 (N,)


def vote(labels, distances, fnn_distances=None) -> Vote:
    """Three-step majority vote, vectorised over images.

    ``labels``/``distances``: (F, G, N) (top-1 protocol) or (F, G, N, T) (each FNN's T best
    labels, global numbers, with their distances); F = p features, G = (module, submodule)
    groups. ``fnn_distances`` (F, G, N): each FNN's own (top-1) distance, whose variance over
    the features breaks ties between groups; default ``distances[..., 0]``.
    Accepts numpy arrays or torch tensors; returns numpy arrays.
    """
    lab = torch.as_tensor(labels)
    dist = torch.as_tensor(distances).to(torch.float64)
    if lab.ndim == 3:
        lab, dist = lab[..., None], dist[..., None]
    if lab.ndim != 4 or lab.shape != dist.shape:
        raise ValueError(
            f"labels {tuple(lab.shape)} and distances {tuple(dist.shape)} must be (F, G, N[, T])"
        )
    F, G, N, T = lab.shape
    fd = dist[..., 0] if fnn_distances is None else torch.as_tensor(fnn_distances).to(torch.float64)
    if N == 0:
        e, f = np.zeros(0, dtype=np.int64), np.zeros(0)
        return Vote(e, e, e, np.zeros(0, dtype=bool), f, f)
    lab = lab.to(torch.int64)
    # step 2: count votes per label inside each group, on labels shifted to 0..width-1;
    # the label axis goes first so that the scatter needs no copy for T = 1
    lo = lab.amin(dim=(0, 3))  # (G, N)
    loc = (lab - lo[None, :, :, None]).movedim(3, 1).reshape(F * T, G, N)  # (F*T, G, N)
    width = int(loc.max()) + 1
    counts = torch.zeros(width, G, N, dtype=torch.float32, device=lab.device)
    counts.scatter_add_(0, loc, torch.ones(1, 1, 1, device=lab.device).expand(F * T, G, N))
    sums = torch.zeros(width, G, N, dtype=torch.float64, device=lab.device)
    sums.scatter_add_(0, loc, dist.movedim(3, 1).reshape(F * T, G, N))
    v = counts.amax(dim=0)  # (G, N)
    mean = torch.where(counts == v, sums / counts.clamp(min=1), torch.inf)  # (width, G, N)
    gmean, gloc = mean.min(dim=0)  # min returns the first index on exact ties: smaller label
    glabel = gloc + lo  # (G, N)
    # step 3: most votes, then smallest variance of the p FNN distances, then mean distance
    var = ((fd - fd.mean(dim=0)) ** 2).mean(dim=0)  # (G, N) population variance, two-pass
    best = v == v.amax(dim=0, keepdim=True)
    var_b = torch.where(best, var, torch.inf)
    best &= var_b == var_b.amin(dim=0, keepdim=True)
    win = torch.where(best, gmean, torch.inf).argmin(dim=0)  # (N,) first group on exact ties
    idx = win[None]
    votes = v.gather(0, idx)[0].to(torch.int64)
    return Vote(
        label=glabel.gather(0, idx)[0].cpu().numpy(),
        votes=votes.cpu().numpy(),
        group=win.cpu().numpy(),
        super_majority=(votes == F).cpu().numpy(),
        variance=var.gather(0, idx)[0].cpu().numpy(),
        distance=gmean.gather(0, idx)[0].cpu().numpy(),
    )


def merge_votes(a: Vote | None, b: Vote, offset: int) -> Vote:
    """Step 3 over the union of two disjoint sets of groups: ``a`` voted over groups
    ``0..offset-1``, ``b`` over the next ones (its group numbers are shifted by ``offset``).
    Equal to one vote over all groups: step 3 is the lexicographic minimum of (-votes,
    variance, mean distance, group number), and a minimum can be taken set by set."""
    b = dataclasses.replace(b, group=b.group + offset)
    if a is None:
        return b
    take = (b.votes > a.votes) | (
        (b.votes == a.votes)
        & ((b.variance < a.variance) | ((b.variance == a.variance) & (b.distance < a.distance)))
    )
    return Vote(
        *(np.where(take, getattr(b, f.name), getattr(a, f.name)) for f in dataclasses.fields(Vote))
    )


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of images predicted correctly (NaN for no images)."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    return float(np.mean(predicted == labels)) if len(labels) else float("nan")


def top1_rate(correct: np.ndarray, super_majority: np.ndarray) -> float:
    """Among the correct predictions, the fraction won by a super-majority (NaN if none correct)."""
    correct = np.asarray(correct, dtype=bool)
    n = int(correct.sum())
    return float(np.asarray(super_majority, dtype=bool)[correct].sum() / n) if n else float("nan")


# ---------------------------------------------------------------- the FNNs of a proto-model


def proto_kernels(pw, device="cpu") -> list[fnn.SharedGroup]:
    """One :class:`fnn.SharedGroup` per feature of a :class:`gather.ProtoWeights`."""
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
    from errorless.gather.gather import load_proto, module_sizes

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
    from errorless.gather.gather import protos_in

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


# ---------------------------------------------------------------- summaries


KEYS = ["proto", "p", "protocol", "split"]


def summarize(pred: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """accuracy, accuracy_per_batch, perfect_labels_per_batch, perfect_labels tables."""
    pred = pred.assign(sm_correct=pred["correct"] & pred["super_majority"])

    def acc_table(keys):
        g = pred.groupby(keys, sort=True)
        t = g.agg(
            images=("correct", "size"),
            correct=("correct", "sum"),
            super_majority_correct=("sm_correct", "sum"),
        ).reset_index()
        t["accuracy_pct"] = 100 * t["correct"] / t["images"]
        t["top1_rate_pct"] = (
            100 * t["super_majority_correct"] / t["correct"].where(t["correct"] > 0)
        )
        t.insert(1, "featured_model", t["p"].map(featured_model))
        return t

    per_label = pred.groupby([*KEYS, "batch", "label"], sort=True)["correct"].all().reset_index()
    pb = (
        per_label.groupby([*KEYS, "batch"], sort=True)
        .agg(labels_present=("label", "size"), perfect_labels=("correct", "sum"))
        .reset_index()
    )
    lists = per_label[per_label["correct"]].groupby([*KEYS, "batch"])["label"].agg(_label_list)
    pb = pb.merge(lists.rename("perfect_label_list").reset_index(), on=[*KEYS, "batch"], how="left")
    pb["perfect_label_list"] = pb["perfect_label_list"].fillna("")
    all_ = per_label.groupby([*KEYS, "label"])["correct"].all().reset_index()
    pa_ = (
        pb.groupby(KEYS)
        .agg(batches=("batch", "size"), mean_perfect_per_batch=("perfect_labels", "mean"))
        .reset_index()
    )
    perfect_all = all_[all_["correct"]].groupby(KEYS)["label"].agg(["size", _label_list])
    perfect_all.columns = ["perfect_all_batches", "perfect_all_batches_labels"]
    pa_ = pa_.merge(perfect_all.reset_index(), on=KEYS, how="left")
    pa_["perfect_all_batches"] = pa_["perfect_all_batches"].fillna(0).astype(int)
    pa_["perfect_all_batches_labels"] = pa_["perfect_all_batches_labels"].fillna("")
    for t in (pb, pa_):
        t.insert(1, "featured_model", t["p"].map(featured_model))
    return {
        "accuracy": acc_table(KEYS),
        "accuracy_per_batch": acc_table([*KEYS, "batch"]),
        "perfect_labels_per_batch": pb,
        "perfect_labels": pa_,
    }


def _label_list(labels: pd.Series) -> str:
    return " ".join(str(int(x)) for x in sorted(labels))


def read_predictions(paths: Sequence[str | Path]) -> pd.DataFrame:
    import pyarrow.parquet as pq

    cols = ["batch", "label", "split", "proto", "p", "protocol", "super_majority", "correct"]
    frames = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: predictions file missing (run the evaluate step)")
        try:
            frames.append(pq.read_table(path, columns=cols).to_pandas())
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{path}: unreadable predictions file: {e}") from None
    if not frames:
        raise DataError("no prediction files to summarize")
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------- training evaluation


def training_evaluation(
    training: pd.DataFrame,
    weights: str | Path,
    shards: Mapping[str, Path] | None,
    cfg: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table per proto, table per FNN). Without ``shards`` only the recorded accuracies are used."""
    from errorless.gather.gather import load_proto

    check = cfg["weights"]["check_decimals"]
    saved = cfg["weights"]["decimals"]
    rows = []
    for proto, sub in training.groupby("proto", sort=True):
        feats = [f for f in cfg["features"] if f in set(sub["feature"])] or sorted(
            set(sub["feature"])
        )
        recorded = {(r.feature, r.module, r.submodule): r.accuracy for r in sub.itertuples()}
        if shards is None:
            for (f, m, s), acc in recorded.items():
                fnn_key = {"proto": proto, "feature": f, "module": m, "submodule": s}
                rows.append({**fnn_key, "accuracy_recorded": acc, "accuracy": acc})
                rows[-1].update(accuracy_cut=np.nan, changed_predictions=np.nan)
            continue
        from errorless.data.shards import load_shard
        from errorless.features import transform

        pw = load_proto(weights, proto, feats)
        for g, (m, s) in enumerate(pw.groups):
            shard = load_shard(shard_path(shards, m, s))
            local = shard.local_labels
            c = int(pw.module_sizes[g])  # the module's own outputs (no padding)
            for f, feature in enumerate(pw.features):
                x = transform(shard.images, feature, **cfg["transform"])
                layers = [(W[f, g], b[f, g]) for W, b in pw.layers]
                layers[-1] = (layers[-1][0][:, :c], layers[-1][1][:c])
                params = fnn.as_params(layers)
                pred = fnn.predict(params, torch.as_tensor(x)).numpy()
                cut = fnn.truncate_params(params, check, saved)
                pred_cut = fnn.predict(cut, torch.as_tensor(x)).numpy()
                fnn_key = {"proto": proto, "feature": feature, "module": m, "submodule": s}
                rows.append(
                    {
                        **fnn_key,
                        "n_images": len(local),
                        "accuracy_recorded": recorded.get((feature, m, s), np.nan),
                        "accuracy": float(np.mean(pred == local)),
                        "accuracy_cut": float(np.mean(pred_cut == local)),
                        "changed_predictions": int(np.sum(pred != pred_cut)),
                    }
                )
            log.info(
                "%s %s_%s: %d images, %d features checked",
                proto,
                m,
                s,
                len(local),
                len(pw.features),
            )
    per_fnn = pd.DataFrame(rows)
    return training_table(per_fnn, check), per_fnn


def training_table(per_fnn: pd.DataFrame, check_decimals: int) -> pd.DataFrame:
    """Paper Table 2 from the per-FNN accuracies (fractions in, percent out)."""
    out = []
    for proto, d in per_fnn.groupby("proto", sort=True):
        free = d["accuracy"] >= 1.0
        parts = d.assign(free=free).groupby(["module", "submodule"])["free"].all()
        row = dict(proto=proto, fnns=len(d), partitions=len(parts))
        for name, col in (("", "accuracy"), ("cut_", "accuracy_cut")):
            a = 100 * d[col]
            row.update(
                {
                    f"{name}min": a.min(),
                    f"{name}mean": a.mean(),
                    f"{name}median": a.median(),
                    f"{name}max": a.max(),
                }
            )
            if name == "":
                row.update(
                    error_free_fnns=int(free.sum()),
                    error_free_partitions=int(parts.sum()),
                    error_free_fnns_text=f"{int(free.sum())}/{len(d)}",
                    error_free_partitions_text=f"{int(parts.sum())}/{len(parts)}",
                )
        cut_free = d["accuracy_cut"] >= 1.0
        row.update(
            check_decimals=check_decimals,
            cut_error_free_fnns=int(cut_free.sum()),
            cut_fnns_changed=int((d["accuracy_cut"] != d["accuracy"]).sum())
            if d["accuracy_cut"].notna().all()
            else None,
            cut_predictions_changed=int(d["changed_predictions"].sum())
            if d["changed_predictions"].notna().all()
            else None,
            max_abs_diff_recorded=float((d["accuracy"] - d["accuracy_recorded"]).abs().max()),
        )
        row["cut_changed_anything"] = (
            None
            if row["cut_predictions_changed"] is None
            else bool(row["cut_predictions_changed"] > 0)
        )
        out.append(row)
    return pd.DataFrame(out)


# ---------------------------------------------------------------- the confusion wheel's data


def choose_wheel_fnn(training: pd.DataFrame, features: Sequence[str]) -> dict[str, str] | None:
    """(model, feature, module, submodule) of the FNN shown on the confusion wheel: in
    (module, submodule) order, then feature order, the first FNN whose S accuracy is below
    100 % and whose T-FNN is error-free (SGD errors that GDT removes); else the first with S
    below 100 %; else the first FNN. First model (h1_m1)."""
    if training.empty:
        return None
    model = sorted(training["model"].unique())[0]
    t = training[training["model"] == model]
    fo = {f: i for i, f in enumerate(features)}
    keys = sorted(
        set(zip(t["feature"], t["module"], t["submodule"], strict=True)),
        key=lambda k: (number(k[1]), number(k[2]), fo.get(k[0], len(fo)), k[0]),
    )
    acc = {(r.method, r.feature, r.module, r.submodule): float(r.accuracy) for r in t.itertuples()}
    for want_t in (True, False):
        for f, m, s in keys:
            sa = acc.get(("S", f, m, s))
            ta = acc.get(("T", f, m, s))
            if sa is not None and sa < 1.0 and (not want_t or (ta is not None and ta >= 1.0)):
                return {"model": model, "feature": f, "module": m, "submodule": s}
    f, m, s = keys[0]
    return {"model": model, "feature": f, "module": m, "submodule": s}


def wheel_data(
    training: pd.DataFrame,
    weights: str | Path,
    shards: Mapping[str, Path] | None,
    cfg: dict[str, Any],
) -> dict[str, np.ndarray]:
    """What the report's confusion wheel draws: the chosen FNN's softmax outputs on its shard,
    one panel per proto-model of its model (``probs`` (P, N, c) float32, ``protos`` (P,)),
    the images' local ``labels`` (N,), ``label_lo``/``label_hi`` and the FNN's names. No
    panels (``protos`` empty) without a trained FNN or without the shards."""
    from errorless.data.shards import load_shard
    from errorless.features import transform
    from errorless.gather.gather import load_fnn

    pick = choose_wheel_fnn(training, cfg["features"])
    empty = {"protos": np.array([], dtype=str), "probs": np.zeros((0, 0, 0), np.float32)}
    if pick is None or shards is None:
        return {**empty, "note": np.array("no trained FNN" if pick is None else "no shards")}
    model, f, m, s = pick["model"], pick["feature"], pick["module"], pick["submodule"]
    sh = load_shard(shard_path(shards, m, s))
    x = torch.as_tensor(transform(sh.images, f, **cfg["transform"]))
    protos = sorted(set(training.loc[training["model"] == model, "proto"]), key=proto_key)
    probs = [
        fnn.softmax(fnn.logits_of(fnn.as_params(load_fnn(weights, p, f, m, s)), x)).numpy()
        for p in protos
    ]
    return {
        "protos": np.array(protos, dtype=str),
        "probs": np.stack(probs).astype(np.float32),  # (P, N, c)
        "labels": np.asarray(sh.local_labels, dtype=np.int64),
        "module_labels": np.asarray(sh.module_labels, dtype=np.int64),
        "label_lo": np.int64(sh.label_lo),
        "label_hi": np.int64(sh.label_hi),
        **{k: np.array(v) for k, v in pick.items()},
        "note": np.array(""),
    }


# T statuses counted in Table 2 (gdt.classify_status); S/Sp rows get no counts
STATUS_COLUMNS = {
    "conflicts": "conflict_fnns",
    "no_anchor": "no_anchor_fnns",
    "residual_errors": "residual_fnns",
    "budget": "budget_fnns",
}


def with_status_counts(table: pd.DataFrame, status: pd.DataFrame) -> pd.DataFrame:
    """Table 2 plus, per T proto-model, how many FNNs ended with each non-error-free status —
    so a GDT that stopped on its budget is never read as unfittable data."""
    t = status[status["method"] == "T"]
    counts = t.groupby("proto")["status"].value_counts().unstack(fill_value=0)
    out = table.copy()
    for st, col in STATUS_COLUMNS.items():
        per = counts[st] if st in counts else pd.Series(0, index=counts.index)
        out[col] = pd.array(
            [int(per[p]) if p in per.index else None for p in out["proto"]], dtype="Int64"
        )
    return out


# ---------------------------------------------------------------- CLI


def shard_path(shards: Mapping[str, Path], module: str, submodule: str) -> Path:
    """The shard file of (module, submodule) among the run's shards (:func:`manifest_shards`)."""
    name = shard_name(module, submodule)
    if name not in shards:
        raise DataError(f"shard {name} is not in the shard manifest (rerun the modularize step)")
    return shards[name]


def fnn_arguments(p: argparse.ArgumentParser, shards: str, shards_required: bool = False) -> None:
    """``--weights`` (weights.parquet) and ``--manifest``: the trained FNNs and their data."""
    p.add_argument("--weights", required=True, help="weights.parquet")
    p.add_argument("--manifest", required=shards_required, help=shards)


def shards_of(args: argparse.Namespace) -> dict[str, Path] | None:
    """The shards of ``--manifest`` by name, None without it."""
    from errorless.data.shards import manifest_shards

    return manifest_shards(args.manifest) if args.manifest else None


def training_arguments(p: argparse.ArgumentParser) -> None:
    settings_arguments(p)
    fnn_arguments(p, shards="shards/manifest.tsv (the run's shards); omit to skip recomputing")
    p.add_argument("--training", required=True, help="training.parquet")
    p.add_argument(
        "--out", required=True, help="Table 2 CSV (e.g. results/evaluation/training.csv)"
    )
    p.add_argument("--fnn-out", help="per-FNN CSV (default: <out stem>_fnn.csv)")
    p.add_argument("--wheel", help="the confusion wheel's data (.npz) for the report")


def training_main(args: argparse.Namespace) -> int:
    cfg = settings_from_args(args)
    path = Path(args.training)
    if not path.exists():
        raise DataError(f"{path}: training table missing (run the gather step)")
    training = pd.read_parquet(
        path, columns=["proto", "method", "model", "feature", "module", "submodule", "accuracy"]
    )
    shards = shards_of(args)
    table, per_fnn = training_evaluation(training, args.weights, shards, cfg)
    if args.wheel:
        write_npz(args.wheel, **wheel_data(training, args.weights, shards, cfg))
    table = with_status_counts(table, pd.read_parquet(path, columns=["proto", "method", "status"]))
    out = Path(args.out)
    fnn_out = Path(args.fnn_out) if args.fnn_out else out.with_name(out.stem + "_fnn.csv")
    write_text(out, table.to_csv(index=False))
    write_text(fnn_out, per_fnn.to_csv(index=False))
    for r in table.itertuples():
        log.info(
            "%s: min %.3f mean %.3f median %.3f max %.3f | error-free %s FNNs, %s partitions | "
            "cut to %d decimals changed %s predictions",
            r.proto,
            r.min,
            r.mean,
            r.median,
            r.max,
            r.error_free_fnns_text,
            r.error_free_partitions_text,
            r.check_decimals,
            r.cut_predictions_changed,
        )
    return 0


def evaluate_arguments(p: argparse.ArgumentParser) -> None:
    settings_arguments(p)
    device_argument(p)
    p.add_argument(
        "--batch", required=True, help="source batch name (e.g. train_data_batch_1, val_data)"
    )
    p.add_argument("--weights", required=True, help="weights.parquet")
    p.add_argument(
        "--out",
        required=True,
        help="predictions Parquet (results/evaluation/predictions/{batch}.parquet)",
    )
    p.add_argument("--speed", help="speed JSON (default: <out without .parquet>.speed.json)")
    p.add_argument(
        "--protos", nargs="+", help="proto-models to evaluate (default: all in the weights table)"
    )


def evaluate_main(args: argparse.Namespace) -> int:
    cfg = settings_from_args(args)
    table, speed = evaluate_batch(cfg, args.batch, args.weights, args.protos)
    out = Path(args.out)
    write_parquet(out, table)
    speed_path = (
        Path(args.speed)
        if args.speed
        else out.with_name(out.name.removesuffix(".parquet") + ".speed.json")
    )
    write_json(speed_path, speed)
    log.info(
        "%s: %d rows -> %s; %.1f images/s per proto-model",
        args.batch,
        len(table),
        out,
        speed["images_per_second_per_proto"] or float("nan"),
    )
    return 0


def summarize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predictions", nargs="+", required=True, help="predictions Parquet files")
    p.add_argument("--out-dir", required=True, help="folder of the CSV tables (results/evaluation)")


def summarize_main(args: argparse.Namespace) -> int:
    tables = summarize(read_predictions(args.predictions))
    out = Path(args.out_dir)
    for name, t in tables.items():
        write_text(out / f"{name}.csv", t.to_csv(index=False, float_format="%.4f"))
    for r in tables["accuracy"].itertuples():
        log.info(
            "%s %s %s %s: accuracy %.3f %% Top-1 %.3f %% (%d images)",
            r.proto,
            r.featured_model,
            r.protocol,
            r.split,
            r.accuracy_pct,
            r.top1_rate_pct,
            r.images,
        )
    return 0
