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
from dataclasses import field, fields, make_dataclass
from pathlib import Path
from typing import Any

from errorless.data import datasets
from errorless.data.datasets import GREY_FORMATS  # noqa: F401 (re-exported)
from errorless.errors import ConfigError
from errorless.names import model_name, module_names, submodule_names  # noqa: F401 (re-exported)

SCHEMA_PATH = Path(__file__).parent / "schema" / "config.schema.yaml"


def _table1() -> dict[str, tuple[float, float, float]]:
    """docs/method.md#features-and-the-input-transform, in the paper's order: weights of (R, G, B)
    per feature. The three
    channels; every pair of channels mixed at the golden section (g1: 0.618 on the first,
    g2: 0.382) and half and half; then equal weights, BW luma and the CIE X, Y, Z rows."""
    table = {ch: tuple(float(i == k) for k in range(3)) for i, ch in enumerate("RGB")}
    for suffix, (a, b) in (("g1", (0.618, 0.382)), ("g2", (0.382, 0.618)), ("", (0.5, 0.5))):
        for i, j in ((0, 1), (0, 2), (1, 2)):
            w = [0.0, 0.0, 0.0]
            w[i], w[j] = a, b
            table["RGB"[i] + "RGB"[j] + suffix] = tuple(w)
    table["eRGB"] = (1 / 3, 1 / 3, 1 / 3)
    table["BW"] = (0.299, 0.587, 0.114)
    table["X"] = (0.4125, 0.3576, 0.1804)
    table["Y"] = (0.2126, 0.7152, 0.0722)
    table["Z"] = (0.0193, 0.1192, 0.9502)
    return table


FEATURES: dict[str, tuple[float, float, float]] = _table1()
GREY_FEATURE = "gray"


def load_schema() -> dict:
    import yaml

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
        return f"config key {key}: {err.message} (see docs/configuration.md)"
    return f"config key {key}: {err.message}"


_TYPES = {"number": (int, float), "integer": (int,), "boolean": (bool,), "null": (type(None),)}


def _typed(text: str, expected) -> tuple[bool, Any]:
    """``text`` read as YAML (and, for numbers, by ``float``: YAML 1.1 reads ``1e-5`` as a
    string) if that gives one of the ``expected`` JSON Schema types."""
    import yaml

    expected = [expected] if isinstance(expected, str) else list(expected)
    if "string" in expected:
        return False, None
    candidates = []
    try:
        candidates.append(yaml.safe_load(text))
    except yaml.YAMLError:
        pass
    try:
        candidates.append(float(text))
    except ValueError:
        pass
    for value in candidates:
        for name in expected:
            types = _TYPES.get(name, ())
            if name in ("number", "integer") and isinstance(value, bool):
                continue
            if name == "integer" and isinstance(value, float) and value.is_integer():
                return True, int(value)
            if isinstance(value, types):
                return True, value
    return False, None


