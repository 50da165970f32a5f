"""The planted truth of a generated data set (``planted.csv``: kind, id_a, id_b) and the rates
both planted checks (double labels, label issues) report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from errorless.errors import DataError


def read_planted(path: Path) -> pd.DataFrame:
    try:
        p = pd.read_csv(path, dtype={"id_a": str, "id_b": str})
    except Exception as e:
        raise DataError(f"{path}: unreadable planted truth: {e}") from None
    lack = [c for c in ("kind", "id_a", "id_b") if c not in p.columns]
    if lack:
        raise DataError(f"{path}: planted truth lacks column(s) {lack}")
    return p


def rate(hits: int, out_of: int) -> float:
    """``hits / out_of``, NaN when nothing is counted: precision (correct / reported) and recall
    (found / planted) in both planted checks."""
    return hits / out_of if out_of else np.nan


def flip_ids(planted: pd.DataFrame) -> set[str]:
    """Images given another label of their module (planted ``label_flip``)."""
    return {str(i) for i in planted.loc[planted["kind"] == "label_flip", "id_a"]}


def copy_ids(planted: pd.DataFrame) -> set[str]:
    """Images that carry a planted copy (id_b of a copy plant): mislabelled by construction."""
    return {str(i) for i in planted.loc[planted["kind"] != "label_flip", "id_b"].dropna()}
