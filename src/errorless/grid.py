"""The job grid: labels, modules, submodules, features and proto-models of a config.

Built once here and used by the workflow (``workflow/rules/common.smk``) and ``errorless
info``, so that what the pipeline plans and what ``info`` shows cannot differ.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from errorless.config import methods, module_names, proto_names, submodule_names
from errorless.data.datasets import num_labels
from errorless.errors import ConfigError
from errorless.names import proto_name


@dataclass(frozen=True)
class JobGrid:
    labels: int  # L
    labels_per_module: int  # c
    modules: list[str]  # m01, m02, ... (zero-padded to the widest)
    submodules: list[str]  # s1, s2, ...
    features: list[str]
    models: list[str]  # trained model wildcard values: h1_m1, h2_m1, ...
    methods: list[str]  # S, Sp, T
    protos: list[str]  # S_h1_m1, T_h1_m1, ...

    @property
    def fnns(self) -> int:
        """Training jobs: one per (model, feature, module, submodule)."""
        return len(self.models) * len(self.features) * len(self.modules) * len(self.submodules)

    def shards(self) -> list[tuple[str, str]]:
        """(module, submodule) of every shard, in grid order."""
        return [(m, s) for m in self.modules for s in self.submodules]

    def jobs(self) -> list[Job]:
        """Every training job of the grid (see :func:`fnn_jobs`)."""
        return fnn_jobs(self.models, self.features, self.shards())


Job = tuple[str, str, str, str]  # (model, feature, module, submodule)


def fnn_jobs(
    models: Sequence[str], features: Sequence[str], shards: Iterable[tuple[str, str]]
) -> list[Job]:
    """The training jobs (model, feature, module, submodule): models × features × shards, in
    that order. The one definition of the grid's jobs: the workflow's training targets, the
    gather's expected jobs and the double-labelling's expected T-FNNs all come from here."""
    shards = list(shards)
    return [(model, f, m, s) for model in models for f in features for m, s in shards]


@dataclass(frozen=True)
class ModulePlan:
    """Which labels each module holds: ``modules[j]`` the sorted global labels of module j+1;
    ``groups[label]`` the label's group name (``modules.groups``), None without groups."""

    labels: int  # L
    modules: list[np.ndarray]
    groups: list[str] | None = None

    def module_of(self) -> np.ndarray:
        """int64 (L,): the 0-based module index of every label."""
        out = np.empty(self.labels, dtype=np.int64)
        for j, labels in enumerate(self.modules):
            out[labels] = j
        return out


def read_groups(path: str | Path, labels: int) -> dict[str, list[int]]:
    """A ``modules.groups`` CSV (header ``label,group``; labels 0-based): group -> its labels, in
    the order the groups first appear. Every label 0..L-1 in exactly one group, or a one-line
    ConfigError naming the file."""
    path = Path(path)
    where = f"config key modules.groups: {path}"
    if not path.is_file():
        raise ConfigError(f"{where} does not exist")
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"{where} cannot be read: {e}") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows or [c.strip() for c in rows[0][:2]] != ["label", "group"]:
        raise ConfigError(f"{where}: the first line must be the header 'label,group'")
    groups: dict[str, list[int]] = {}
    seen: dict[int, str] = {}
    for n, r in enumerate(rows[1:], start=2):
        if len(r) < 2 or not r[1].strip():
            raise ConfigError(f"{where}, line {n}: needs a label and a group")
        text, group = r[0].strip(), r[1].strip()
        if not text.lstrip("-").isdigit() or not 0 <= int(text) < labels:
            raise ConfigError(
                f"{where}, line {n}: unknown label {text!r} (labels are 0..{labels - 1})"
            )
        label = int(text)
        if label in seen:
            raise ConfigError(
                f"{where}, line {n}: label {label} is in two groups ({seen[label]!r}, {group!r})"
            )
        seen[label] = group
        groups.setdefault(group, []).append(label)
    missing = sorted(set(range(labels)) - set(seen))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise ConfigError(f"{where}: {len(missing)} label(s) in no group: {shown}")
    return groups


def cut_group(labels: Sequence[int], c: int) -> list[np.ndarray]:
    """A group's labels (sorted) cut into ceil(n / c) balanced modules of at most c labels
    (sizes differ by at most one); a group of at most c labels stays whole."""
    labels = np.sort(np.asarray(labels, dtype=np.int64))
    k = -(-len(labels) // c)
    return [np.asarray(part) for part in np.array_split(labels, k)]


def module_plan(cfg: dict[str, Any], labels: int | None = None) -> ModulePlan:
    """The modules of a validated config: contiguous ranges of ``labels_per_module`` labels, or
    with ``modules.groups`` each group (cut by :func:`cut_group`) in the file's order. ``labels``:
    L when known (a generator's own setting), else from the dataset section."""
    labels = labels if labels is not None else num_labels(cfg)
    if labels is None:
        raise ConfigError(
            "config key dataset.labels: set the number of labels L for format npz "
            "(the module grid must be known before the data is read)"
        )
    c = cfg["modules"]["labels_per_module"]
    path = cfg["modules"].get("groups")
    if not path:
        if labels % c:
            raise ConfigError(
                f"config key modules.labels_per_module: {labels} labels cannot be split into "
                f"modules of {c} (L must be divisible by labels_per_module, or give modules.groups)"
            )
        return ModulePlan(
            labels, [np.arange(j, j + c, dtype=np.int64) for j in range(0, labels, c)]
        )
    groups = read_groups(path, labels)
    modules = [m for members in groups.values() for m in cut_group(members, c)]
    single = [g for g, members in groups.items() if any(len(m) < 2 for m in cut_group(members, c))]
    if single:
        raise ConfigError(
            f"config key modules.groups: {path}: group(s) {single} "
            "give a module of one label (an FNN needs at least two labels; merge the group "
            "or raise modules.labels_per_module)"
        )
    of = {label: g for g, members in groups.items() for label in members}
    return ModulePlan(labels, modules, [of[i] for i in range(labels)])


def job_grid(cfg: dict[str, Any]) -> JobGrid:
    """The grid of a validated config; a ConfigError names the key when it cannot be built."""
    plan = module_plan(cfg)
    labels = plan.labels
    c = cfg["modules"]["labels_per_module"]
    models = proto_names(cfg)
    meths = methods(cfg)
    return JobGrid(
        labels=labels,
        labels_per_module=c,
        modules=module_names(len(plan.modules)),
        submodules=submodule_names(cfg["modules"]["submodules"]),
        features=list(cfg["features"]),
        models=models,
        methods=meths,
        protos=[proto_name(m, model) for model in models for m in meths],
    )
