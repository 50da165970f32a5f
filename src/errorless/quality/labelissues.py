"""Single mislabelled images (not duplicates): out-of-sample probabilities, ranked with cleanlab.

GDT residuals and the duplicate search only see images that occur twice; a single image with
a wrong label is simply memorised by its own submodule's FNNs. What finds it is a prediction
made **without** that image: an out-of-sample (cross-validated) probability, the input of
confident learning (Northcutt et al., 2021). Two sources (docs/label-issues.md):

* **cross-fitted FNNs** (``errorless.quality.crossfit``, on by default: ``label_issues.crossfit.folds``
  K ≥ 2): per module, each fold's images predicted by FNNs trained on the other folds, with
  augmentation; the strongest evidence the method's own FNNs give;
* **the other submodules' FNNs** of the trained model: every image of module j lies in one
  submodule s, and the FNNs (·, j, s') of the other submodules never saw it (needs
  ``modules.submodules`` ≥ 2). They give the ``vote`` evidence and, with cross-fitting off,
  the probabilities.

``out-of-sample`` (rule ``out_of_sample``): one row per training image (OOS_COLUMNS): ``probs``
over the module's c labels (``source``: crossfit or submodules), and the other submodules'
``predicted``, ``votes``, ``super_majority`` (all p features of one other submodule agree),
``agreement`` = votes / p, ``label_votes``. Written to ``{results}/quality/out_of_sample.parquet``.

``label-issues`` (rule ``label_issues``): per module (labels local 0..c−1)
``cleanlab.filter.find_label_issues(labels, probs)`` (prune by noise rate) and
``cleanlab.rank.get_label_quality_scores`` (self-confidence; lower = more suspicious); beside
them the **training-set vote's own mistakes** (the proto-model's vote, docs/method.md#the-vote, on
its own
training images is not the given label, although every FNN fitted its own images: read from
``evaluation/predictions``) and, when given, **the user's out-of-sample probabilities**
(``label_issues.pred_probs``, cleanlab's ``pred_probs``: (N, L), the data set's order), ranked
with cleanlab too. An image is flagged by ``label_issues.flag`` (``cleanlab`` default, ``vote``,
``either``, ``both``) or by cleanlab on the user's probabilities. Ranked by (flagged, label
quality; ``rank_by``). Kept apart from the duplicate and GDT evidence: its own tables
``quality/label_issues.{parquet,csv}``, thumbnails and planted check
``quality/label_issues_check.csv`` (precision / recall of every kind of evidence against the
planted ``label_flip`` images, and at top-k = the number of flips).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from errorless.config import device_argument, settings_arguments, settings_from_args
from errorless.data.shards import manifest_shards
from errorless.errors import ConfigError, DataError
from errorless.io import atomic_path, write_parquet, write_text
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
ISSUE_COLUMNS = [
    "rank",
    *IMAGE_COLUMNS,
    "predicted",
    "votes",
    "p",
    "super_majority",
    "agreement",
    "prob_given",
    "label_quality",
    "cleanlab_issue",
    "vote_against",
    "train_vote",
    "train_vote_wrong",
    "user_quality",
    "user_issue",
    "flagged",
    "evidence",
    "source",
]
FLAGS = ("either", "cleanlab", "vote", "both")
SOURCES = ("crossfit", "submodules")
CHECK_COLUMNS = [
    "evidence",
    "used",
    "planted",
    "flagged",
    "correct",
    "precision",
    "recall",
    "flagged_copies",
    "note",
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
    from errorless.gather.gather import load_proto

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
    submodules) for a :class:`gather.ProtoWeights` and :class:`shards.Shard` objects."""
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


