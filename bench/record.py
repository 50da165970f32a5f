"""Write one bench's figures to ``docs/benchmarks/<name>.md``, with their provenance.

A bench run with ``--record`` calls :func:`record`: the page names the date, the commit
(``git rev-parse``; "+ local changes" when the work tree differs from it), the machine (cores,
CPU model, memory, load average), the data set and the exact command, then the figures.
``python bench/assemble.py`` joins the pages into ``docs/performance.md``; nobody types figures
into that page.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "docs" / "benchmarks"


def record_argument(parser) -> None:
    """The ``--record`` flag every recording bench takes."""
    parser.add_argument(
        "--record",
        action="store_true",
        help="write the figures to docs/benchmarks/ (then run python bench/assemble.py)",
    )


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


CODE = ("src", "bench", "workflow", "config", "Snakefile", "pyproject.toml")


def commit() -> str:
    """The commit, and whether the code that makes figures differs from it (docs do not)."""
    sha = _git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", *CODE)
    return sha + (" + local changes to the code" if dirty else "")


def machine() -> str:
    """Cores, CPU model, memory and load average of this machine, in one line."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cores} cores ({model}){mem}; load average at the end {load}"


def command(argv: list[str] | None = None) -> str:
    """The command as it was typed, relative to the repository root."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve()
    try:
        argv[0] = str(script.relative_to(ROOT))
    except ValueError:
        pass
    return "python " + shlex.join(argv)


def _cell(value: object) -> str:
    if isinstance(value, float):
        value = f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    elif isinstance(value, int) and not isinstance(value, bool):
        value = f"{value:,}"
    return " ".join(str(value).split()).replace("|", "\\|")


def record(
    name: str,
    title: str,
    data: str,
    figures: Mapping[str, object] | Iterable[tuple[str, object]],
    notes: str = "",
    argv: list[str] | None = None,
    pages: Path = PAGES,
) -> Path:
    """Write ``pages/<name>.md``: a section with the provenance and one row per figure."""
    rows = figures.items() if isinstance(figures, Mapping) else figures
    lines = [
        f"## {title}",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- commit: {commit()}",
        f"- machine: {machine()}",
        f"- data set: {data}",
        f"- command: `{command(argv)}`",
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {_cell(k)} | {_cell(v)} |" for k, v in rows),
    ]
    if notes:
        lines += ["", " ".join(notes.split())]
    pages.mkdir(parents=True, exist_ok=True)
    path = pages / f"{name}.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"recorded {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path
