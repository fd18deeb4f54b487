"""Helpers of the export tests: the round's candidates, the ledger writer, running `mlgrade export`."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


from grader.batch import layout
from tests.conftest import PROJECT, TOY_HOME, TOY_SUBMISSIONS

# Hostile strings a candidate controls: a formula, control characters XML cannot hold, a lone surrogate,
# markup and a CDATA end.
EVIL = "=HYPERLINK(\"http://evil.example\") <script>alert(1)</script> ]]> & \"q\" \x00\x01\x08\x0b\x0c\x1b[31m\ud800 \uffff end"
HOSTILE_CALC = f'''"""Fails with hostile messages."""
EVIL = {EVIL!r}


def add(a, b):
    if isinstance(a, float) or a == 0:  # one public test, two hidden ones
        raise AssertionError(EVIL)
    return a + b


def mean(xs):
    raise ValueError("@SUM(1+1) " + EVIL)
'''
BAD_ARCHIVE_REASON = "=cmd|' /C calc'!A0 bad archive: member ../x escapes the submission \x1b[2J\x00 <script>x</script>"
INFRA_REASON = "+sandbox image mlgrade-sandbox:cpu is missing\x07 (3 attempts)"


@dataclass(frozen=True)
class Candidate:
    name: str
    state: str
    submission: Path | None  # graded when given
    reason: str = ""


def candidates(hostile: Path) -> list[Candidate]:
    return [Candidate("alice-ref", "graded", TOY_HOME / "reference" / "toy"),
            Candidate("bob.no-edge", "graded", TOY_HOME / "exercises" / "toy" / "calibration" / "no-edge"),
            Candidate("carol_hostile", "graded", hostile),
            Candidate("dave-crash", "candidate_failure", TOY_SUBMISSIONS / "import-exit",
                      "-the submission exits at import (exit code 3)"),
            Candidate("erin-badzip", "candidate_failure", None, BAD_ARCHIVE_REASON),
            Candidate("frank-infra", "infra_failure", None, INFRA_REASON),
            Candidate("gina-waiting", "pending", None)]


def write_ledger(folder: Path, rows: list[tuple[str, str, str, float | None]], exercise: str = "toy") -> None:
    """DIR/ledger.sqlite3 with one submissions row per (candidate, state, reason, percent)."""
    with sqlite3.connect(folder / layout.LEDGER) as db:
        db.executescript(layout.LEDGER_SCHEMA)
        db.executemany("INSERT OR REPLACE INTO round VALUES (?, ?)",
                       [("exercise", exercise), ("backend", "bwrap"), ("device", "cpu"), ("seed", "0"),
                        ("created_at", "2026-01-01T00:00:00+00:00")])
        final = set(layout.FINAL_STATES)
        db.executemany(
            "INSERT OR REPLACE INTO submissions (candidate, source, content_hash, exercise_version, image_id, key, "
            "state, attempts, gradings, reason, percent, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(name, f"/submissions/{name}", "0" * 64, "1" * 64, "bwrap", "2" * 64, state, int(state in final),
              int(state in final), reason, percent, "2026-01-01T00:00:00+00:00")
             for name, state, reason, percent in rows])


def copy_round(round_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of the round (the session's round stays as graded)."""
    return Path(shutil.copytree(round_dir, tmp_path / "round", symlinks=True))


def mlgrade(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess:
    """`python -m grader ...` from the project root, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "grader", *map(str, args)], capture_output=True, text=True,
                          cwd=PROJECT, env=dict(os.environ, MLGRADE_HOME=str(TOY_HOME)), timeout=120)


def export(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess:
    """`mlgrade export ...` that must succeed."""
    run = mlgrade("export", *args)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    return run


def reports(round_dir: Path, view: str = "grader") -> dict[str, dict]:
    """candidate -> report.json of that view, for every candidate that has one."""
    found = {}
    for folder in sorted((round_dir / layout.CANDIDATES).iterdir()):
        path = folder / ("report.json" if view == "grader" else f"{layout.CANDIDATE_VIEW}/report.json")
        if path.is_file():
            found[folder.name] = json.loads(path.read_text())
    return found
