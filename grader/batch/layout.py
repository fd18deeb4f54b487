"""The round folder that `mlgrade batch EXERCISE SOURCE --out DIR` fills, and reading it back.

    DIR/ledger.sqlite3                         the ledger (LEDGER_SCHEMA): one row per candidate, one per attempt
    DIR/candidates/<candidate>/report.json     grader view (report.md beside it; report.html when written)
    DIR/candidates/<candidate>/candidate/      the candidate view: report.json, report.md, report.html
    DIR/summary.html                           the round summary page (grader view)
    DIR/exports/                               what `mlgrade export DIR --format ...` writes by default

Exports, HTML pages and the similarity table read a round only through `read_round`, which checks
every ledger row, and `RoundEntry.report`, which reads report.json with `read_json` (a plain file
within MAX_JSON_BYTES, strict JSON: no NaN or Infinity, nesting within MAX_JSON_DEPTH). Everything in
DIR is written by mlgrade only, so anything else is damage: refused with one line, never a hang or a
traceback.
"""
from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import stat
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import quote

from ..errors import BadInput
from ..harness.wire import too_deep
from ..outdir import shown

LEDGER = "ledger.sqlite3"
CANDIDATES = "candidates"
CANDIDATE_VIEW = "candidate"  # sub-folder of a candidate's folder holding the candidate view
SUMMARY = "summary.html"
EXPORTS = "exports"
CANDIDATE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a candidate id is also a folder name

State = Literal["pending", "running", "graded", "candidate_failure", "infra_failure"]
STATES: tuple[str, ...] = get_args(State)
FINAL_STATES = ("graded", "candidate_failure", "infra_failure")
MAX_JSON_BYTES = 64 << 20  # a report.json; as much as a Ray node may send back for a whole grading
MAX_JSON_DEPTH = 64  # nesting of arrays/objects in a round's JSON file; a report needs under 10

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
        return read_json(path)


class RoundFileError(ValueError):
    """A file of the round folder that cannot be what mlgrade wrote there; str() is one line."""


def _no_constant(name: str) -> Any:
    raise RoundFileError(f"{name} is not JSON")


def read_json(path: Path) -> Any:
    """The JSON value in path, or None when there is no such file. RoundFileError (a ValueError, one
    line) when path is not a regular file (a link, a FIFO, a device: opened without following or
    blocking on it), is over MAX_JSON_BYTES, is not UTF-8 JSON, holds NaN or Infinity (Python's
    extension, which no other JSON reader takes), or nests deeper than MAX_JSON_DEPTH."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: a link
        raise RoundFileError("not a regular file" if os.path.islink(path) else exc.strerror or str(exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RoundFileError("not a regular file")
        if info.st_size > MAX_JSON_BYTES:
            raise RoundFileError(f"over {MAX_JSON_BYTES >> 20} MiB")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise RoundFileError(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    if len(data) > MAX_JSON_BYTES:  # it grew while read
        raise RoundFileError(f"over {MAX_JSON_BYTES >> 20} MiB")
    try:
        text = data.decode("utf-8")
        if too_deep(text, MAX_JSON_DEPTH):  # before parsing: json.loads would meet RecursionError
            raise RoundFileError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        return json.loads(text, parse_constant=_no_constant)
    except RoundFileError:
        raise
    except ValueError as exc:  # not UTF-8, not JSON
        raise RoundFileError(f"not JSON: {' '.join(str(exc).split())[:200]}") from None


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


def sqlite_uri(path: Path, **query: str) -> str:
    """A SQLite URI for path: percent-quoted, since '#', '?' and '%' in a folder name would otherwise
    end the path early or be decoded (and the file named by what is left opened read-write)."""
    uri = "file:" + quote(os.path.abspath(path))
    return uri + ("?" + "&".join(f"{k}={quote(v)}" for k, v in query.items()) if query else "")


def _entry(folder: Path, row: tuple) -> RoundEntry:
    """The ledger row as a RoundEntry; BadInput naming the candidate when a value cannot be one that
    mlgrade wrote (a hand-edited or damaged ledger)."""
    candidate, source, state, reason, percent, gradings, attempts = row
    if not isinstance(candidate, str):
        raise BadInput(f"{shown(folder)}: the ledger has a candidate id that is not text ({shown(repr(candidate), 40)})")
    problem = None
    if state not in STATES:
        problem = f"state {shown(repr(state), 40)} is not one of {', '.join(STATES)}"
    elif not isinstance(reason, str):
        problem = f"reason {shown(repr(reason), 40)} is not text"
    elif not isinstance(source, str):
        problem = f"source {shown(repr(source), 40)} is not text"
    elif percent is not None and (isinstance(percent, bool) or not isinstance(percent, (int, float))
                                  or not math.isfinite(percent) or not 0 <= percent <= 100):
        problem = f"percent {shown(repr(percent), 40)} is not a number from 0 to 100"
    elif not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (gradings, attempts)):
        problem = f"gradings {shown(repr(gradings), 20)} / attempts {shown(repr(attempts), 20)} are not counts"
    if problem is not None:
        raise BadInput(f"{shown(folder)}: the ledger row of candidate {shown(candidate, 70)} is damaged: {problem}")
    return RoundEntry(candidate=candidate, source=source, state=state, reason=reason, percent=percent,
                      gradings=gradings, attempts=attempts, folder=folder / CANDIDATES / candidate)


def read_round(folder: Path) -> Round:
    """The round in folder; BadInput with one line when it is not a round folder or its ledger holds
    a value mlgrade does not write."""
    ledger = folder / LEDGER
    if not ledger.is_file():
        raise BadInput(f"{folder}: not a round folder (no {LEDGER}; mlgrade batch writes one)")
    try:
        with closing(sqlite3.connect(sqlite_uri(ledger, mode="ro"), uri=True)) as db:
            info = db.execute("SELECT name, value FROM round").fetchall()
            rows = db.execute("SELECT candidate, source, state, reason, percent, gradings, attempts "
                              "FROM submissions ORDER BY candidate").fetchall()
    except sqlite3.Error as exc:
        raise BadInput(f"{ledger}: cannot read the ledger ({exc})") from None
    for name, value in info:
        if not isinstance(name, str) or not isinstance(value, str):
            raise BadInput(f"{shown(ledger)}: the ledger's round table is damaged: {shown(repr(name), 40)} = "
                           f"{shown(repr(value), 40)} is not text")
    entries = [_entry(folder, row) for row in rows]
    return Round(folder=folder, info=dict(info), entries=entries)
