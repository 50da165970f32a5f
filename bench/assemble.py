"""Join ``docs/benchmarks/*.md`` into ``docs/performance.md``.

    python bench/assemble.py           # rewrite docs/performance.md
    python bench/assemble.py --check   # exit 1 when it differs from the assembly

The pages are written by the benches (``--record``, bench/record.py), each with its date,
commit, machine, data set and command; ``earlier-*.md`` pages (figures measured before the
benches recorded themselves) come last.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "docs" / "benchmarks"
TARGET = ROOT / "docs" / "performance.md"
COMMAND = "python bench/assemble.py"

HEADER = f"""# Performance (measured)

<!-- assembled from docs/benchmarks/*.md by `{COMMAND}`; do not edit this page: rerun a
     bench with --record, then the command -->

Every section below was written by a bench (`bench/*.py --record`) or, for the last ones,
moved from earlier records. Each names the date, the commit, the machine, the data set and
the command that produced its figures; rerun that command to check a figure on your machine.
Times on a shared machine are pessimistic (the load average is given).
"""


def pages(folder: Path = PAGES) -> list[Path]:
    files = sorted(folder.glob("*.md"))
    return [p for p in files if not p.name.startswith("earlier")] + [
        p for p in files if p.name.startswith("earlier")
    ]


def assemble(folder: Path = PAGES) -> str:
    parts = [HEADER]
    for p in pages(folder):
        parts.append(p.read_text(encoding="utf-8").strip() + "\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare, write nothing")
    a = ap.parse_args(argv)
    text = assemble()
    if a.check:
        if not TARGET.exists() or TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)} from {len(pages())} pages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
