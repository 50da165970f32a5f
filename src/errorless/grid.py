"""The job grid: labels, modules, submodules, features and proto-models of a config.

Built once here and used by the workflow (``workflow/rules/common.smk``) and ``errorless
info``, so that what the pipeline plans and what ``info`` shows cannot differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .config import methods, module_names, proto_names, submodule_names
from .datasets import num_labels
from .errors import ConfigError
from .names import proto_name


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


def job_grid(cfg: dict[str, Any]) -> JobGrid:
    """The grid of a validated config; a ConfigError names the key when it cannot be built."""
    labels = num_labels(cfg)
    if labels is None:
        raise ConfigError(
            "config key dataset.labels: set the number of labels L for format npz "
            "(the module grid must be known before the data is read)"
        )
    c = cfg["modules"]["labels_per_module"]
    if labels % c:
        raise ConfigError(
            f"config key modules.labels_per_module: {labels} labels cannot be split into "
            f"modules of {c} (L must be divisible by labels_per_module)"
        )
    models = proto_names(cfg)
    meths = methods(cfg)
    return JobGrid(
        labels=labels,
        labels_per_module=c,
        modules=module_names(labels // c),
        submodules=submodule_names(cfg["modules"]["submodules"]),
        features=list(cfg["features"]),
        models=models,
        methods=meths,
        protos=[proto_name(m, model) for model in models for m in meths],
    )
