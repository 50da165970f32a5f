"""The planted truth of a generated data set (``planted.csv``: kind, id_a, id_b) and the rates
both planted checks (double labels, label issues) report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from errorless.errors import DataError

# ---------------------------------------------------------------- planted truth


def read_planted(path: Path) -> pd.DataFrame:
    try:
        p = pd.read_csv(path, dtype={"id_a": str, "id_b": str})
    except Exception as e:
        raise DataError(f"{path}: unreadable planted truth: {e}") from None
    lack = [c for c in ("kind", "id_a", "id_b") if c not in p.columns]
    if lack:
        raise DataError(f"{path}: planted truth lacks column(s) {lack}")
    return p
