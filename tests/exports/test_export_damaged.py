"""mlgrade export on a damaged round folder (edited by hand, or not by mlgrade): every reader of the
round's files refuses with one line and exit 2, and never hangs, crashes or writes invalid JSON;
the ledger's reasons reach candidate-view exports only through candidate_view's own scrubber."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from export_testlib import copy_round, export, mlgrade
from tests.conftest import PROJECT, TOY_HOME

def _refused(run: subprocess.CompletedProcess, *needles: str) -> None:
    assert run.returncode == 2, run.stdout + run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr, run.stderr
    assert all(needle in run.stderr for needle in needles), run.stderr
    assert run.stdout == ""


def _export(folder: Path, fmt: str, view: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`mlgrade export` with a timeout that a hang (a FIFO read) runs into."""
    return subprocess.run([sys.executable, "-m", "grader", "export", str(folder), "--format", fmt, "--view", view],
                          capture_output=True, text=True, cwd=PROJECT, timeout=timeout,
                          env=dict(os.environ, MLGRADE_HOME=str(TOY_HOME)))


def _report(folder: Path, candidate: str, view: str) -> Path:
    return folder / "candidates" / candidate / ("report.json" if view == "grader" else "candidate/report.json")


# -- report.json ----------------------------------------------------------------------------

def _deep(path: Path) -> None:
    path.write_text("[" * 200_000 + "]" * 200_000)


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _link(path: Path) -> None:
    target = path.with_name("elsewhere.json")
    path.rename(target)
    path.symlink_to(target.name)


def _nan(path: Path) -> None:
    path.write_text(path.read_text().replace('"percent": 80.0', '"percent": NaN', 1))


def _infinity(path: Path) -> None:
    path.write_text(path.read_text().replace('"points": 2.0', '"points": Infinity', 1))


@pytest.mark.parametrize("damage,problem,fmt,view", [
    (_deep, "nested deeper than", "csv", "grader"), (_deep, "nested deeper than", "gradescope", "candidate"),
    (_fifo, "not a regular file", "jsonl", "candidate"), (_fifo, "not a regular file", "junit", "grader"),
    (_link, "not a regular file", "csv", "candidate"),
    (_nan, "NaN is not JSON", "jsonl", "grader"), (_nan, "NaN is not JSON", "gradescope", "candidate"),
    (_nan, "NaN is not JSON", "csv", "grader"), (_infinity, "Infinity is not JSON", "jsonl", "candidate"),
], ids=["deep-csv", "deep-gradescope", "fifo-jsonl", "fifo-junit", "link-csv", "nan-jsonl", "nan-gradescope",
        "nan-csv", "infinity-jsonl"])
def test_a_damaged_report_is_one_line_and_exit_2(round_dir: Path, tmp_path: Path, damage, problem: str,
                                                 fmt: str, view: str) -> None:
    folder = copy_round(round_dir, tmp_path)
    path = _report(folder, "bob.no-edge", view)
    assert '"percent": 80.0' in path.read_text() and '"points": 2.0' in path.read_text()
    damage(path)
    _refused(_export(folder, fmt, view), f"candidate bob.no-edge: {view}-view report cannot be read: {problem}")
    assert not (folder / "exports").exists()


def test_the_exports_write_no_nan(tmp_path: Path) -> None:
    """Strict JSON on the way out too: were a NaN to reach a writer, nothing is written."""
    from grader.errors import InfraError
    from grader.exports.writing import dumps
    assert dumps({"percent": 80.0}) == '{"percent": 80.0}\n'
    for value in (float("nan"), float("inf")):
        with pytest.raises(InfraError, match="a value JSON cannot"):
            dumps({"percent": value})


# -- the ledger ------------------------------------------------------------------------------

def _unconstrained(db: sqlite3.Connection) -> None:
    """The submissions table without its CHECK and NOT NULL constraints, as a hand-made ledger could be."""
    db.executescript("ALTER TABLE submissions RENAME TO old; CREATE TABLE submissions AS SELECT * FROM old; "
                     "DROP TABLE old;")


