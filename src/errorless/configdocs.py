"""``errorless config-docs``: docs/configuration.md, generated from the one schema.

Every key of ``schema/config.schema.yaml`` with its type, default, allowed values and
description, one table per top-level section. The page is never edited by hand:
``python -m errorless config-docs --write docs/configuration.md`` rewrites it, and a test fails
when it is stale.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from errorless.config import load_schema

COMMAND = "python -m errorless config-docs --write docs/configuration.md"


def _type(node: dict[str, Any]) -> str:
    t = node.get("type", "")
    text = " or ".join(t) if isinstance(t, list) else str(t)
    if t == "array" and "items" in node:
        text = f"array of {_type(node['items']) or 'any'}"
    return text


def _value(v: Any) -> str:
    return "`" + json.dumps(v, ensure_ascii=False) + "`"


def _allowed(node: dict[str, Any]) -> str:
    """Enum values and bounds of a key (of its items for an array)."""
    parts: list[str] = []
    items = node.get("items") if node.get("type") == "array" else None
    for src, prefix in ((node, ""), (items or {}, "each ")):
        if "enum" in src:
            parts.append(prefix + "one of " + ", ".join(_value(e) for e in src["enum"]))
        for key, sign in (
            ("minimum", "≥"),
            ("exclusiveMinimum", ">"),
            ("maximum", "≤"),
            ("exclusiveMaximum", "<"),
        ):
            if key in src:
                parts.append(f"{prefix}{sign} {src[key]}")
        if "pattern" in src and src is items:
            parts.append(f"each matches `{src['pattern']}`")
    if "minItems" in node:
        parts.append(f"at least {node['minItems']} item(s)")
    if node.get("uniqueItems"):
        parts.append("no repeats")
    if node.get("pattern") and "(?!" in node["pattern"]:
        parts.append("not empty, not the filesystem root")
    return "; ".join(parts)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _rows(node: dict[str, Any], prefix: str) -> list[str]:
    """Table rows of a section's keys, nested objects flattened to dotted names."""
    rows: list[str] = []
    for name, child in node.get("properties", {}).items():
        key = f"{prefix}.{name}" if prefix else name
        if child.get("type") == "object" and "properties" in child:
            rows.append(f"| `{key}` | object | | | {_cell(child.get('description', ''))} |")
            rows.extend(_rows(child, key))
            continue
        default = _value(child["default"]) if "default" in child else ""
        rows.append(
            f"| `{key}` | {_type(child)} | {default} | {_cell(_allowed(child))} "
            f"| {_cell(child.get('description', ''))} |"
        )
    return rows


def render(schema: dict[str, Any] | None = None) -> str:
    """The Markdown page of the schema."""
    schema = schema or load_schema()
    out = [
        "# Configuration",
        "",
        "<!-- generated from src/errorless/schema/config.schema.yaml; do not edit: run",
        f"     {COMMAND} -->",
        "",
        _cell(schema.get("description", "")),
        "",
        "The workflow validates the configuration against this schema when it starts and names a",
        "wrong key in one line; `errorless info --config FILE` shows a file's settings with every",
        "default filled in. Nested values on the command line are typed as in the file:",
        "`snakemake --config sgd='{threshold: 0.9}' gdt='{enabled: false}'`.",
        "The method behind the settings: [method.md](method.md).",
        "",
        "Sections: " + ", ".join(f"[`{k}`](#{k})" for k in schema["properties"]) + ".",
    ]
    header = ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
    for name, node in schema["properties"].items():
        out += ["", f"## {name}", ""]
        if node.get("type") == "object" and "properties" in node:
            if node.get("description"):
                out += [_cell(node["description"]), ""]
            out += header + _rows(node, name)
        else:
            out += header + _rows({"properties": {name: node}}, "")
    return "\n".join(out) + "\n"


def config_docs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--write", metavar="FILE", help="write the page here (default: print it)")


def config_docs_main(args: argparse.Namespace) -> int:
    text = render()
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0