def load_pred_probs(
    path: str | Path, oos: pd.DataFrame, batches: Sequence[str], num_labels: int
) -> pd.DataFrame:
    """A user's out-of-sample probabilities (cleanlab's ``pred_probs``): a .npy (N, L), one row
    per training image in the data set's order (``batches`` in order, each by row). Returns
    image_id, user_probs (L,) for the images of ``oos``; any mismatch is a one-line error."""
    key = f"config key label_issues.pred_probs: {path}"
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key} does not exist")
    try:
        P = np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as e:  # noqa: BLE001 - not a .npy file, truncated, pickled objects, ...
        raise DataError(f"{key}: not a readable .npy array ({type(e).__name__}: {e})") from None
    n = len(oos)
    if P.ndim != 2 or P.shape != (n, num_labels) or P.dtype.kind not in "fiu":
        raise DataError(
            f"{key}: expected numbers of shape ({n}, {num_labels}) (training images x labels, "
            f"in the data set's order), got {P.dtype} {P.shape}"
        )
    P = np.asarray(P, dtype=np.float64)
    if not np.isfinite(P).all() or (P < 0).any():
        raise DataError(f"{key}: probabilities must be finite and non-negative")
    sums = P.sum(axis=1)
    if (np.abs(sums - 1) > 1e-3).any():
        i = int(np.argmax(np.abs(sums - 1)))
        raise DataError(f"{key}: row {i} sums to {sums[i]:.4f}, not 1 (softmax outputs expected)")
    order = {b: i for i, b in enumerate(batches)}
    unknown = set(oos["batch"]) - set(order)
    if unknown:
        raise DataError(f"{key}: images of batch {sorted(unknown)[0]!r}, not a training batch")
    sizes = oos.groupby("batch")["row"].agg(["count", "max"])
    if (sizes["max"] + 1 != sizes["count"]).any():
        raise DataError(f"{key}: the training images' rows are not 0..n-1 per batch")
    offset = np.cumsum([0] + [int(sizes["count"].get(b, 0)) for b in batches])
    index = offset[oos["batch"].map(order).to_numpy()] + oos["row"].to_numpy(np.int64)
    return pd.DataFrame({"image_id": oos["image_id"].to_numpy(), "user_probs": list(P[index])})


