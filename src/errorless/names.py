"""Names of the job grid, made and read in one place.

* module ``m01 … mK`` (zero-padded to the width of K, at least two digits), submodule ``s1 … sR``;
* shard ``<module>_<submodule>``, e.g. ``m03_s2``;
* trained model ``<arch>_m<replicate>``, e.g. ``h1_m1``;
* proto-model ``<method>_<model>``, e.g. ``T_h1_m1`` (method S, Sp or T);
* cross-fitting fold ``f1 … fK`` (label-issue evidence, ``errorless.quality.crossfit``);
* featured model ``Model-<p>`` (the first p features' FNNs voting), e.g. ``Model-3``;
* image id ``<source batch>:<row>``, e.g. ``train_data_batch_3:1207`` (row 0-based in the file).
"""

from __future__ import annotations

import numpy as np

from errorless.errors import DataError


def module_name(j: int, width: int = 2) -> str:
    """Module ``j`` (1-based) zero-padded to ``width`` digits: 3 -> ``m03``."""
    return f"m{int(j):0{width}d}"


def submodule_name(s: int) -> str:
    """Submodule ``s`` (1-based): 2 -> ``s2``."""
    return f"s{int(s)}"


def module_names(k: int) -> list[str]:
    """Module wildcard values m01..mK (zero-padded to the width of K, at least two digits)."""
    width = max(2, len(str(k)))
    return [module_name(j, width) for j in range(1, k + 1)]


def submodule_names(r: int) -> list[str]:
    return [submodule_name(s) for s in range(1, r + 1)]


def fold_names(k: int) -> list[str]:
    """Cross-fitting fold wildcard values f1..fK."""
    return [f"f{i}" for i in range(1, k + 1)]


def split_fold(name: str) -> int:
    """``f3`` -> 3."""
    if str(name)[:1] != "f" or not str(name)[1:].isdigit():
        raise DataError(f"{name!r} is not a fold name (f1, f2, ...)")
    return int(name[1:])


def shard_name(module: str, submodule: str) -> str:
    """(``m03``, ``s2``) -> ``m03_s2``."""
    return f"{module}_{submodule}"


def model_name(arch: str, replicate: int) -> str:
    return f"{arch}_m{replicate}"


def proto_name(method: str, model: str) -> str:
    return f"{method}_{model}"


def number(name: str) -> int:
    """The 1-based number of a module or submodule name: ``m03`` -> 3, ``s2`` -> 2."""
    if not is_number_name(name):
        raise DataError(f"{name!r} is not a module (m01) or submodule (s1) name")
    return int(name[1:])


def is_number_name(name: str) -> bool:
    """Whether ``name`` is a module (``m03``) or submodule (``s2``) name."""
    return str(name)[:1] in ("m", "s") and str(name)[1:].isdigit()


def split_shard(name: str) -> tuple[str, str]:
    """``m03_s2`` -> (``m03``, ``s2``)."""
    module, sep, submodule = name.partition("_")
    ok = sep and module[:1] == "m" and submodule[:1] == "s"
    if not (ok and is_number_name(module) and is_number_name(submodule)):
        raise DataError(f"{name!r} is not a shard name (<module>_<submodule>, e.g. m03_s2)")
    return module, submodule


def split_model(model: str) -> tuple[str, int | None]:
    """``h1_m1`` -> (``h1``, 1); a name without ``_m<n>`` -> (name, None)."""
    arch, _, rep = model.partition("_m")
    return arch, int(rep) if rep.isdigit() else None


def split_proto(proto: str) -> tuple[str, str]:
    """``T_h1_m1`` -> (``T``, ``h1_m1``)."""
    method, _, model = proto.partition("_")
    return method, model


METHOD_ORDER = {"S": 0, "Sp": 1, "T": 2}


def proto_key(proto: str) -> tuple:
    """Sort key of proto-models: by model (h1_m1, ...), then method S, Sp, T."""
    method, model = split_proto(proto)
    return (model, METHOD_ORDER.get(method, 9), proto)


def featured_model(p: int) -> str:
    """3 -> ``Model-3``."""
    return f"Model-{int(p)}"


def featured_number(name: str) -> int:
    """``Model-3`` -> 3."""
    prefix, _, p = str(name).partition("-")
    if prefix != "Model" or not p.isdigit():
        raise DataError(f"{name!r} is not a featured-model name (Model-<p>, e.g. Model-3)")
    return int(p)


def image_id(batch: str, row: int) -> str:
    """An image's id: ``"<source batch>:<row>"``."""
    return f"{batch}:{row}"


def image_ids(batch: np.ndarray, row: np.ndarray) -> np.ndarray:
    """:func:`image_id` of every (batch, row) pair, as one array of str."""
    return np.char.add(np.char.add(batch.astype(str), ":"), row.astype(str))


def split_image_id(image: str | None) -> tuple[str | None, int | None]:
    """(source batch, row) of an image id; (the id, None) for an id not of that form (a user's
    own ids), (None, None) for no id."""
    if image is None:
        return None, None
    batch, _, row = image.rpartition(":")
    return (batch, int(row)) if batch and row.isdigit() else (image, None)


def image_id_key(image: str) -> tuple[str, int]:
    """Sort key of image ids: by source batch, then row (not by the text: ``b:10`` after ``b:9``);
    ids not of the form ``batch:row`` by themselves."""
    batch, row = split_image_id(image)
    return (batch, row if row is not None else -1)


IDS_SEP = ";"  # between image ids in one CSV cell (Parquet files carry them as list columns)


def join_ids(ids) -> str:
    """Image ids as one CSV cell: ``"b:0;b:7"``."""
    return IDS_SEP.join(str(i) for i in ids)


def split_ids(cell) -> list[str]:
    """The image ids of one cell: a Parquet list (or array) as it is, a CSV cell split at
    ``;``; an empty or missing cell is no ids."""
    if cell is None or (isinstance(cell, float) and cell != cell):
        return []
    if isinstance(cell, str):
        return [i for i in cell.split(IDS_SEP) if i]
    return [str(i) for i in cell]
