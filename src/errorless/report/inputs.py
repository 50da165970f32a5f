"""What every report section reads: the stage tables (one clear line when one is missing) and the
report's settings."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from errorless.errors import DataError

# ---------------------------------------------------------------- small helpers


def read_table(path: str | Path, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: {what} missing (run the step that writes it first)")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except Exception as e:  # pragma: no cover - corrupt input
        raise DataError(f"{path}: unreadable {what}: {e}") from None


# ---------------------------------------------------------------- CLI


def _config(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "settings", None):
        from errorless.config import parse_settings

        return parse_settings(args.settings)
    if not getattr(args, "config", None):
        return {}
    import yaml

    path = Path(args.config)
    if not path.exists():
        raise DataError(f"{path}: config missing (rule write_config writes it)")
    return yaml.safe_load(path.read_text()) or {}
