"""Label issues, the evidence (docs/label-issues.md): out-of-sample probabilities and votes — the
cross-fitted FNNs' probabilities and the other submodules' FNNs' votes, one table per module
(``OOS_COLUMNS``), and the training-set vote."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from errorless.errors import DataError
from errorless.names import number, submodule_name

log = logging.getLogger(__name__)


IMAGE_COLUMNS = ["image_id", "batch", "row", "module", "submodule", "label"]  # where an image is
OOS_COLUMNS = [
    *IMAGE_COLUMNS,
    "label_local",
    "source",
    "fold",
    "proto",
    "n_fnns",
    "p",
    "predicted",
    "votes",
    "super_majority",
    "agreement",
    "prob_given",
    "predicted_prob",
    "probs",
    "label_votes",
]


# ---------------------------------------------------------------- out-of-sample predictions


def default_proto(cfg: dict[str, Any]) -> str:
    from errorless.config import methods, proto_names

    if cfg["label_issues"]["proto"]:
        return cfg["label_issues"]["proto"]
    return f"{'T' if 'T' in methods(cfg) else 'S'}_{proto_names(cfg)[0]}"


def shard_out_of_sample(
    pw, shard, transform: dict[str, int], device: str = "cpu", batch_size: int = 4096
) -> dict[str, np.ndarray] | None:
    """Out-of-sample arrays of one shard from the FNNs of its module's other submodules.

    Returns probs (N, c), label_votes (N, c), vote label (global), votes, super_majority;
    None when the module has no other submodule.
    """
    from errorless.evaluate.vote import vote
    from errorless.features import transform_many
    from errorless.fnn import SharedGroup

    others = [
        g
        for g, (m, s) in enumerate(pw.groups)
        if number(m) == shard.module and number(s) != shard.submodule
    ]
    if not others:
        return None
    F, c, n = len(pw.features), shard.n_labels, len(shard.labels)
    # the module's own c outputs (the stacked weights are padded to the widest module)
    kernels = [
        SharedGroup(
            [(W[f][others], b[f][others]) for W, b in pw.layers[:-1]]
            + [(pw.layers[-1][0][f][others][..., :c], pw.layers[-1][1][f][others][..., :c])],
            pw.label_map[others][:, :c],
            device,
        )
        for f in range(F)
    ]
    probs = np.zeros((n, c), dtype=np.float64)
    counts = np.zeros((n, c), dtype=np.int64)
    parts = []
    for lo in range(0, n, batch_size):
        xs = transform_many(shard.images[lo : lo + batch_size], list(pw.features), **transform)
        ss = torch.stack(
            [
                kern.softmax(torch.as_tensor(x, device=device))
                for x, kern in zip(xs, kernels, strict=True)
            ]
        )
        # ss: (F, G', n', c) softmax of every out-of-sample FNN
        top = [kern.top_of(s, 1) for s, kern in zip(ss, kernels, strict=True)]
        labs = torch.stack([t[0][..., 0] for t in top])  # (F, G', n') global labels
        dists = torch.stack([t[1][..., 0] for t in top])
        parts.append(vote(labs, dists))
        probs[lo : lo + batch_size] = ss.mean(dim=(0, 1)).double().cpu().numpy()
        hits = torch.nn.functional.one_hot(ss.argmax(dim=3), c).sum(dim=(0, 1))  # (n', c)
        counts[lo : lo + batch_size] = hits.cpu().numpy()
    return {
        "probs": probs,
        "label_votes": counts,
        "predicted": np.concatenate([v.label for v in parts]),
        "votes": np.concatenate([v.votes for v in parts]),
        "super_majority": np.concatenate([v.super_majority for v in parts]),
        "n_fnns": F * len(others),
        "p": F,
    }


def out_of_sample(
    cfg: dict[str, Any],
    weights: str | Path | None,
    shard_paths: list[Path],
    proto: str | None = None,
    crossfit: Sequence[str | Path] = (),
) -> pd.DataFrame:
    """One row per training image (OOS_COLUMNS): the other submodules' votes (when
    ``modules.submodules`` ≥ 2) and the probabilities of the cross-fitted FNNs (the
    ``crossfit`` Parquet files of ``errorless cross-fit``) or, without them, of the other
    submodules. Empty, with a log line, when neither exists."""
    from errorless.data.shards import load_shard
    from errorless.device import resolve_device
    from errorless.gather.load import load_proto

    r = cfg["modules"]["submodules"]
    table = empty_oos()
    if r >= 2:
        pw = load_proto(weights, proto or default_proto(cfg), cfg["features"])
        shards = (load_shard(p) for p in shard_paths)
        table = oos_table(
            pw,
            shards,
            cfg["transform"],
            resolve_device(cfg["device"]).type,
            cfg["evaluation"]["batch_size"],
        )
    if crossfit:
        return with_crossfit(table, pd.concat([read_crossfit(p) for p in crossfit]))
    if r < 2:
        log.warning(
            "modules.submodules = %d and no cross-fitting (label_issues.crossfit.folds < 2): no "
            "FNN is out of sample for any image; label-issue evidence skipped",
            r,
        )
    return table


def read_crossfit(path: str | Path) -> pd.DataFrame:
    from errorless.quality.crossfit import COLUMNS

    try:
        df = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file: name it
        raise DataError(f"{path}: unreadable cross-fit table: {e}") from None
    missing = [c for c in [*COLUMNS, "probs"] if c not in df.columns]
    if missing:
        raise DataError(f"{path}: not a cross-fit table, missing columns {missing}")
    return df


def with_crossfit(table: pd.DataFrame, cf: pd.DataFrame) -> pd.DataFrame:
    """``table`` (the submodule votes; may be empty) with the cross-fitted probabilities as
    ``probs``. Every image needs exactly one cross-fit row."""
    dup = cf["image_id"].duplicated()
    if dup.any():
        raise DataError(
            f"cross-fit tables hold image {cf['image_id'][dup].iloc[0]} twice (stale fold files?)"
        )
    cf = cf.set_index("image_id")
    if len(table) == 0:  # no submodule votes: the rows come from the cross-fit tables
        table = cf.reset_index()[[*IMAGE_COLUMNS, "label_local"]].assign(
            proto="",
            n_fnns=np.int64(0),
            p=np.int64(0),
            predicted=np.int64(-1),
            votes=np.int64(0),
            super_majority=False,
            agreement=0.0,
            label_votes=None,
        )
    missing = ~table["image_id"].isin(cf.index)
    if missing.any() or len(cf) != len(table):
        raise DataError(
            f"cross-fit tables cover {len(cf)} images, the shards {len(table)} "
            f"(e.g. {table['image_id'][missing].iloc[0] if missing.any() else 'extra rows'}); "
            "rerun the cross_fit jobs"
        )
    rows = cf.loc[table["image_id"]]
    local = table["label_local"].to_numpy(np.int64)
    prob_given = np.empty(len(table))
    predicted = np.empty(len(table), dtype=np.int64)
    # per module: its c labels (modules of label groups differ in c), sorted, so that local
    # label k is the k-th (every label of a module has images)
    for idx in table.groupby("module").indices.values():
        probs = np.stack(rows["probs"].to_numpy()[idx]).astype(np.float64)  # (n, c)
        held = np.sort(table["label"].to_numpy()[idx])
        held = held[np.r_[True, held[1:] != held[:-1]]]
        prob_given[idx] = probs[np.arange(len(idx)), local[idx]]
        predicted[idx] = held[probs.argmax(axis=1)]
    out = table.assign(
        source="crossfit",
        fold=rows["fold"].to_numpy(),
        probs=[np.asarray(p, dtype=np.float32) for p in rows["probs"].to_numpy()],
        prob_given=prob_given,
        predicted_prob=predicted,
    )
    return out[OOS_COLUMNS].reset_index(drop=True)


def oos_table(
    pw, shards, transform: dict[str, int], device: str = "cpu", batch_size: int = 4096
) -> pd.DataFrame:
    """The other submodules' out-of-sample votes and probabilities (OOS_COLUMNS, ``source``
    submodules) for a :class:`gather.load.ProtoWeights` and :class:`shards.Shard` objects."""
    frames = []
    for sh in shards:
        res = shard_out_of_sample(pw, sh, transform, device, batch_size)
        if res is None:
            log.warning(
                "module %d: no other submodule in %s; the images of submodule %d are skipped",
                sh.module,
                pw.proto,
                sh.submodule,
            )
            continue
        local = sh.local_labels
        probs = res["probs"]
        mname = next(m for m, _ in pw.groups if number(m) == sh.module)
        frames.append(
            pd.DataFrame(
                {
                    "image_id": sh.ids,
                    "batch": sh.batch,
                    "row": sh.row,
                    "module": mname,
                    "submodule": submodule_name(sh.submodule),
                    "label": sh.labels,
                    "label_local": local,
                    "source": "submodules",
                    "fold": "",
                    "proto": pw.proto,
                    "n_fnns": np.int64(res["n_fnns"]),
                    "p": np.int64(res["p"]),
                    "predicted": res["predicted"],
                    "votes": res["votes"],
                    "super_majority": res["super_majority"],
                    "agreement": res["votes"] / res["p"],
                    "prob_given": probs[np.arange(len(local)), local],
                    "predicted_prob": sh.module_labels[probs.argmax(axis=1)],
                    "probs": list(probs.astype(np.float32)),
                    "label_votes": list(res["label_votes"]),
                }
            )
        )
        log.info(
            "%s_s%d: %d images, %d out-of-sample FNNs each, super-majority against the label: %d",
            mname,
            sh.submodule,
            len(local),
            res["n_fnns"],
            int(np.sum(res["super_majority"] & (res["predicted"] != sh.labels))),
        )
    return pd.concat(frames, ignore_index=True)[OOS_COLUMNS] if frames else empty_oos()


_TEXT = (
    "image_id",
    "batch",
    "module",
    "submodule",
    "source",
    "fold",
    "proto",
    "probs",
    "label_votes",
)


def empty_oos() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: pd.Series(
                dtype=object
                if c in _TEXT
                else bool
                if c == "super_majority"
                else float
                if c in ("agreement", "prob_given")
                else np.int64
            )
            for c in OOS_COLUMNS
        }
    )


# ---------------------------------------------------------------- evidence beside cleanlab


def train_votes(predictions: Sequence[str | Path], proto: str) -> pd.DataFrame:
    """The training-set vote of ``proto`` (its largest featured model, top-1 protocol) from
    ``evaluation/predictions/{batch}.parquet``: image_id, train_vote (the voted global label)."""
    frames = []
    for path in predictions:
        df = pd.read_parquet(
            path, columns=["image_id", "split", "proto", "p", "protocol", "predicted"]
        )
        df = df[(df["split"] == "train") & (df["proto"] == proto) & (df["protocol"] == "top1")]
        frames.append(df[df["p"] == df["p"].max()] if len(df) else df)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(df) == 0:
        raise DataError(
            f"no training-set predictions of {proto} in {len(predictions)} prediction file(s) "
            "(label_issues.proto not evaluated?)"
        )
    return df[["image_id", "predicted"]].rename(columns={"predicted": "train_vote"})
