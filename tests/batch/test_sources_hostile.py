"""SOURCE of `mlgrade batch` against hostile input: archives over intake's per-file limit keyed by
their bytes, folders deeper than Python's recursion limit, rosters whose paths hold line breaks,
form feeds, NULs or lone surrogates. CLI runs grade the toy fixture exercise (a few seconds each);
the rest calls grader.batch.sources directly on real files.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import zipfile
from contextlib import closing
from pathlib import Path

import pytest

from grader.batch.sources import SourceEntry, content_hash, read_source
from grader.cleanup import remove_tree
from grader.errors import BadInput, SubmissionRefused
from grader.intake import MAX_ARCHIVE_BYTES, MAX_DEPTH, MAX_ENTRIES, MAX_FILE_BYTES, intake
from sandbox import available_backends
from tests.conftest import PROJECT, TOY_HOME, refused

BACKEND = "bwrap" if available_backends().get("bwrap") is None or os.environ.get("CI") == "true" else "process"
REFERENCE = (TOY_HOME / "reference" / "toy" / "calc.py").read_bytes()
DEEP = 1500  # folders: beyond Python's recursion limit (os.walk and shutil.rmtree recurse once per level)


def mlgrade(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLGRADE_HOME": str(TOY_HOME), "MLGRADE_RETRY_DELAY": "0.05"}
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True, env=env,
                          cwd=PROJECT, timeout=300)


def batch(source: Path | str, out: Path) -> subprocess.CompletedProcess:
    return mlgrade("batch", "toy", str(source), "--out", str(out), "--backend", BACKEND)


def rows(out: Path) -> dict[str, tuple]:
    with closing(sqlite3.connect(f"file:{out / 'ledger.sqlite3'}?mode=ro", uri=True)) as db:
        return {r[0]: r[1:] for r in db.execute("SELECT candidate, state, reason, content_hash, attempts "
                                                "FROM submissions")}


def stored_zip(path: Path, calc: bytes, blob_bytes: int) -> None:
    """calc.py and two incompressible-looking blobs, stored (no deflate: cheap to write and read)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("calc.py", calc)
        for n in (1, 2):
            archive.writestr(f"blob{n}.bin", bytes([n]) * blob_bytes)


