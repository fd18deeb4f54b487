"""The round's SQLite ledger (layout.LEDGER_SCHEMA): written only by the batch process that holds
the round's lock, one transaction per state change, WAL journal so a `kill -9` at any moment
leaves the last committed state.

A candidate's `key` is sha256 over its content hash, the exercise's version hash and the image id
(see `ledger_key`). Rows whose key is unchanged and whose state is graded or candidate_failure are
final and never graded again; a changed key resets the row to pending. Each try of a grading is an
`attempts` row, ended as graded, candidate_failure, infra_failure or interrupted.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import BadInput, InfraError
from ..outdir import shown
from .layout import LEDGER, LEDGER_SCHEMA

LOCK = ".lock"  # flock'ed by the batch that owns the round (DIR/.lock)
DONE = ("graded", "candidate_failure")  # final and not retried; infra_failure is retried by a new batch
BUSY_TIMEOUT_S = 30.0  # readers (exports, pages) may hold the database briefly


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def ledger_key(content_hash: str, exercise_version: str, image_id: str) -> str:
    return hashlib.sha256(f"{content_hash}\0{exercise_version}\0{image_id}".encode()).hexdigest()


@dataclass(frozen=True)
class Row:
    candidate: str
    source: str
    key: str
    state: str
    attempts: int
    gradings: int
    reason: str
    percent: float | None


class RoundLock:
    """An exclusive flock on DIR/.lock for the life of the batch (released when the process dies)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise InfraError(f"cannot create the round lock {shown(self.path)}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise BadInput(f"--out {shown(folder)}: another mlgrade batch (pid {holder}) is grading this round; "
                           "wait for it or stop it") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        os.close(self.fd)


