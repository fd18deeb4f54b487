"""SOURCE of `mlgrade batch`: a folder of submissions or a CSV roster, read into candidates.

A folder: each entry is one candidate's folder, .zip, .tar.gz, .tgz or .tar; the candidate id is
the entry's name without the archive suffix; dotfiles are skipped. A roster: a CSV file with the
header `candidate,path` (more columns are allowed and ignored); relative paths resolve against
the CSV's folder. Ids must match layout.CANDIDATE_ID and be unique. Anything wrong is one line
(BadInput) before anything is written.

The content hash that goes into the ledger key is computed without extracting anything: the
sha256 of an archive's bytes (what intake records for it), or a tree hash of a folder. Where intake
refuses a submission on a limit alone (an archive over MAX_ARCHIVE_BYTES, a file over MAX_FILE_BYTES,
a folder deeper than MAX_DEPTH, ...), the hash records what intake decides on (a size, a name)
instead of reading further: the key still changes whenever intake's verdict can.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput
from ..intake import (IGNORED_PARTS, MAX_ARCHIVE_BYTES, MAX_DEPTH, MAX_ENTRIES, MAX_FILE_BYTES,
                      MAX_TOTAL_BYTES)
from ..outdir import one_line, shown
from .layout import CANDIDATE_ID

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")  # longest first: "a.tar.gz" is candidate "a"
MAX_ROSTER_BYTES = 16 * 1024 * 1024
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_CHUNK = 1 << 20
# control characters, line and paragraph separators, invisible format ones (bidi overrides), lone surrogates
_UNSEEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}


@dataclass(frozen=True)
class SourceEntry:
    """One candidate's submission as SOURCE names it."""
    candidate: str
    path: Path    # absolute; a folder or an archive file
    given: str    # the path as the roster or folder listing gave it (recorded in the ledger)


def _archive_stem(name: str) -> str | None:
    lower = name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _check_id(candidate: str, where: str) -> None:
    if not CANDIDATE_ID.fullmatch(candidate):
        raise BadInput(f"{where}: candidate id {shown(candidate, 40)} is not usable as a folder name "
                       "(letters, digits, '.', '_', '-'; at most 64; starting with a letter or digit)")


