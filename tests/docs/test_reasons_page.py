"""``docs/reasons.md`` lists every refusal reason (``ajwt_core.errors.Reason``), once,
and no reason that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

from ajwt_core.errors import Reason

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reasons.md"
# The first cell of a table row: `value`, alone in its cell.
FIRST_CELL = re.compile(r"^\|\s*`([^`|]+)`\s*\|")


def listed_reasons(text: str) -> list[str]:
    """The backticked first cells of the rows of every table whose first column is
    ``reason`` (the page's other tables, if any, are not lists of reasons)."""
    found: list[str] = []
    in_reason_table = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("|"):
            in_reason_table = False
            continue
        cells = [cell.strip() for cell in stripped.strip("|").split("|")]
        if cells and cells[0] == "reason":
            in_reason_table = True
            continue
        if in_reason_table and (match := FIRST_CELL.match(stripped)):
            found.append(match.group(1))
    return found


def test_the_parser_reads_first_cells_of_reason_tables_only() -> None:
    text = (
        "| reason | error |\n|---|---|\n| `replayed` | x |\n| `bh_missing` | y |\n\n"
        "| code | meaning |\n|---|---|\n| `io_error` | not a reason |\n"
    )
    assert listed_reasons(text) == ["replayed", "bh_missing"]


def test_every_reason_is_on_the_page() -> None:
    listed = set(listed_reasons(PAGE.read_text(encoding="utf-8")))
    missing = sorted(r.value for r in Reason if r.value not in listed)
    assert not missing, f"docs/reasons.md does not list: {', '.join(missing)}"


def test_the_page_names_only_reasons_that_exist() -> None:
    values = {r.value for r in Reason}
    unknown = sorted(set(listed_reasons(PAGE.read_text(encoding="utf-8"))) - values)
    assert not unknown, f"docs/reasons.md lists reasons Reason does not have: {unknown}"


def test_each_reason_has_one_row() -> None:
    listed = listed_reasons(PAGE.read_text(encoding="utf-8"))
    repeated = sorted({value for value in listed if listed.count(value) > 1})
    assert not repeated, f"docs/reasons.md lists these more than once: {repeated}"
