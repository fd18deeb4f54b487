"""SOURCE of `mlgrade batch`: a folder of submissions or a CSV roster, read into candidates.

A folder: each entry is one candidate's folder, .zip, .tar.gz, .tgz or .tar; the candidate id is
the entry's name without the archive suffix; dotfiles are skipped. A roster: a CSV file with the
header `candidate,path` (more columns are allowed and ignored); relative paths resolve against
the CSV's folder. Ids must match layout.CANDIDATE_ID and be unique. Anything wrong is one line
(BadInput) before anything is written.

The content hash that goes into the ledger key is computed without extracting anything: the
sha256 of an archive's bytes (what intake records for it), or a tree hash of a folder.
"""
from __future__ import annotations

import csv
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput
from ..intake import IGNORED_PARTS, MAX_FILE_BYTES
from ..outdir import one_line, shown
from .layout import CANDIDATE_ID

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")  # longest first: "a.tar.gz" is candidate "a"
MAX_ROSTER_BYTES = 16 * 1024 * 1024
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


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


def _from_roster(roster: Path, label: str) -> list[SourceEntry]:
    try:
        if roster.stat().st_size > MAX_ROSTER_BYTES:
            raise BadInput(f"{label}: the roster is over {MAX_ROSTER_BYTES // 2**20} MiB")
        text = roster.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BadInput(f"{label}: the roster is not UTF-8 text") from None
    except OSError as exc:
        raise BadInput(f"{label}: cannot read the roster: {exc.strerror or exc}") from None
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as exc:
        raise BadInput(f"{label}: not a CSV file ({one_line(str(exc))})") from None
    if not rows:
        raise BadInput(f"{label}: the roster is empty (expected the header candidate,path)")
    header = [h.strip().lower() for h in rows[0]]
    if "candidate" not in header or "path" not in header:
        raise BadInput(f"{label}: line 1: the header must name the columns candidate and path "
                       f"(found {shown(','.join(rows[0]), 60)})")
    col_id, col_path = header.index("candidate"), header.index("path")
    base = roster.parent.absolute()
    entries: list[SourceEntry] = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines
        where = f"{label}: line {number}"
        if len(row) <= max(col_id, col_path):
            raise BadInput(f"{where}: {len(row)} column{'s' if len(row) != 1 else ''}, expected {len(header)}")
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

def _hash_file(path: Path | str, digest: "hashlib._Hash") -> None:
    """Feed a regular file's bytes to digest, opened without following a link or blocking on a FIFO;
    a file over intake's per-file limit (intake refuses it anyway) adds its size and mtime instead."""
    mode = os.lstat(path).st_mode  # a device or FIFO is never opened
    if not stat.S_ISREG(mode):
        digest.update(b"special:%o\0" % stat.S_IFMT(mode))
        return
    fd = os.open(path, _READ_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            digest.update(b"special:%o\0" % stat.S_IFMT(st.st_mode))
            return
        if st.st_size > MAX_FILE_BYTES:
            digest.update(b"large:%d:%d\0" % (st.st_size, st.st_mtime_ns))
            return
        with os.fdopen(os.dup(fd), "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    finally:
        os.close(fd)


def _tree_hash(root: Path) -> str:
    """sha256 over relative paths and contents; links contribute their target, never followed;
    what intake drops (`__pycache__`, `.git`, `*.pyc`, ...) is left out."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_PARTS)
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            if name in IGNORED_PARTS or name.endswith(".pyc"):
                continue
            rel = os.path.normpath(os.path.join(rel_dir, name))
            full = os.path.join(dirpath, name)
            digest.update(os.fsencode(rel) + b"\0")
            if os.path.islink(full):
                digest.update(b"link:" + os.fsencode(os.readlink(full)) + b"\0")
            else:
                _hash_file(full, digest)
            digest.update(b"\0")
    return digest.hexdigest()


def content_hash(entry: SourceEntry) -> str:
    """The submission's content hash (no extraction): sha256 of an archive, tree hash of a folder."""
    try:
        if entry.path.is_dir():
            return "tree:" + _tree_hash(entry.path)
        digest = hashlib.sha256()
        _hash_file(os.path.realpath(entry.path), digest)
        return digest.hexdigest()
    except OSError as exc:
        raise BadInput(f"{shown(entry.given, 60)} (candidate {entry.candidate}): cannot read it: "
                       f"{exc.strerror or exc}") from None