class Ledger:
    """The ledger of one round folder; every method that writes commits one transaction."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LEDGER
        try:
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses no commit
            self.db.executescript(LEDGER_SCHEMA)
        except sqlite3.Error as exc:
            raise InfraError(f"cannot open the ledger {shown(self.path)}: {exc}") from None

    def close(self) -> None:
        """Checkpoint and leave WAL mode: a finished round is one self-contained file that readers
        (read-only, `layout.read_round`) and copies of DIR see whole."""
        try:
            self.db.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.Error:
            pass  # a reader holds it; the WAL stays until the next batch
        self.db.close()

    def _tx(self) -> "_Transaction":
        return _Transaction(self.db)

    # -- the round table ---------------------------------------------------------------
    def info(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT name, value FROM round"))

    def set_info(self, values: dict[str, str]) -> None:
        with self._tx():
            self.db.executemany("INSERT INTO round (name, value) VALUES (?, ?) "
                                "ON CONFLICT (name) DO UPDATE SET value = excluded.value", list(values.items()))

    # -- reading -----------------------------------------------------------------------
    def rows(self) -> dict[str, Row]:
        found = self.db.execute("SELECT candidate, source, key, state, attempts, gradings, reason, percent "
                                "FROM submissions ORDER BY candidate")
        return {r[0]: Row(*r) for r in found}

    def completed_gradings(self) -> dict[str, int]:
        """Attempts that ended graded or candidate_failure, per candidate (all keys)."""
        return dict(self.db.execute("SELECT candidate, COUNT(*) FROM attempts WHERE result IN "
                                    "('graded', 'candidate_failure') GROUP BY candidate"))

    # -- state changes -----------------------------------------------------------------
    def recover(self, batch_pid: int) -> int:
        """Rows a dead batch left running go back to pending; its open attempts end as interrupted.
        Only called under the round lock, so whatever is running belongs to a dead batch."""
        with self._tx():
            stamp = now()
            self.db.execute("UPDATE attempts SET ended_at = ?, result = 'interrupted', "
                            "reason = 'the batch (pid ' || batch_pid || ') ended before this grading finished' "
                            "WHERE ended_at IS NULL", (stamp,))
            cursor = self.db.execute("UPDATE submissions SET state = 'pending', updated_at = ? "
                                     "WHERE state = 'running'", (stamp,))
            return cursor.rowcount

    def sync(self, wanted: list[tuple[str, str, str, str, str]], regrade: set[str]) -> list[str]:
        """Insert or update rows for (candidate, source, content_hash, exercise_version, image_id);
        returns the candidates whose key changed or that regrade names (their old reports are stale).
        Unchanged final rows stay; infra failures and pending rows become pending."""
        stale: list[str] = []
        with self._tx():
            stamp = now()
            for candidate, source, content, version, image in wanted:
                key = ledger_key(content, version, image)
                row = self.db.execute("SELECT key, state FROM submissions WHERE candidate = ?", (candidate,)).fetchone()
                if row is None:
                    self.db.execute("INSERT INTO submissions (candidate, source, content_hash, exercise_version, "
                                    "image_id, key, state, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
                                    (candidate, source, content, version, image, key, stamp))
                elif row[0] != key or candidate in regrade:
                    stale.append(candidate)
                    self.db.execute("UPDATE submissions SET source = ?, content_hash = ?, exercise_version = ?, "
                                    "image_id = ?, key = ?, state = 'pending', attempts = 0, gradings = 0, "
                                    "reason = '', percent = NULL, updated_at = ? WHERE candidate = ?",
                                    (source, content, version, image, key, stamp, candidate))
                else:
                    state = row[1] if row[1] in DONE else "pending"
                    self.db.execute("UPDATE submissions SET source = ?, state = ?, updated_at = ? WHERE candidate = ?",
                                    (source, state, stamp, candidate))
        return stale

    def start_attempt(self, candidate: str, key: str, batch_pid: int) -> tuple[int, int]:
        """Mark the row running and open an attempt; returns (attempt id, attempts for this key)."""
        with self._tx():
            stamp = now()
            self.db.execute("UPDATE submissions SET state = 'running', attempts = attempts + 1, updated_at = ? "
                            "WHERE candidate = ? AND key = ?", (stamp, candidate, key))
            attempts = self.db.execute("SELECT attempts FROM submissions WHERE candidate = ?", (candidate,)).fetchone()[0]
            cursor = self.db.execute("INSERT INTO attempts (candidate, key, started_at, batch_pid) VALUES (?, ?, ?, ?)",
                                     (candidate, key, stamp, batch_pid))
            return int(cursor.lastrowid or 0), int(attempts)

    def finish_attempt(self, attempt_id: int, candidate: str, result: str, reason: str, percent: float | None,
                       final: bool) -> None:
        """End an attempt and set the row: final (its result, gradings = 1 when a grading completed)
        or back to pending for a retry; one transaction."""
        with self._tx():
            stamp = now()
            self.db.execute("UPDATE attempts SET ended_at = ?, result = ?, reason = ? WHERE id = ?",
                            (stamp, result, reason, attempt_id))
            completed = 1 if result in DONE else 0
            self.db.execute("UPDATE submissions SET state = ?, reason = ?, percent = ?, "
                            "gradings = gradings + ?, updated_at = ? WHERE candidate = ?",
                            (result if final else "pending", reason, percent, completed, stamp, candidate))

    def interrupt(self, batch_pid: int) -> None:
        """This batch is stopping: its open attempts end as interrupted, running rows go back to pending."""
        with self._tx():
            stamp = now()
            self.db.execute("UPDATE attempts SET ended_at = ?, result = 'interrupted', reason = ? "
                            "WHERE ended_at IS NULL AND batch_pid = ?",
                            (stamp, f"the batch (pid {batch_pid}) was stopped", batch_pid))
            self.db.execute("UPDATE submissions SET state = 'pending', updated_at = ? WHERE state = 'running'",
                            (stamp,))


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any exception); sqlite3 errors become InfraError."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        try:
            if self.db.in_transaction:  # one an interrupt (Ctrl-C, SIGTERM) cut short
                self.db.execute("ROLLBACK")
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise InfraError(f"the ledger is not writable: {exc}") from None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        if kind is None:
            try:
                self.db.execute("COMMIT")
                return False
            except sqlite3.Error as error:
                self.db.execute("ROLLBACK")
                raise InfraError(f"cannot write the ledger: {error}") from None
        self.db.execute("ROLLBACK")
        if issubclass(kind, sqlite3.Error):
            raise InfraError(f"cannot write the ledger: {exc}") from None
        return False