def _kind(path: Path, where: str) -> str:
    """'folder' or 'file' for what path points to (links followed: the operator named them)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise BadInput(f"{where}: {shown(path, 60)}: no such file or folder") from None
    except OSError as exc:
        raise BadInput(f"{where}: {shown(path, 60)}: cannot examine it: {exc.strerror or exc}") from None
    except ValueError:  # a NUL, or a lone surrogate that has no bytes (UnicodeEncodeError)
        raise BadInput(f"{where}: {shown(path, 60)}: not a usable path (NUL or undecodable character)") from None
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    raise BadInput(f"{where}: {shown(path, 60)}: not a folder, a .zip or a .tar.gz")


def _from_folder(folder: Path, label: str) -> list[SourceEntry]:
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise BadInput(f"{label}: cannot list the folder: {exc.strerror or exc}") from None
    entries: list[SourceEntry] = []
    for name in names:
        if name.startswith("."):
            continue
        path = folder / name
        kind = _kind(path, label)
        candidate = name if kind == "folder" else _archive_stem(name)
        if candidate is None:
            raise BadInput(f"{label}: {shown(name, 40)} is not a folder, a .zip or a .tar.gz "
                           "(SOURCE holds one per candidate; move other files out)")
        _check_id(candidate, f"{label}: {shown(name, 40)}")
        entries.append(SourceEntry(candidate, path.absolute(), name))
    return entries


def _unseen(text: str) -> str | None:
    """The first control, line-break or invisible character in text, None when there is none."""
    return next((ch for ch in text if unicodedata.category(ch) in _UNSEEN), None)


def _from_roster(roster: Path, label: str) -> list[SourceEntry]:
    try:
        with open(roster, "rb") as handle:  # bytes: a text-mode read would turn a quoted "\r\n" into "\n"
            data = handle.read(MAX_ROSTER_BYTES + 1)
    except OSError as exc:
        raise BadInput(f"{label}: cannot read the roster: {exc.strerror or exc}") from None
    if len(data) > MAX_ROSTER_BYTES:
        raise BadInput(f"{label}: the roster is over {MAX_ROSTER_BYTES // 2**20} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadInput(f"{label}: the roster is not UTF-8 text") from None
    # newline="": the csv module splits records itself, so a quoted line break stays in its field
    # (and is refused below) and a form feed or U+2028 does not end a record (str.splitlines would)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []  # (the record's first line, its fields)
    try:
        first = 1
        for row in reader:
            rows.append((first, row))
            first = reader.line_num + 1
    except csv.Error as exc:
        raise BadInput(f"{label}: line {reader.line_num}: not a CSV file ({one_line(str(exc))})") from None
    if not rows:
        raise BadInput(f"{label}: the roster is empty (expected the header candidate,path)")
    head = rows[0][1]
    header = [h.strip().lower() for h in head]
    if "candidate" not in header or "path" not in header:
        raise BadInput(f"{label}: line 1: the header must name the columns candidate and path "
                       f"(found {shown(','.join(head), 60)})")
    col_id, col_path = header.index("candidate"), header.index("path")
    base = roster.parent.absolute()
    entries: list[SourceEntry] = []
    for number, row in rows[1:]:
        if not any(cell.strip() for cell in row):
            continue  # blank lines
        where = f"{label}: line {number}"
        if len(row) <= max(col_id, col_path):
            raise BadInput(f"{where}: {len(row)} column{'s' if len(row) != 1 else ''}, expected {len(header)}")
        for column, cell in (("candidate", row[col_id]), ("path", row[col_path])):
            bad = _unseen(cell)
            if bad is not None:  # checked before strip(), which would drop a trailing one silently
                raise BadInput(f"{where}: the {column} {shown(cell, 60)} holds a control or invisible character "
                               f"({one_line(bad)}, {unicodedata.name(bad, 'U+%04X' % ord(bad))})")
        candidate, given = row[col_id].strip(), row[col_path].strip()
        if not given:
            raise BadInput(f"{where}: empty path")
        _check_id(candidate, where)
        path = Path(given) if os.path.isabs(given) else base / given
        _kind(path, where)
        entries.append(SourceEntry(candidate, path, given))
    return entries


def read_source(source: str) -> list[SourceEntry]:
    """The candidates SOURCE names, sorted by id; BadInput (one line) when SOURCE is unusable."""
    label = f"SOURCE {shown(source, 60)}"
    if source.strip() == "" or "\0" in source:
        raise BadInput(f"{label}: not a path")
    path = Path(source)
    kind = _kind(path, "SOURCE")
    if kind == "folder":
        entries = _from_folder(path, label)
    elif path.name.lower().endswith(".csv"):
        entries = _from_roster(path, label)
    else:
        raise BadInput(f"{label}: is a file but not a .csv roster; SOURCE is a folder of submissions "
                       "or a CSV with the columns candidate,path")
    if not entries:
        raise BadInput(f"{label}: no submissions in it")
    seen: dict[str, SourceEntry] = {}
    for entry in entries:
        if entry.candidate in seen:
            raise BadInput(f"{label}: candidate {entry.candidate} appears twice ({shown(seen[entry.candidate].given, 40)} "
                           f"and {shown(entry.given, 40)})")
        seen[entry.candidate] = entry
    return sorted(entries, key=lambda e: e.candidate)


# -- content hashes --------------------------------------------------------------------------

def _read_into(fd: int, digest: "hashlib._Hash", limit: int) -> int:
    """Feed the open file's bytes to digest in chunks, reading at most limit + 1; returns the count."""
    got = 0
    while got <= limit:
        block = os.read(fd, min(_CHUNK, limit + 1 - got))
        if not block:
            break
        digest.update(block)
        got += len(block)
    return got