def replace_keeping_size_and_mtime(path: Path, write) -> None:
    """Rewrite path with write(path), which must keep its size; its mtime is put back (as `cp -p`)."""
    st, data = path.stat(), path.read_bytes()
    write(path)
    assert path.stat().st_size == st.st_size and path.read_bytes() != data
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def sparse(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        handle.truncate(size)


def nest(root: Path, depth: int, leaf: str | None = None) -> Path:
    """root/d/d/.../d, depth folders, made one level at a time (relative to a descriptor)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        if leaf is not None:
            leaf_fd = os.open(leaf, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
            os.write(leaf_fd, REFERENCE)
            os.close(leaf_fd)
    finally:
        os.close(fd)
    return root / "d"


# -- 1. archives over the per-file limit ---------------------------------------------------------

def test_a_replaced_archive_over_16_mib_is_graded_again(tmp_path: Path) -> None:
    source, out = tmp_path / "source", tmp_path / "round"
    source.mkdir()
    alice = source / "alice.zip"
    stored_zip(alice, REFERENCE, 9 * 2**20)
    assert MAX_FILE_BYTES < alice.stat().st_size <= MAX_ARCHIVE_BYTES
    sparse(source / "bob.zip", MAX_ARCHIVE_BYTES + 2**20)  # over intake's archive limit: refused on its size

    first = batch(source, out)
    assert first.returncode == 0, first.stderr
    before = rows(out)
    assert before["alice"][0] == "graded"
    assert before["bob"][0] == "candidate_failure" and "limit for an archive" in before["bob"][1]

    # one byte of calc.py: `a + b` becomes `a - b` (same size, same mtime): the key must change
    edited = REFERENCE.replace(b"return a + b", b"return a - b", 1)
    replace_keeping_size_and_mtime(alice, lambda path: stored_zip(path, edited, 9 * 2**20))
    second = batch(source, out)
    assert second.returncode == 0, second.stderr
    assert "0 to grade" not in second.stdout + second.stderr
    after = rows(out)
    assert after["alice"][0] == "graded" and after["alice"][3] == 1  # graded anew (attempts for the new key)
    assert after["alice"][2] == hashlib.sha256(alice.read_bytes()).hexdigest()  # what intake records too
    with closing(sqlite3.connect(f"file:{out / 'ledger.sqlite3'}?mode=ro", uri=True)) as db:
        percents = [p for (p,) in db.execute("SELECT percent FROM submissions WHERE candidate = 'alice'")]
    assert percents[0] is not None and percents[0] < 100  # the edited add() fails its checks
    assert after["bob"] == before["bob"]  # the oversized one stays a consistent failure, not graded again


def test_archive_hash_is_the_bytes_up_to_intakes_limit_and_the_size_beyond(tmp_path: Path) -> None:
    big = tmp_path / "big.zip"
    sparse(big, MAX_FILE_BYTES + 3 * 2**20)
    entry = SourceEntry("big", big, "big.zip")
    first = content_hash(entry)
    assert first == hashlib.sha256(big.read_bytes()).hexdigest()
    with open(big, "r+b") as handle:  # a byte in the middle, size and mtime kept
        st = os.fstat(handle.fileno())
        handle.seek(MAX_FILE_BYTES + 2**20)
        handle.write(b"x")
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert content_hash(entry) != first

    huge = tmp_path / "huge.zip"
    sparse(huge, MAX_ARCHIVE_BYTES + 1)
    assert content_hash(SourceEntry("huge", huge, "huge.zip")) == f"over:{MAX_ARCHIVE_BYTES + 1}"
    with pytest.raises(SubmissionRefused, match="limit for an archive"):  # ... which is all intake decides on
        intake(huge, _empty(tmp_path / "dest"), ["calc.py"])


# -- 2. folders: depth, and what intake counts that the hash left out ----------------------------------

def test_a_folder_deeper_than_the_recursion_limit_is_that_candidates_failure(tmp_path: Path) -> None:
    source, out = tmp_path / "source", tmp_path / "round"
    (source / "deep").mkdir(parents=True)
    (source / "deep" / "calc.py").write_bytes(REFERENCE)
    nest(source / "deep", DEEP, leaf="x.py")
    (source / "ref").mkdir()
    (source / "ref" / "calc.py").write_bytes(REFERENCE)
    try:
        run = batch(source, out)
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
        state = rows(out)
        assert state["ref"][0] == "graded"
        assert state["deep"][0] == "candidate_failure" and f"more than {MAX_DEPTH} folders deep" in state["deep"][1]
    finally:
        remove_tree(source / "deep")


def test_tree_hash_changes_with_what_intake_refuses_on(tmp_path: Path) -> None:
    """Empty folders, a chain deeper than MAX_DEPTH and dropped names (*.pyc) are read by intake
    (counted, depth- and name-checked); the key must change when they come or go."""
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "calc.py").write_bytes(REFERENCE)
    entry = SourceEntry("sub", folder, "sub")
    clean = content_hash(entry)

    chain = nest(folder, MAX_DEPTH + 1)  # empty folders, one level too deep: intake refuses them
    with pytest.raises(SubmissionRefused, match="folders deep"):
        intake(folder, _empty(tmp_path / "i1"), ["calc.py"])
    assert content_hash(entry) != clean
    remove_tree(chain)
    assert content_hash(entry) == clean

    (folder / "bad\x01.pyc").write_bytes(b"")  # dropped by intake, but its name is refused first
    with pytest.raises(SubmissionRefused, match="control"):
        intake(folder, _empty(tmp_path / "i2"), ["calc.py"])
    assert content_hash(entry) != clean
    (folder / "bad\x01.pyc").unlink()

    (folder / "__pycache__").mkdir()  # what a local run leaves: dropped unread, no new key
    (folder / ".DS_Store").write_bytes(b"finder")
    assert content_hash(entry) == clean
    for n in range(MAX_ENTRIES):  # dropped, but counted: intake refuses more than MAX_ENTRIES
        (folder / f"m{n}.pyc").write_bytes(b"")
    with pytest.raises(SubmissionRefused, match="entries"):
        intake(folder, _empty(tmp_path / "i3"), ["calc.py"])
    assert content_hash(entry) != clean


def test_tree_hash_keys_a_file_over_the_limit_by_its_size_and_reads_no_further(tmp_path: Path) -> None:
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "calc.py").write_bytes(REFERENCE)
    sparse(folder / "big.bin", MAX_FILE_BYTES + 1)
    entry = SourceEntry("sub", folder, "sub")
    first = content_hash(entry)
    with pytest.raises(SubmissionRefused, match="limit per file"):  # refused on the size alone
        intake(folder, _empty(tmp_path / "i"), ["calc.py"])
    os.utime(folder / "big.bin", ns=(0, 0))
    assert content_hash(entry) == first  # its mtime is nothing intake decides on
    with open(folder / "big.bin", "r+b") as handle:
        handle.truncate(MAX_FILE_BYTES)  # now within the limit: intake reads it, so the key changes
    assert content_hash(entry) != first


def test_an_unreadable_inner_folder_is_the_candidates_not_the_rounds(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads a folder whatever its mode")
    folder = tmp_path / "sub"
    (folder / "locked").mkdir(parents=True)
    (folder / "calc.py").write_bytes(REFERENCE)
    entry = SourceEntry("sub", folder, "sub")
    readable = content_hash(entry)
    (folder / "locked").chmod(0)
    try:
        assert content_hash(entry) != readable
    finally:
        (folder / "locked").chmod(0o755)


def _empty(path: Path) -> Path:
    path.mkdir()
    return path


# -- 3, 4. roster paths --------------------------------------------------------------------------

UNSEEN = "control or invisible character"
ROSTERS = [
    ("quoted line break", b'candidate,path\nalice,"su\nb"\n', ["line 2", "the path", UNSEEN, "\\n"]),
    ("quoted CR LF", b'candidate,path\r\nalice,"su\r\nb"\r\n', ["line 2", "the path", UNSEEN, "\\r"]),
    ("trailing quoted line break", b'candidate,path\nalice,"sub\n"\n', ["line 2", "the path", UNSEEN]),
    ("form feed", b"candidate,path\nalice,sub\x0cbob,sub\n", ["line 2", "the path", UNSEEN, "\\x0c"]),
    ("line separator", "candidate,path\nalice,sub\u2028bob,sub\n".encode(), ["line 2", "the path", "LINE SEPARATOR"]),
    ("NUL", b'candidate,path\nalice,"a\x00b"\n', ["line 2", "the path", UNSEEN, "\\x00"]),
    ("bidi override", "candidate,path\nalice,\u202esub\n".encode(), ["line 2", "the path", UNSEEN]),
    ("control in the id", b"candidate,path\nalice\x0c,sub\n", ["line 2", "the candidate", UNSEEN]),
    ("line numbers after a multi-line field", b'candidate,path,note\nalice,sub,"two\nlines"\nbob,gone\n',
     ["line 4", "gone", "no such file or folder"]),
]


@pytest.mark.parametrize("case", ROSTERS, ids=[c[0] for c in ROSTERS])
def test_roster_paths_with_control_characters_are_refused_naming_the_row(case, tmp_path: Path) -> None:
    _, text, needles = case
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "calc.py").write_bytes(REFERENCE)
    (tmp_path / "r.csv").write_bytes(text)
    with pytest.raises(BadInput) as caught:  # the real reader: fast, every case
        read_source(str(tmp_path / "r.csv"))
    message = str(caught.value)
    assert "\n" not in message and all(n in message for n in needles), message


def test_roster_with_a_quoted_line_break_or_a_nul_through_the_cli(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "calc.py").write_bytes(REFERENCE)
    for name, text in (("break.csv", b'candidate,path\nalice,"su\nb"\n'),
                       ("nul.csv", b'candidate,path\nalice,"a\x00b"\n'),
                       ("ff.csv", b"candidate,path\nalice,sub\x0cbob,sub\n")):
        (tmp_path / name).write_bytes(text)
        out = tmp_path / f"round-{name}"
        refused(batch(tmp_path / name, out), "line 2")
        assert not out.exists()


def test_a_path_that_has_no_bytes_is_one_line(tmp_path: Path) -> None:
    """A lone surrogate (not from surrogateescape) cannot be encoded: UnicodeEncodeError, a ValueError;
    a NUL: ValueError. Both are BadInput wherever sources turns text into a path."""
    for bad in ("x\ud800y", "x\0y"):
        with pytest.raises(BadInput, match="not a usable path"):
            content_hash(SourceEntry("x", tmp_path / bad, bad))
    with pytest.raises(BadInput, match="not a usable path"):
        read_source(str(tmp_path / "x\ud800y"))
    (tmp_path / "s").mkdir()
    roster = tmp_path / "s" / "r.csv"
    roster.write_text("candidate,path\nalice,/tmp\n")
    assert [e.candidate for e in read_source(str(roster))] == ["alice"]  # a plain row still reads
