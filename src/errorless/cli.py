"""``errorless <command>``: the small CLI the Snakemake rules call.

Each command lives in a module that defines ``<prefix>_arguments(parser)`` and
``<prefix>_main(args) -> int``. User errors (:class:`ErrorlessError`) print one clear line
and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from errorless.errors import ErrorlessError

# command -> (module, function prefix, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "synthesize": (
        "errorless.data.synthetic",
        "synthesize",
        "write the synthetic data set (imagenet64 layout)",
    ),
    "photos": (
        "errorless.data.photos",
        "photos",
        "write crops of the bundled photographs (imagenet64 layout)",
    ),
    "modularize": (
        "errorless.data.shards",
        "modularize",
        "split a data set into (module, submodule) shards",
    ),
    "train": ("errorless.train.train", "train", "train one FNN: SGD to the threshold, then GDT"),
    "gather": (
        "errorless.gather.gather",
        "gather",
        "collect every job's weights and metrics into Parquet",
    ),
    "evaluate-training": (
        "errorless.evaluate.cli",
        "training",
        "training evaluation table (paper Table 2)",
    ),
    "evaluate": (
        "errorless.evaluate.cli",
        "evaluate",
        "majority-vote evaluation of one source batch",
    ),
    "summarize": (
        "errorless.evaluate.cli",
        "summarize",
        "accuracy, Top-1 and confusion tables from predictions",
    ),
    "confusion": (
        "errorless.evaluate.confusion",
        "confusion",
        "confusion counts, most confused pairs, errors inside modules (from predictions)",
    ),
    "predict": (
        "errorless.evaluate.predict",
        "predict",
        "predict labels of new images with a trained results folder",
    ),
    "duplicates": (
        "errorless.quality.duplicates",
        "duplicates",
        "exact and near duplicates with different labels",
    ),
    "double-labeling": (
        "errorless.quality.doublelabel",
        "doublelabel",
        "double-labelling report and planted-truth check",
    ),
    "cross-fit": (
        "errorless.quality.crossfit",
        "crossfit",
        "cross-fitted FNNs of one (module, fold): out-of-sample probabilities",
    ),
    "out-of-sample": (
        "errorless.quality.labelissues",
        "oos",
        "out-of-sample votes of the other submodule's FNNs",
    ),
    "label-issues": (
        "errorless.quality.labelissues",
        "issues",
        "single mislabelled images: cleanlab + out-of-sample vote",
    ),
    "report-figures": (
        "errorless.report.report",
        "figures",
        "figures and tables for the HTML report",
    ),
    "info": ("errorless.cli", "info", "show the validated configuration and the job grid"),
    "config-docs": (
        "errorless.configdocs",
        "config_docs",
        "docs/configuration.md from the config schema (--write FILE)",
    ),
    "write-config": (
        "errorless.cli",
        "write_config",
        "write the validated config (defaults filled) as YAML",
    ),
}


def info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="config YAML (default: only the schema defaults)")


def info_main(args: argparse.Namespace) -> int:
    import json

    from errorless.config import load_config
    from errorless.grid import job_grid, module_plan

    cfg = load_config(args.config)
    print(json.dumps(cfg, indent=1))
    grid = job_grid(cfg)  # the grid the workflow plans
    print("labels:", grid.labels)
    print("protos:", grid.protos)
    print("features:", grid.features)
    print("modules:", grid.modules)
    if cfg["modules"]["groups"]:  # modules of label groups: which labels each holds
        for m, labels in zip(grid.modules, module_plan(cfg).modules, strict=True):
            print(f"  {m}: labels {labels.tolist()}")
    print("submodules:", grid.submodules)
    print("training jobs:", grid.fnns)
    return 0


def write_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--settings", required=True, help="config as a JSON string")
    p.add_argument("--out", required=True, help="YAML file to write")


def write_config_main(args: argparse.Namespace) -> int:
    import json

    import yaml

    from errorless.config import validate
    from errorless.io import write_text

    given = json.loads(args.settings)
    cfg = validate(dict(given))
    # provenance only: no rule reads this file (each rule gets the settings it reads as params);
    # the machine settings (resources, device) left out by the workflow stay out
    cfg = {k: v for k, v in cfg.items() if k in given}
    write_text(
        args.out,
        "# the validated experiment settings of this results folder (defaults filled in);\n"
        "# provenance only: rules receive the settings they read as params, and the machine\n"
        "# settings (resources, device) are not recorded here\n"
        + yaml.safe_dump(cfg, sort_keys=False),
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="errorless", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, prefix, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_target=(module, prefix))
        mod = _load(module, name)
        if mod is not None:
            getattr(mod, f"{prefix}_arguments")(p)
    return parser


def _load(module: str, name: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:  # command not built into this installation
            return None
        raise


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    module, prefix = args._target
    mod = _load(module, args.command)
    if mod is None:
        parser.error(f"command {args.command!r} is not available ({module} missing)")
    try:
        return int(getattr(mod, f"{prefix}_main")(args) or 0)
    except ErrorlessError as e:
        print(f"errorless {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
