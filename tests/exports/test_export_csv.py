"""mlgrade export --format csv, read back with the csv module and compared with report.json."""
from __future__ import annotations

import csv
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from export_testlib import BAD_ARCHIVE_REASON, INFRA_REASON, copy_round, export, reports
from grader.exports.csv_table import COLUMNS, FORMULA_START, safe_cell

CHECKS = ["add-public", "add-edge", "mean"]  # the toy manifest's order
CANDIDATES = ["alice-ref", "bob.no-edge", "carol_hostile", "dave-crash", "erin-badzip", "frank-infra", "gina-waiting"]


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == COLUMNS + CHECKS
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


@pytest.mark.parametrize("view", ["grader", "candidate"])
def test_one_row_per_candidate_with_the_reports_numbers(round_dir: Path, tmp_path: Path, view: str) -> None:
    out = tmp_path / "scores.csv"
    run = export(round_dir, "--format", "csv", "--view", view, "--out", out)
    assert f"7 of 7 candidates written to {out}" in run.stdout
    rows = {row["candidate"]: row for row in _read(out)}
    assert list(rows) == CANDIDATES
    graded = reports(round_dir, view)
    assert sorted(graded) == ["alice-ref", "bob.no-edge", "carol_hostile", "dave-crash"]
    for name, report in graded.items():
        row = rows[name]
        assert float(row["percent"]) == report["score"]["percent"]
        assert float(row["points"]) == report["score"]["points"]
        assert float(row["max_points"]) == report["score"]["max_points"]
        assert {c: float(row[c]) for c in CHECKS} == {c["id"]: c["points"] for c in report["checks"]}
    assert [rows[n]["percent"] for n in ("alice-ref", "bob.no-edge", "carol_hostile", "dave-crash")] == \
        ["100.0", "80.0", "20.0", "0.0"]
    for name in ("erin-badzip", "frank-infra", "gina-waiting"):  # no report: no numbers
        assert [rows[name][c] for c in ["percent", "points", "max_points", *CHECKS]] == [""] * 6
    assert [rows[n]["state"] for n in CANDIDATES] == ["graded"] * 3 + ["candidate_failure"] * 2 + \
        ["infra_failure", "pending"]


def test_text_cells_cannot_start_a_formula_and_hold_no_control_characters(round_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    export(round_dir, "--format", "csv", "--out", out)
    rows = {row["candidate"]: row for row in _read(out)}
    assert rows["erin-badzip"]["reason"] == "'" + BAD_ARCHIVE_REASON.replace("\x1b", "\\x1b").replace("\x00", "\\x00")
    assert rows["frank-infra"]["reason"] == "'" + INFRA_REASON.replace("\x07", "\\x07")
    assert rows["dave-crash"]["reason"].startswith("'-the submission exits at import")
    for row in rows.values():
        for column in ("candidate", "state", "reason"):
            assert not row[column].startswith(FORMULA_START), row[column]
            assert row[column].isprintable(), row[column]


def test_the_candidate_view_scrubs_the_ledgers_reasons(round_dir: Path, tmp_path: Path) -> None:
    """An infrastructure reason may quote anything, a hidden test's source too: the candidate view's
    reason is scrubbed against the exercise's hidden material, the grader view's kept as recorded."""
    folder = copy_round(round_dir, tmp_path)
    hidden = "unexpected error: def test_add_edge(a, b, expected): assert add(a, b) == expected"
    with closing(sqlite3.connect(folder / "ledger.sqlite3")) as db, db:
        db.execute("UPDATE submissions SET reason = ? WHERE candidate = 'frank-infra'", (hidden,))
    for view in ("grader", "candidate"):
        out = tmp_path / f"{view}.csv"
        export(folder, "--format", "csv", "--view", view, "--out", out)
        reason = {row["candidate"]: row for row in _read(out)}["frank-infra"]["reason"]
        assert ("test_add_edge" in reason) == (view == "grader"), reason


def test_default_path_is_under_the_round_folder(round_dir: Path, tmp_path: Path) -> None:
    folder = copy_round(round_dir, tmp_path)
    export(folder, "--format", "csv")
    export(folder, "--format", "csv", "--view", "candidate")
    assert sorted(p.name for p in (folder / "exports").iterdir()) == ["scores.candidate.csv", "scores.csv"]
    assert len(_read(folder / "exports" / "scores.csv")) == 7


@pytest.mark.parametrize("text,cell", [("=1+1", "'=1+1"), ("+1", "'+1"), ("-2.50 pts", "'-2.50 pts"),
                                       ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "\\t=1"), ("a=1", "a=1"), ("", ""),
                                       ("bad\narchive", "bad\\narchive")])
def test_safe_cell(text: str, cell: str) -> None:
    assert safe_cell(text) == cell


def test_check_columns_follow_manifest_order_across_reports() -> None:
    from grader.exports.rows import check_order

    def report(*ids: str) -> dict:
        return {"checks": [{"id": i} for i in ids]}
    assert check_order([report("a", "c"), None, report("a", "b", "c")]) == ["a", "b", "c"]
    assert check_order([report("b"), report("a", "b"), report("b", "d")]) == ["a", "b", "d"]
