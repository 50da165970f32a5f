"""Generated pages stay current: docs/configuration.md (from the schema) and
docs/performance.md (from docs/benchmarks/, written by the benches)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from errorless.config import load_schema
from errorless.configdocs import COMMAND, render

ROOT = Path(__file__).resolve().parents[1]


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _keys(node: dict, prefix: str = "") -> list[str]:
    out = []
    for name, child in node.get("properties", {}).items():
        key = f"{prefix}.{name}" if prefix else name
        out.append(key)
        out += _keys(child, key)
    return out


def test_configuration_md_is_generated_from_the_schema() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page == render(), f"docs/configuration.md is stale: run {COMMAND}"


def test_configuration_md_names_every_key_with_its_default() -> None:
    schema = load_schema()
    page = render(schema)
    for key in _keys(schema):
        section = "." not in key and "properties" in schema["properties"][key]
        assert (f"## {key}\n" if section else f"| `{key}` |") in page, key
    assert "| `sgd.threshold` | number | `0.98` | > 0; ≤ 1 |" in page
    assert '`"cross_entropy"`, `"mse_softmax"`' in page


def test_performance_md_is_the_assembly_of_docs_benchmarks() -> None:
    assemble = _bench_module("assemble")
    page = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    assert page == assemble.assemble(), f"docs/performance.md is stale: run {assemble.COMMAND}"


def test_a_recorded_page_names_date_commit_machine_data_and_command(tmp_path: Path) -> None:
    record = _bench_module("record")
    path = record.record(
        "demo",
        "A demo bench",
        "12 images of nothing",
        {"seconds": 1.23456, "images": 1280000},
        argv=[str(ROOT / "bench" / "demo.py"), "--n", "12"],
        pages=tmp_path,
    )
    text = path.read_text(encoding="utf-8")
    for field in ("- date: ", "- commit: ", "- machine: ", "- data set: 12 images of nothing"):
        assert field in text
    assert "- command: `python bench/demo.py --n 12`" in text
    assert "| seconds | 1.235 |" in text and "| images | 1,280,000 |" in text
    assemble = _bench_module("assemble")
    (tmp_path / "earlier-measurements.md").write_text("## Earlier\n")
    joined = assemble.assemble(tmp_path)
    assert joined.index("## A demo bench") < joined.index("## Earlier")
