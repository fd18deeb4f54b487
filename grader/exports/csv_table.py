"""CSV: one row per candidate, a column per check (points earned), safe to open in a spreadsheet."""
from __future__ import annotations

import csv
import io
from typing import Any

from ..outdir import one_line
from .rows import Row, check_order

COLUMNS = ["candidate", "state", "percent", "points", "max_points", "reason"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would read the cell as a formula


def safe_cell(text: str) -> str:
    """One line (control characters and undecodable bytes escaped), with a leading ' where a
    spreadsheet would otherwise take it for a formula (OWASP's CSV injection advice)."""
    text = one_line(text)
    return "'" + text if text.startswith(FORMULA_START) else text


def _row(row: Row, checks: list[str]) -> list[Any]:
    report = row.report
    score = report["score"] if report is not None else {}
    points = {c["id"]: c["points"] for c in report["checks"]} if report is not None else {}
    cells: list[Any] = [safe_cell(row.candidate), safe_cell(row.entry.state), row.percent, score.get("points"),
                        score.get("max_points"), safe_cell(row.reason)]
    return cells + [points.get(check) for check in checks]


def render(rows: list[Row]) -> bytes:
    """The CSV text, UTF-8, CRLF line ends (RFC 4180); an empty cell where there is no value."""
    checks = check_order(row.report for row in rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # quotes cells holding the delimiter, quotes or line breaks
    writer.writerow([safe_cell(name) for name in COLUMNS + checks])
    for row in rows:
        writer.writerow(["" if cell is None else cell for cell in _row(row, checks)])
    return buffer.getvalue().encode("utf-8")