def _cleanlab(labels: np.ndarray, P: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(self-confidence label quality, find_label_issues mask) of one set of probabilities."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    P = P / P.sum(axis=1, keepdims=True)
    quality = get_label_quality_scores(labels, P)
    issue = np.zeros(len(labels), dtype=bool)
    if len(np.unique(labels)) < P.shape[1]:
        log.warning("%s: not every label has an image; cleanlab's issue filter skipped there", what)
        return quality, issue
    try:
        issue = find_label_issues(labels, P, n_jobs=1)
    except (ValueError, ZeroDivisionError) as e:  # degenerate (e.g. one image per label)
        log.warning("%s: cleanlab find_label_issues failed (%s); no issue flags there", what, e)
    return quality, issue


def find_issues(
    oos: pd.DataFrame,
    flag: str = "cleanlab",
    train_vote: pd.DataFrame | None = None,
    user: pd.DataFrame | None = None,
    rank_by: str = "auto",
) -> pd.DataFrame:
    """Every image with its label quality and flags, ranked (ISSUE_COLUMNS).

    ``train_vote`` (image_id, train_vote): the training-set vote, :func:`train_votes`;
    ``user`` (image_id, user_probs): :func:`load_pred_probs`."""
    if flag not in FLAGS:
        raise DataError(f"config key label_issues.flag: {flag!r} not in {FLAGS}")
    df = oos.copy()
    df["label_quality"] = np.nan
    df["cleanlab_issue"] = False
    for m, idx in df.groupby("module", sort=True).groups.items():
        sub = df.loc[idx]
        quality, issue = _cleanlab(
            sub["label_local"].to_numpy(np.int64),
            np.stack(sub["probs"].to_numpy()).astype(np.float64),  # (n, c)
            f"module {m}",
        )
        df.loc[idx, "label_quality"] = quality
        df.loc[idx, "cleanlab_issue"] = issue
    df["cleanlab_issue"] = df["cleanlab_issue"].astype(bool)
    df["vote_against"] = df["super_majority"].astype(bool) & (df["predicted"] != df["label"])
    df["train_vote"] = np.int64(-1)
    if train_vote is not None:
        tv = train_vote.set_index("image_id")["train_vote"]
        df["train_vote"] = df["image_id"].map(tv).fillna(-1).astype(np.int64)
    df["train_vote_wrong"] = (df["train_vote"] >= 0) & (df["train_vote"] != df["label"])
    df["user_quality"], df["user_issue"] = np.nan, False
    if user is not None:
        P = np.stack(df["image_id"].map(user.set_index("image_id")["user_probs"]).to_numpy())
        df["user_quality"], df["user_issue"] = _cleanlab(
            df["label"].to_numpy(np.int64), P, "label_issues.pred_probs"
        )
    own = flag_rule(df["cleanlab_issue"].to_numpy(), df["vote_against"].to_numpy(), flag)
    df["flagged"] = own | df["user_issue"].to_numpy(bool)
    kinds = [
        ("cleanlab", df["cleanlab_issue"]),
        ("vote", df["vote_against"]),
        ("train_vote", df["train_vote_wrong"]),
        ("pred_probs", df["user_issue"]),
    ]
    df["evidence"] = [
        "+".join(k for (k, _), hit in zip(kinds, row, strict=True) if hit)
        for row in zip(*(v.to_numpy(bool) for _, v in kinds), strict=True)
    ]
    key = (
        "user_quality"
        if rank_by == "pred_probs" or (rank_by == "auto" and user is not None)
        else "label_quality"
    )
    df = df.sort_values(["flagged", key, "image_id"], ascending=[False, True, True], kind="stable")
    df.insert(0, "rank", np.arange(1, len(df) + 1, dtype=np.int64))
    return df[ISSUE_COLUMNS].reset_index(drop=True)


def flag_rule(cleanlab_issue: np.ndarray, vote_against: np.ndarray, flag: str) -> np.ndarray:
    return {
        "either": cleanlab_issue | vote_against,
        "both": cleanlab_issue & vote_against,
        "cleanlab": cleanlab_issue,
        "vote": vote_against,
    }[flag]


# ---------------------------------------------------------------- planted check


def flip_ids(planted: pd.DataFrame) -> set[str]:
    return {str(i) for i in planted.loc[planted["kind"] == "label_flip", "id_a"]}


def copy_ids(planted: pd.DataFrame) -> set[str]:
    """Images that carry a planted copy (id_b of a copy plant): mislabelled by construction."""
    return {str(i) for i in planted.loc[planted["kind"] != "label_flip", "id_b"].dropna()}


def score_flags(flagged_ids: set[str], ranked_ids: list[str], flips: set[str]) -> dict[str, float]:
    """Precision / recall of a flagged set and of the top-k ranked (k = number of flips)."""
    k = len(flips)
    top = set(ranked_ids[:k])
    hit = len(flagged_ids & flips)
    return {
        "flagged": len(flagged_ids),
        "correct": hit,
        "precision": hit / len(flagged_ids) if flagged_ids else np.nan,
        "recall": hit / k if k else np.nan,
        "topk_correct": len(top & flips),
        "topk_precision": len(top & flips) / k if k else np.nan,
    }


def planted_check(issues: pd.DataFrame, planted: pd.DataFrame, flag: str) -> pd.DataFrame:
    """Per flag rule and for the top-k ranking: precision and recall against the planted flips."""
    flips, copies = flip_ids(planted), copy_ids(planted)
    out = []
    for rule in FLAGS:
        sel = set(
            issues.loc[
                flag_rule(
                    issues["cleanlab_issue"].to_numpy(), issues["vote_against"].to_numpy(), rule
                ),
                "image_id",
            ]
        )
        note = (
            "flagged images that carry a planted copy are not flips: they count against precision"
        )
        out.append(check_row(rule, rule == flag, flips, sel, copies, note))
    for kind, column, note in (
        ("train_vote", "train_vote_wrong", "the training-set vote of label_issues.proto is wrong"),
        ("pred_probs", "user_issue", "cleanlab on the user's label_issues.pred_probs"),
    ):
        if kind == "pred_probs" and issues["user_quality"].isna().all():
            continue
        sel = set(issues.loc[issues[column].astype(bool), "image_id"])
        out.append(check_row(kind, False, flips, sel, copies, note))
    ranked = issues.sort_values(["label_quality", "image_id"], kind="stable")["image_id"].tolist()
    top = set(ranked[: len(flips)])
    k = len(flips)
    note = "ranking by cleanlab's label quality alone"
    out.append(check_row(f"top_k (k = {k}, lowest label quality)", False, flips, top, copies, note))
    return pd.DataFrame(out, columns=CHECK_COLUMNS)


def check_row(
    evidence: str, used: bool, flips: set[str], flagged: set[str], copies: set[str], note: str
) -> dict[str, Any]:
    """One row of the label-issue check (CHECK_COLUMNS): precision = correct / flagged,
    recall = correct / planted flips (NaN when undefined)."""
    s = score_flags(flagged, [], flips)
    values = (evidence, used, len(flips), s["flagged"], s["correct"], s["precision"], s["recall"])
    return dict(zip(CHECK_COLUMNS, (*values, len(flagged & copies), note), strict=True))


def no_check(reason: str) -> pd.DataFrame:
    return pd.DataFrame(
        [check_row("none", False, set(), set(), set(), reason)], columns=CHECK_COLUMNS
    )


# ---------------------------------------------------------------- figure


def issues_figure(
    issues: pd.DataFrame,
    shards: Sequence[Path],
    path: Path,
    top: int,
    planted: set[str] | None = None,
) -> None:
    """Thumbnails of the top flagged images: given label, the out-of-sample vote, evidence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from errorless.quality.doublelabel import fetch_images

    show = issues[issues["flagged"]].head(top)
    if len(show) == 0:
        fig, ax = plt.subplots(figsize=(5, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no label issues flagged", ha="center", va="center", fontsize=12)
    else:
        cols = min(6, len(show))
        rows = -(-len(show) // cols)
        images = fetch_images(shards, set(show["image_id"]))
        fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 3.0 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, r in zip(axes.flat, show.to_dict("records"), strict=False):
            img = images.get(r["image_id"])
            if img is not None:
                ax.imshow(
                    img[..., 0] if img.shape[-1] == 1 else img,
                    cmap="gray" if img.shape[-1] == 1 else None,
                    vmin=0,  # grey as stored: a darker copy looks darker (no per-image stretch)
                    vmax=255,
                    interpolation="nearest",
                )
            mark = " (planted flip)" if planted and r["image_id"] in planted else ""
            ax.set_title(
                f"#{r['rank']} {r['image_id']}{mark}\ngiven {r['label']}, vote {r['predicted']} "
                f"({r['votes']}/{r['p']})\n{r['evidence']}, q {r['label_quality']:.2f}",
                fontsize=6,
            )
        fig.suptitle(
            "label issues: out-of-sample vote of the other submodule against the given label",
            fontsize=9,
        )
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------- CLI


def oos_arguments(p: argparse.ArgumentParser) -> None:
    from errorless.evaluate.cli import fnn_arguments

    settings_arguments(p)
    fnn_arguments(p, "shards/manifest.tsv (the run's shards)", shards_required=True)
    p.add_argument(
        "--proto", help="proto-model whose FNNs vote (default: config label_issues.proto)"
    )
    p.add_argument(
        "--crossfit",
        nargs="*",
        default=[],
        help="the cross-fit tables of every (module, fold) (quality/crossfit/*.parquet)",
    )
    device_argument(p)
    p.add_argument(
        "--out", required=True, help="out-of-sample Parquet (results/quality/out_of_sample.parquet)"
    )


def oos_main(args: argparse.Namespace) -> int:
    cfg = settings_from_args(args)
    paths = list(manifest_shards(args.manifest).values())
    if not cfg["label_issues"]["enabled"]:
        log.warning("label_issues.enabled is false: label-issue evidence skipped")
        df = empty_oos()
    else:
        df = out_of_sample(cfg, args.weights, paths, args.proto, args.crossfit)
    write_parquet(Path(args.out), df)
    if len(df):
        log.info(
            "%d images -> %s (probabilities: %s); out-of-sample accuracy %.4f",
            len(df),
            args.out,
            ", ".join(sorted(set(df["source"]))),
            float(np.mean(df["predicted_prob"] == df["label"])),
        )
    return 0


def issues_arguments(p: argparse.ArgumentParser) -> None:
    settings_arguments(p)
    p.add_argument("--oos", required=True, help="out_of_sample.parquet")
    p.add_argument("--manifest", help="shards/manifest.tsv: the shards, for the thumbnails")
    p.add_argument("--planted", help="planted truth CSV (flips have kind label_flip)")
    p.add_argument("--out", required=True, help="label issues Parquet (every image, ranked)")
    p.add_argument("--csv", required=True, help="label issues CSV (flagged images only)")
    p.add_argument("--check", required=True, help="planted check CSV")
    p.add_argument("--figure", help="thumbnails PNG")
    p.add_argument(
        "--predictions",
        nargs="*",
        default=[],
        help="evaluation/predictions/{batch}.parquet of the training batches (the training-set vote)",
    )
    p.add_argument(
        "--batches",
        nargs="*",
        default=[],
        help="the training batches in the data set's order (for label_issues.pred_probs)",
    )
    p.add_argument(
        "--labels", type=int, help="L, the data set's labels (for label_issues.pred_probs)"
    )


def issues_main(args: argparse.Namespace) -> int:
    from errorless.quality.doublelabel import read_planted

    cfg = settings_from_args(args)
    flag = cfg["label_issues"]["flag"]
    oos = pd.read_parquet(args.oos)
    planted = read_planted(Path(args.planted)) if args.planted else None
    if len(oos) == 0:
        reason = (
            "skipped: modules.submodules < 2 (no FNN is out of sample)"
            if cfg["modules"]["submodules"] < 2
            else "skipped: no out-of-sample predictions (label_issues.enabled false?)"
        )
        log.warning("label issues %s", reason)
        issues = pd.DataFrame(columns=ISSUE_COLUMNS)
        check = no_check(reason)
    else:
        li = cfg["label_issues"]
        votes = (
            train_votes(args.predictions, li["proto"] or default_proto(cfg))
            if args.predictions
            else None
        )
        user = None
        if li["pred_probs"]:
            if not args.labels or not args.batches:
                raise ConfigError("label_issues.pred_probs needs --labels and --batches")
            user = load_pred_probs(li["pred_probs"], oos, args.batches, args.labels)
        issues = find_issues(oos, flag, votes, user, li["rank_by"])
        check = (
            planted_check(issues, planted, flag)
            if planted is not None
            else no_check("no ground truth: real data set (no planted.csv)")
        )
    write_parquet(Path(args.out), issues)
    flagged = issues[issues["flagged"].astype(bool)] if len(issues) else issues
    write_text(Path(args.csv), flagged.to_csv(index=False, float_format="%.4f"))
    write_text(Path(args.check), check.to_csv(index=False, float_format="%.4f"))
    if args.figure:
        issues_figure(
            issues,
            list(manifest_shards(args.manifest).values()) if args.manifest else [],
            Path(args.figure),
            cfg["double_labeling"]["thumbnails"],
            flip_ids(planted) if planted is not None else None,
        )
    log.info(
        "%d images, %d flagged (rule %s: %s)",
        len(issues),
        len(flagged),
        flag,
        flagged["evidence"].value_counts().to_dict() if len(flagged) else {},
    )
    for line in check.to_dict("records"):
        log.info("planted check %s", line)
    return 0