def _archive_hash(path: str) -> str:
    """sha256 of the file's bytes, as intake computes it. Over intake's archive limit intake refuses it
    on its size alone, so the size is the key ("over:SIZE"); a device or FIFO is never opened."""
    mode = os.lstat(path).st_mode
    if not stat.S_ISREG(mode):
        return "special:%o" % stat.S_IFMT(mode)
    fd = os.open(path, _READ_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "special:%o" % stat.S_IFMT(st.st_mode)
        if st.st_size > MAX_ARCHIVE_BYTES:
            return f"over:{st.st_size}"
        digest = hashlib.sha256()
        got = _read_into(fd, digest, MAX_ARCHIVE_BYTES)
        return f"over:{got}+" if got > MAX_ARCHIVE_BYTES else digest.hexdigest()  # it grew while read
    finally:
        os.close(fd)


class _TreeHash:
    """sha256 of a folder as intake walks it: depth first in name order, every entry by its relative
    path and kind, files by their bytes, links by their target (never followed); what intake drops
    unread only by its count, or by its name where intake refuses that name. What intake refuses on
    a limit alone is recorded as such and not read (a file over MAX_FILE_BYTES, files past
    MAX_TOTAL_BYTES, entries below MAX_DEPTH, names past MAX_ENTRIES), so the work is bounded by
    intake's own limits. An entry that cannot be read is recorded with its error: intake refuses it
    too (the candidate's failure, not the round's)."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.listed = self.total = 0
        self.over = False  # past MAX_ENTRIES: intake stops there, so does the walk

    def record(self, kind: bytes, rel: str, extra: bytes = b"") -> None:
        self.digest.update(kind + b":" + rel.encode("utf-8", "surrogateescape") + b"\0" + extra + b"\0")

    def listdir(self, fd: int, rel: str) -> list[str]:
        """The folder's names, sorted; none once intake's entry limit is passed (recorded)."""
        names = []
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    self.listed += 1
                    if self.listed > MAX_ENTRIES:
                        self.record(b"entries-over", rel)
                        self.over = True
                        return []
                    names.append(entry.name)
        except OSError as exc:
            self.record(b"unlistable", rel, os.strerror(exc.errno or 0).encode())
            return []
        return sorted(names)

    def file(self, fd: int, name: str, rel: str, size: int) -> None:
        if size > MAX_FILE_BYTES:  # intake refuses it on its size
            self.record(b"large", rel, b"%d" % size)
            return
        self.total += size
        if self.total > MAX_TOTAL_BYTES:  # intake refuses the submission here, on the sizes
            self.record(b"size", rel, b"%d" % size)
            return
        try:
            file_fd = os.open(name, _READ_FLAGS, dir_fd=fd)
        except OSError as exc:
            self.record(b"unreadable", rel, os.strerror(exc.errno or 0).encode())
            return
        try:
            self.digest.update(b"file:" + rel.encode("utf-8", "surrogateescape") + b"\0")
            got = _read_into(file_fd, self.digest, size)
            self.digest.update(b"\0%d\0" % got)  # a length that is not lstat's: intake refuses it
        except OSError as exc:
            self.record(b"unreadable", rel, os.strerror(exc.errno or 0).encode())
        finally:
            os.close(file_fd)

    def walk(self, root: str) -> str:
        stack: list[tuple[int, str, list[str]]] = [(os.open(root, _DIR_FLAGS), "", [])]  # (fd, prefix, names left)
        try:
            stack[0][2].extend(reversed(self.listdir(stack[0][0], ".")))
            while stack and not self.over:
                fd, prefix, pending = stack[-1]
                if not pending:
                    os.close(stack.pop()[0])
                    continue
                name = pending.pop()
                rel = prefix + name
                if name in IGNORED_PARTS or name.endswith(".pyc"):
                    # intake never opens it: it counts (entries-over above) and its name is checked first
                    # (intake._safe_relpath refuses these); a plain one can come and go (.DS_Store,
                    # __pycache__ after a local run) without a new key
                    if not name.isprintable() or "\\" in name:
                        self.record(b"dropped", rel)
                    continue
                if rel.count("/") + 1 > MAX_DEPTH:
                    self.record(b"deep", rel)  # intake refuses it on its path alone: neither read nor entered
                    continue
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError as exc:
                    self.record(b"unreadable", rel, os.strerror(exc.errno or 0).encode())
                    continue
                if stat.S_ISDIR(st.st_mode):
                    self.record(b"dir", rel)
                    try:
                        child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    except OSError as exc:
                        self.record(b"unlistable", rel, os.strerror(exc.errno or 0).encode())
                        continue
                    stack.append((child, rel + "/", []))
                    stack[-1][2].extend(reversed(self.listdir(child, rel)))
                elif stat.S_ISLNK(st.st_mode):
                    try:
                        target = os.readlink(name, dir_fd=fd)
                    except OSError as exc:
                        target = "?" + os.strerror(exc.errno or 0)
                    self.record(b"link", rel, target.encode("utf-8", "surrogateescape"))
                elif stat.S_ISREG(st.st_mode):
                    self.file(fd, name, rel, st.st_size)
                else:
                    self.record(b"special", rel, b"%o" % stat.S_IFMT(st.st_mode))
        finally:
            for fd, _, _ in stack:
                os.close(fd)
        return self.digest.hexdigest()


def content_hash(entry: SourceEntry) -> str:
    """The submission's content hash (no extraction): sha256 of an archive, tree hash of a folder.
    The path itself (the operator's, links followed) must be readable: BadInput otherwise."""
    try:
        real = os.path.realpath(entry.path)
        if os.path.isdir(real):
            return "tree:" + _TreeHash().walk(real)
        return _archive_hash(real)
    except (OSError, ValueError) as exc:  # ValueError: a NUL or a lone surrogate in the path
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a usable path"
        raise BadInput(f"{shown(entry.given, 60)} (candidate {entry.candidate}): cannot read it: {why}") from None
