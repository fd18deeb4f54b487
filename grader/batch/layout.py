"""The round folder that `mlgrade batch EXERCISE SOURCE --out DIR` fills, and reading it back.

    DIR/ledger.sqlite3                         the ledger (LEDGER_SCHEMA): one row per candidate, one per attempt
    DIR/candidates/<candidate>/report.json     grader view (report.md beside it; report.html when written)
    DIR/candidates/<candidate>/candidate/      the candidate view: report.json, report.md, report.html
    DIR/summary.html                           the round summary page (grader view)
    DIR/exports/                               what `mlgrade export DIR --format ...` writes by default

Exports, HTML pages and the similarity table read a round only through `read_round`.
"""
from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import BadInput

LEDGER = "ledger.sqlite3"
CANDIDATES = "candidates"
CANDIDATE_VIEW = "candidate"  # sub-folder of a candidate's folder holding the candidate view
SUMMARY = "summary.html"
EXPORTS = "exports"
CANDIDATE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a candidate id is also a folder name

State = Literal["pending", "running", "graded", "candidate_failure", "infra_failure"]
FINAL_STATES = ("graded", "candidate_failure", "infra_failure")

# `key` = sha256 over the submission's content hash, the exercise's version hash and the sandbox
# image id (or the backend's equivalent): a candidate whose key changed is graded again.
LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS round (
    name TEXT PRIMARY KEY,            -- exercise, exercise_version, backend, device, seed, created_at
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS submissions (
    candidate TEXT PRIMARY KEY,
    source TEXT NOT NULL,             -- the path as given (folder or archive)
    content_hash TEXT NOT NULL,
    exercise_version TEXT NOT NULL,
    image_id TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'graded', 'candidate_failure', 'infra_failure')),
    attempts INTEGER NOT NULL DEFAULT 0,  -- attempts for the current key (infrastructure retries included)
    gradings INTEGER NOT NULL DEFAULT 0,  -- completed gradings recorded for the current key: 1 when final
    reason TEXT NOT NULL DEFAULT '',      -- one line: why it failed ('' when graded)
    percent REAL,                         -- the score when graded or a candidate failure with a report
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    candidate TEXT NOT NULL,
    key TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    result TEXT CHECK (result IS NULL OR result IN ('graded', 'candidate_failure', 'infra_failure', 'interrupted')),
    reason TEXT NOT NULL DEFAULT '',
    batch_pid INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class RoundEntry:
    """One candidate of a round, as the ledger records it."""
    candidate: str
    source: str
    state: State
    reason: str
    percent: float | None
    gradings: int
    attempts: int
    folder: Path  # DIR/candidates/<candidate>

    def report(self, view: Literal["grader", "candidate"] = "grader") -> dict[str, Any] | None:
        """The report.json of that view, or None when this candidate has none."""
        path = self.folder / ("report.json" if view == "grader" else f"{CANDIDATE_VIEW}/report.json")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None


@dataclass(frozen=True)
class Round:
    folder: Path
    info: dict[str, str]  # the round table: exercise, exercise_version, backend, device, seed, created_at
    entries: list[RoundEntry]  # sorted by candidate id

    @property
    def exercise(self) -> str:
        return self.info.get("exercise", "")

    def submission_path(self, entry: RoundEntry) -> Path:
        """Where entry's submission is: the ledger keeps the path as SOURCE gave it, relative to the
        SOURCE folder or to the roster's folder (info["source"], absolute)."""
        given = Path(entry.source)
        if given.is_absolute() or "source" not in self.info:
            return given
        source = Path(self.info["source"])
        return (source if source.is_dir() else source.parent) / given


def read_round(folder: Path) -> Round:
    """The round in folder; BadInput with one line when it is not a round folder."""
    ledger = folder / LEDGER
    if not ledger.is_file():
        raise BadInput(f"{folder}: not a round folder (no {LEDGER}; mlgrade batch writes one)")
    try:
        with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
            info = dict(db.execute("SELECT name, value FROM round"))
            rows = db.execute("SELECT candidate, source, state, reason, percent, gradings, attempts "
                              "FROM submissions ORDER BY candidate").fetchall()
    except sqlite3.Error as exc:
        raise BadInput(f"{ledger}: cannot read the ledger ({exc})") from None
    entries = [RoundEntry(candidate=c, source=s, state=st, reason=r, percent=p, gradings=g, attempts=a,
                          folder=folder / CANDIDATES / c) for c, s, st, r, p, g, a in rows]
    return Round(folder=folder, info=info, entries=entries)