@pytest.mark.parametrize("column,value,candidate,problem,fmt,view", [
    ("state", "bogus", "alice-ref", "state 'bogus' is not one of pending, running, graded", "gradescope", "candidate"),
    ("state", "bogus", "erin-badzip", "state 'bogus'", "junit", "grader"),
    ("reason", None, "erin-badzip", "reason None is not text", "csv", "grader"),
    ("reason", b"\x00bytes", "frank-infra", "reason b'\\x00bytes' is not text", "jsonl", "candidate"),
    ("percent", "abc", "erin-badzip", "percent 'abc' is not a number", "jsonl", "grader"),
    ("percent", float("inf"), "dave-crash", "percent inf is not a number", "csv", "candidate"),
    ("percent", -5.0, "frank-infra", "percent -5.0 is not a number from 0 to 100", "junit", "grader"),
    ("gradings", "x", "bob.no-edge", "gradings 'x'", "csv", "grader"),
], ids=["state-gradescope", "state-junit", "reason-null", "reason-blob", "percent-text", "percent-inf",
        "percent-negative", "gradings-text"])
def test_a_damaged_ledger_row_is_one_line_naming_the_candidate(round_dir: Path, tmp_path: Path, column: str, value,
                                                               candidate: str, problem: str, fmt: str,
                                                               view: str) -> None:
    folder = copy_round(round_dir, tmp_path)
    with sqlite3.connect(folder / "ledger.sqlite3") as db:
        _unconstrained(db)
        db.execute(f"UPDATE submissions SET {column} = ? WHERE candidate = ?", (value, candidate))
    _refused(_export(folder, fmt, view), f"the ledger row of candidate {candidate} is damaged: {problem}")
    assert not (folder / "exports").exists()


def test_a_damaged_round_table_is_refused(round_dir: Path, tmp_path: Path) -> None:
    folder = copy_round(round_dir, tmp_path)
    with sqlite3.connect(folder / "ledger.sqlite3") as db:
        db.executescript("ALTER TABLE round RENAME TO old; CREATE TABLE round AS SELECT * FROM old; DROP TABLE old;")
        db.execute("UPDATE round SET value = NULL WHERE name = 'seed'")
    _refused(mlgrade("export", folder, "--format", "csv"), "the ledger's round table is damaged: 'seed' = None")


# -- hidden names in the ledger's reasons ----------------------------------------------------

LEAKY = "the runner stopped in test_mean_ints while collecting (hidden/test_mean.py::test_mean_single)"
NAMES = ("test_mean_ints", "test_mean_single", "hidden/test_mean.py")


def _shown(folder: Path, fmt: str, view: str) -> str:
    run = export(folder, "--format", fmt, "--view", view, "--out", folder.parent / f"{fmt}-{view}" /
                 (f"x.{fmt}" if fmt in ("csv", "jsonl") else "out"))
    out = folder.parent / f"{fmt}-{view}"
    assert run.returncode == 0
    return "\n".join(p.read_text() for p in sorted(out.rglob("*")) if p.is_file())


@pytest.mark.parametrize("keep_reports", [True, False], ids=["with-reports", "all-failed"])
def test_hidden_test_names_in_a_reason_stay_out_of_candidate_exports(round_dir: Path, tmp_path: Path,
                                                                     keep_reports: bool) -> None:
    """A reason quoting hidden tests' names and node ids (an infrastructure error may quote anything)
    is withheld from every candidate-view export, as candidate_view withholds them: found from the
    round's grader-view reports, and from the hidden test files where no candidate was graded."""
    folder = copy_round(round_dir, tmp_path)
    with sqlite3.connect(folder / "ledger.sqlite3") as db:
        if not keep_reports:  # a round whose every candidate failed: no report names a hidden test
            db.execute("DELETE FROM submissions WHERE candidate NOT IN ('erin-badzip', 'frank-infra')")
        for candidate in ("dave-crash", "erin-badzip", "frank-infra"):
            db.execute("UPDATE submissions SET reason = ? WHERE candidate = ?", (LEAKY, candidate))
    for fmt, view in (("csv", "candidate"), ("jsonl", "candidate"), ("gradescope", "candidate")):
        text = _shown(folder, fmt, view)
        assert all(name not in text for name in NAMES), (fmt, [n for n in NAMES if n in text])
        assert "withheld" in text
    grader = _shown(folder, "csv", "grader")  # the grader view keeps the reason as recorded
    assert grader.count("test_mean_single") == (3 if keep_reports else 2)


def test_a_reason_without_hidden_names_is_shown_to_the_candidate(round_dir: Path, tmp_path: Path) -> None:
    folder = copy_round(round_dir, tmp_path)
    reason = "the sandbox image was rebuilt during the grading (mean module unchanged)"
    with sqlite3.connect(folder / "ledger.sqlite3") as db:
        db.execute("UPDATE submissions SET reason = ? WHERE candidate = 'frank-infra'", (reason,))
    rows = [json.loads(line) for line in _shown(folder, "jsonl", "candidate").splitlines()]
    assert {row["candidate"]: row["reason"] for row in rows}["frank-infra"] == reason
