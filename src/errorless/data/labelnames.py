"""Label names of a data set (``labels.csv`` or the names its files carry), for the report and
``predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from errorless.data.readers import array_at, read_pickle
from errorless.errors import DataError

# ---------------------------------------------------------------- label names


def label_names_file(cfg: dict[str, Any]) -> Path | None:
    """The file that names the labels: ``dataset.label_names`` when set, else the data set's
    own (CIFAR-10 ``batches.meta``, CIFAR-100 ``meta``, the photos' ``labels.csv``), or None."""
    if cfg["dataset"].get("label_names"):
        return Path(cfg["dataset"]["label_names"])
    root, fmt = Path(cfg["dataset"]["path"]), cfg["dataset"]["format"]
    own = {"cifar10": "batches.meta", "cifar100": "meta", "photos": "labels.csv"}.get(fmt)
    return root / own if own else None


def label_names(cfg: dict[str, Any], labels: int) -> list[str]:
    """A name for each of the ``labels`` labels (see :func:`label_names_file`); the label
    number where nothing names it. ``dataset.label_names`` is a CSV with the header
    ``label,name`` (labels 0-based) or a text file of one name per line in label order."""
    path = label_names_file(cfg)
    names = [str(i) for i in range(labels)]
    if path is None:
        return names
    given = cfg["dataset"].get("label_names")
    where = f"config key dataset.label_names: {path}" if given else str(path)
    if not path.is_file():
        if given:
            raise DataError(f"{where} does not exist")
        return names
    try:
        if path.suffix in (".meta", "") and path.name in ("batches.meta", "meta"):
            d = read_pickle(path)
            key = "label_names" if "label_names" in d else "fine_label_names"
            found = {i: _text(n) for i, n in enumerate(array_at(d, path, key))}
        else:
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
            head = [c.strip() for c in lines[0].split(",")] if lines else []
            if head[:2] == ["label", "name"]:
                found = {}
                for n, ln in enumerate(lines[1:], start=2):
                    label, _, name = ln.partition(",")
                    if not label.strip().isdigit():
                        raise DataError(f"{where}, line {n}: {label!r} is not a label number")
                    found[int(label)] = name.split(",")[0].strip()
            else:
                found = dict(enumerate(ln.strip() for ln in lines))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{where} cannot be read: {e}") from None
    for i, name in found.items():
        if 0 <= i < labels and name:
            names[i] = name
    return names


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