def coerce_strings(config: dict[str, Any]) -> dict[str, Any]:
    """Turn strings where the schema wants a number, an integer or a boolean into that type,
    in place. Snakemake hands nested ``--config`` values over as strings
    (``--config sgd='{threshold: 0.9}'`` gives ``{'threshold': '0.9'}``); a string the schema
    accepts as a string is left alone, one that does not parse stays for the schema's message."""
    for _ in range(1000):  # each pass fixes every type error it can; stops when none is left
        changed = False
        for err in _validator().iter_errors(config):
            if err.validator != "type" or not isinstance(err.instance, str):
                continue
            ok, value = _typed(err.instance, err.validator_value)
            path = list(err.absolute_path)
            if not ok or not path:
                continue
            parent = config
            for part in path[:-1]:
                parent = parent[part]
            parent[path[-1]] = value
            changed = True
        if not changed:
            break
    return config


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``config`` in place, fill in defaults, check cross-key rules; return it.
    The one validation of the project: the workflow (common.smk) and every CLI command call it."""
    coerce_strings(config)
    check_finite(config)
    _schema_errors(config)
    check_consistency(config)
    return config


def _schema_errors(config: dict[str, Any]) -> None:
    """Fill the schema defaults in place; every schema violation in one ConfigError."""
    errors = sorted(_validator().iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("; ".join(_error_text(e) for e in errors))


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


def check_planes(features: list[str], planes: tuple[int, str] | None) -> None:
    """Grey data (1 plane) has the single feature 'gray', colour data (3 planes) the colour
    features: ``planes`` is :func:`errorless.data.datasets.planes` (None: not known, no check)."""
    if planes is None:
        return
    n, source = planes
    if n == 1 and features != [GREY_FEATURE]:
        bad = [f for f in features if f != GREY_FEATURE]
        raise ConfigError(
            f"config key features: the data is grey ({source}: 1 plane), it has the single "
            f"feature 'gray'; colour feature(s) {bad} need 3 planes"
        )
    if n == 3 and GREY_FEATURE in features:
        raise ConfigError(
            f"config key features: 'gray' is only for grey data (1 plane); the data is colour "
            f"({source}: 3 planes): use colour features (R, G, B, ...)"
        )


def check_consistency(config: dict[str, Any]) -> None:
    """Rules the schema cannot express. Grey or colour features: from the format, or for npz
    from the training file's .npy header (:func:`errorless.data.datasets.planes`); checked here, at
    planning and when a command loads a config, not in the jobs (restricted settings)."""
    for key, value in (("results", config["results"]), ("dataset.path", config["dataset"]["path"])):
        if Path(value).resolve() == Path("/").resolve():
            raise ConfigError(
                f"config key {key}: {value!r} is the filesystem root; name a folder for the run"
            )
    feats = config["features"]
    check_planes(feats, datasets.planes(config))
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
    li = config["label_issues"]
    if li["rank_by"] == "pred_probs" and not li["pred_probs"]:
        raise ConfigError(
            "config key label_issues.rank_by: 'pred_probs' needs label_issues.pred_probs "
            "(a .npy file of out-of-sample probabilities)"
        )
    if li["pred_probs"] and not Path(li["pred_probs"]).is_file():
        raise ConfigError(f"config key label_issues.pred_probs: {li['pred_probs']} does not exist")
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


ONLY_KEY = "_only"


class Restricted(dict):
    """Settings a rule received (``_only`` in its ``--settings``): reading a key the rule was
    not given is a ConfigError instead of a silent schema default, so a rule's params list
    (workflow/rules/common.smk ``settings_json``) cannot miss a setting its command reads."""

    def __init__(self, data: dict, where: str = ""):
        super().__init__(data)
        self._where = where

    def __missing__(self, key):
        name = f"{self._where}.{key}" if self._where else str(key)
        raise ConfigError(
            f"config key {name}: not among the settings this command was given "
            "(add it to the rule's settings_json(...) in workflow/rules)"
        )


def restrict(config: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """``config`` cut to ``keys`` (top-level names or dotted ``section.key``), as
    :class:`Restricted` mappings."""
    tree: dict[str, Any] = {}
    for key in keys:
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if node is True:
                break
        else:
            node[parts[-1]] = True

    def cut(value: dict, spec: dict, where: str) -> Restricted:
        out = Restricted({}, where)
        for k, sub in spec.items():
            if k not in value:
                continue
            path = f"{where}.{k}" if where else k
            out[k] = value[k] if sub is True else cut(value[k], sub, path)
        return out

    return cut(config, tree, "")


def parse_settings(text: str) -> dict[str, Any]:
    """A ``--settings`` value: a JSON object, or a JSON/YAML file (``path`` or ``@path``);
    validated, defaults filled. With an ``_only`` list (what the workflow's rules pass) the
    result holds those keys only, and reading any other is an error."""
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
    only = cfg.pop(ONLY_KEY, None)
    if only is None:
        return validate(copy.deepcopy(cfg))
    # the workflow validated the whole config at planning; here the cross-key rules would
    # see schema defaults for the sections this rule was not given
    cfg = copy.deepcopy(cfg)
    coerce_strings(cfg)
    check_finite(cfg)
    _schema_errors(cfg)
    return restrict(cfg, list(only))


def settings_arguments(p, config_help: str = "config YAML (default: schema defaults)") -> None:
    """The ``--config``/``--settings`` pair that :func:`settings_from_args` reads."""
    p.add_argument("--config", help=config_help)
    p.add_argument(
        "--settings",
        help="validated config as a JSON object, or a JSON/YAML file "
        "(path or @path); wins over --config",
    )


def device_argument(p) -> None:
    """``--device``: a machine setting, given apart from the settings so that changing it
    reruns nothing (:func:`settings_from_args` puts it into the config)."""
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: config key device)")


def results_arguments(p) -> None:
    """``--results`` and ``--manifest`` (:func:`results_paths` resolves them)."""
    p.add_argument("--results", help="results folder (default: config key results)")
    p.add_argument(
        "--manifest",
        help="shard manifest: the shards of the run (default: {results}/shards/manifest.tsv)",
    )


def results_paths(args, cfg: dict[str, Any]) -> tuple[Path, Path]:
    """(results folder, shard manifest) of :func:`results_arguments`."""
    results = Path(args.results or cfg["results"])
    return results, Path(args.manifest) if args.manifest else results / "shards" / "manifest.tsv"


def settings_from_args(args) -> dict[str, Any]:
    """The validated config of a command: ``--settings`` wins over ``--config`` (a YAML file);
    neither gives the schema defaults. A ``--device`` (:func:`device_argument`) is put in."""
    if getattr(args, "settings", None):
        cfg = parse_settings(args.settings)
    else:
        cfg = load_config(getattr(args, "config", None))
    if getattr(args, "device", None):
        cfg["device"] = args.device
    return cfg


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


# The typed settings of the training sections: their keys, types and defaults are the schema's
# (schema/config.schema.yaml, the one place a default lives; docs/configuration.md is rendered
# from it), made into frozen dataclasses here.
_PY_TYPES = {"integer": int, "number": float, "boolean": bool, "string": str}


def settings_class(name: str, section: str) -> type:
    """A frozen dataclass of one schema section: a field per key, in the schema's order, with the
    schema's type and default; ``from_dict`` refuses unknown keys."""
    props = load_schema()["properties"][section]["properties"]
    spec = [  # a number's default is a float even where the schema writes 14400
        (k, _PY_TYPES[p["type"]], field(default=_PY_TYPES[p["type"]](p["default"])))
        for k, p in props.items()
    ]
    doc = f"The ``{section}`` settings (schema/config.schema.yaml, defaults included)."
    cls = make_dataclass(name, spec, bases=(_FromDict,), frozen=True, namespace={"__doc__": doc})
    cls.__module__ = __name__
    return cls


TransformSettings = settings_class("TransformSettings", "transform")
SGDSettings = settings_class("SGDSettings", "sgd")
GDTSettings = settings_class("GDTSettings", "gdt")


def proto_names(config: dict[str, Any]) -> list[str]:
    """Trained model wildcard values: '<arch>_m<replicate>', e.g. h1_m1."""
    m = config["models"]
    return [model_name(a, i) for a in m["use"] for i in range(1, m["replicates"] + 1)]


def methods(config: dict[str, Any]) -> list[str]:
    """Proto-model methods produced: S always, Sp with released threshold, T with GDT."""
    out = ["S"]
    if config["sgd"]["released_epochs"] > 0:
        out.append("Sp")
    if config["gdt"]["enabled"]:
        out.append("T")
    return out
