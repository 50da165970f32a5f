"""The validated configuration and the typed settings built from it.

The workflow validates ``config.yaml`` with Snakemake's ``validate`` against
``schema/config.schema.yaml``; the CLI uses :func:`load_config`, which applies the same
schema (with defaults) so that both see identical settings.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

SCHEMA_PATH = Path(__file__).parent / "schema" / "config.schema.yaml"

# SPEC Table 1, in the paper's order. Weights of (R, G, B).
FEATURES: dict[str, tuple[float, float, float]] = {
    "R": (1.0, 0.0, 0.0),
    "G": (0.0, 1.0, 0.0),
    "B": (0.0, 0.0, 1.0),
    "RGg1": (0.618, 0.382, 0.0),
    "RBg1": (0.618, 0.0, 0.382),
    "GBg1": (0.0, 0.618, 0.382),
    "RGg2": (0.382, 0.618, 0.0),
    "RBg2": (0.382, 0.0, 0.618),
    "GBg2": (0.0, 0.382, 0.618),
    "RG": (0.5, 0.5, 0.0),
    "RB": (0.5, 0.0, 0.5),
    "GB": (0.0, 0.5, 0.5),
    "eRGB": (1 / 3, 1 / 3, 1 / 3),
    "BW": (0.299, 0.587, 0.114),
    "X": (0.4125, 0.3576, 0.1804),
    "Y": (0.2126, 0.7152, 0.0722),
    "Z": (0.0193, 0.1192, 0.9502),
}
GREY_FEATURE = "gray"
GREY_FORMATS = {"digits"}


def load_schema() -> dict:
    import yaml  # imported where needed: the training functions run without PyYAML

    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


@functools.cache
def _validator():
    """Built once per process (reading the schema and building the validator costs ~70 ms)."""
    return _validator_with_defaults()(load_schema())


def _validator_with_defaults():
    import jsonschema

    base = jsonschema.Draft202012Validator
    validate_props = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


def _error_text(err) -> str:
    key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    if err.validator == "additionalProperties":
        return f"config key {key}: {err.message} (see the README's configuration table)"
    return f"config key {key}: {err.message}"


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``config`` in place, fill in defaults, check cross-key rules; return it."""
    check_finite(config)
    errors = sorted(_validator().iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("; ".join(_error_text(e) for e in errors))
    check_consistency(config)
    return config


def check_finite(value: Any, key: str = "") -> None:
    """NaN and ±inf pass JSON Schema's ``number`` and every bound (comparisons with NaN are
    false); no setting means anything with them, so they are refused wherever they appear."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {key or '(top level)'}: {value} is not a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_finite(v, f"{key}.{i}")


def check_consistency(config: dict[str, Any]) -> None:
    """Rules the schema cannot express."""
    for key, value in (("results", config["results"]), ("dataset.path", config["dataset"]["path"])):
        if Path(value).resolve() == Path("/").resolve():
            raise ConfigError(
                f"config key {key}: {value!r} is the filesystem root; name a folder for the run"
            )
    feats = config["features"]
    fmt = config["dataset"]["format"]
    grey = fmt in GREY_FORMATS
    if grey and feats != [GREY_FEATURE]:
        bad = [f for f in feats if f != GREY_FEATURE]
        raise ConfigError(
            f"config key features: data set format {fmt!r} is grey, it has the single feature "
            f"'gray'; colour feature(s) {bad} cannot be computed from grey data"
        )
    if not grey and GREY_FEATURE in feats:
        raise ConfigError(
            f"config key features: 'gray' is only for grey data sets; format {fmt!r} is colour"
        )
    too_big = [p for p in config["featured_models"] if p > len(feats)]
    if too_big:
        raise ConfigError(
            f"config key featured_models: {too_big} exceed the {len(feats)} configured features"
        )
    photos = config["photos"]
    if photos["crop_min"] > photos["crop_max"]:
        raise ConfigError(
            f"config key photos.crop_min: {photos['crop_min']} is larger than photos.crop_max "
            f"({photos['crop_max']})"
        )
    archs = config["models"]["architectures"]
    unknown = [a for a in config["models"]["use"] if a not in archs]
    if unknown:
        raise ConfigError(
            f"config key models.use: {unknown} not in models.architectures ({sorted(archs)})"
        )


def check_yaml_file(path: str | Path) -> None:
    """Raise a one-line ConfigError naming ``path`` and the place if it is not valid YAML
    (Snakemake's own message for a broken config file does not name the file)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        return
    try:
        yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} cannot be read: {e}") from None


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict[str, Any]:
    """Read a YAML config (or only the defaults), apply overrides, validate."""
    import yaml

    config: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        check_yaml_file(path)
        config = yaml.safe_load(path.read_text()) or {}
        if not isinstance(config, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping")
    if overrides:
        config = _merge(config, overrides)
    return validate(config)


def parse_settings(text: str) -> dict[str, Any]:
    """A ``--settings`` value: a JSON object, or a JSON/YAML file (``path`` or ``@path``);
    validated, defaults filled."""
    import yaml

    source = "--settings"
    if not text.lstrip().startswith("{"):
        path = Path(text[1:] if text.startswith("@") else text)
        if not path.exists():
            raise ConfigError(f"--settings {text}: neither a JSON object nor an existing file")
        text, source = path.read_text(), str(path)
    try:
        cfg = json.loads(text)  # not YAML first: PyYAML reads JSON's 1e-05 as a string
    except json.JSONDecodeError:
        try:
            cfg = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: not valid JSON/YAML: {e}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: must be a mapping of config keys")
    return validate(copy.deepcopy(cfg))


def settings_arguments(p, config_help: str = "config YAML (default: schema defaults)") -> None:
    """The ``--config``/``--settings`` pair that :func:`settings_from_args` reads."""
    p.add_argument("--config", help=config_help)
    p.add_argument("--settings", help="validated config as a JSON object, or a JSON/YAML file "
                   "(path or @path); wins over --config")


def settings_from_args(args) -> dict[str, Any]:
    """The validated config of a command: ``--settings`` wins over ``--config`` (a YAML file);
    neither gives the schema defaults."""
    if getattr(args, "settings", None):
        return parse_settings(args.settings)
    return load_config(getattr(args, "config", None))


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


class _FromDict:
    """``from_dict`` for the settings dataclasses: unknown keys are a ConfigError."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} settings: {sorted(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class TransformSettings(_FromDict):
    pool: int = 2
    trim: int = 1
    decimals: int = 4


@dataclass(frozen=True)
class SGDSettings(_FromDict):
    threshold: float = 0.98
    max_epochs: int = 300
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    loss: str = "cross_entropy"
    temperature: float = 100.0
    released_epochs: int = 0
    lr_patience: int = 10
    lr_decay: float = 0.5
    init: str = "pytorch"
    init_bound: float = 5.0


@dataclass(frozen=True)
class GDTSettings(_FromDict):
    enabled: bool = True
    anchors: int = 10
    steps: int = 25
    max_steps: int = 125
    consolidate_steps: int = 0
    delta0: float = 0.1
    factor: float = 1.5
    streak: int = 6
    eta_min: float = 0.01
    eta_gain: float = 20.0
    rounds: int = 8
    delta_floor: float = 1e-4
    max_lambda_steps: int = 400
    max_seconds: float = 14400.0
    conflict_precheck: bool = True
    checkpoint_seconds: float = 120.0


def module_names(k: int) -> list[str]:
    """Module wildcard values m01..m40 (zero-padded to at least two digits)."""
    width = max(2, len(str(k)))
    return [f"m{j:0{width}d}" for j in range(1, k + 1)]


def submodule_names(r: int) -> list[str]:
    return [f"s{s}" for s in range(1, r + 1)]


def proto_names(config: dict[str, Any]) -> list[str]:
    """Trained model wildcard values: '<arch>_m<replicate>', e.g. h1_m1."""
    m = config["models"]
    return [f"{a}_m{i}" for a in m["use"] for i in range(1, m["replicates"] + 1)]


def methods(config: dict[str, Any]) -> list[str]:
    """Proto-model methods produced: S always, Sp with released threshold, T with GDT."""
    out = ["S"]
    if config["sgd"]["released_epochs"] > 0:
        out.append("Sp")
    if config["gdt"]["enabled"]:
        out.append("T")
    return out
