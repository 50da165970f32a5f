"""The report's tables as small self-contained HTML pages (the report shows HTML inline and
offers CSV files only as downloads)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:12px;color:#222}
h2{font-size:16px;margin:4px 0 8px} h3{font-size:14px;margin:14px 0 6px}
p.note{font-size:12px;color:#555;max-width:70em}
table{border-collapse:collapse;font-size:13px;margin-bottom:10px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right;vertical-align:top;white-space:nowrap}
th{background:#eef2f7;white-space:normal} td.l,th.l{text-align:left}
td.w{white-space:normal;min-width:14em;max-width:40em}
tr:nth-child(even) td{background:#fafafa}
"""


def html_table(
    df: pd.DataFrame, left: Sequence[str] = (), index: bool = False, wrap: Sequence[str] = ()
) -> str:
    """A plain HTML table; columns in ``left`` (and the index) are left-aligned, cells of
    ``wrap`` columns may wrap (long lists), the others stay on one line."""
    cols = list(df.columns)
    cls = {
        c: " ".join(k for k, on in (("l", c in left or c in wrap), ("w", c in wrap)) if on)
        for c in cols
    }
    head = (
        f'<th class="l">{html.escape(str(df.index.name or ""))}</th>' if index else ""
    ) + "".join(f'<th class="{cls[c]}">{html.escape(str(c))}</th>' for c in cols)
    rows = []
    for idx, r in zip(df.index, df.itertuples(index=False), strict=True):
        cells = (f'<td class="l"><b>{html.escape(str(idx))}</b></td>' if index else "") + "".join(
            f'<td class="{cls[c]}">{html.escape(_fmt(v))}</td>'
            for c, v in zip(cols, r, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if isinstance(v, (float, np.floating)):
        return f"{v:.2f}"
    return str(v)


def html_page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h2>{html.escape(title)}</h2>{body}</body></html>\n"
    )


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'
