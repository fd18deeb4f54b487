"""JSON Lines: one object per candidate with its report of the chosen view."""
from __future__ import annotations

from .rows import Row, View
from .writing import dumps


def render(rows: list[Row], view: View) -> bytes:
    """One line per candidate: candidate, state, reason, percent, view, report (null where none).
    ASCII only (ensure_ascii), so no character in a report can split a line for any reader."""
    lines = [dumps({"candidate": row.candidate, "state": row.entry.state, "reason": row.reason,
                    "percent": row.percent, "view": view, "report": row.report}, separators=(",", ":"))
             for row in rows]
    return "".join(lines).encode("ascii")
