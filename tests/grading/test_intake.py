"""Intake refuses unsafe or malformed submissions with one clear line, and copies good ones.

Every refusal is checked the same way (`_refused`): BadInput whose message is one printable
line of at most 200 characters holding the expected fragments (the submission's name, the
entry, the problem), nothing left in the destination, and the call made under a SIGALRM
guard so that a hang fails the test within seconds instead of blocking the run. Any other
exception (a traceback at the command line) fails the test as it is.

Archives are built in tmp_path at test time. The bombs are 10 GiB of zeros: their deflate
stream is one compressed 1 MiB segment repeated (each segment ends with a full flush, so it
stands alone), about 10 MB on disk, written in seconds without ever holding 10 GiB.
"""
from __future__ import annotations

import gzip
import io
import os
import shutil
import signal
import socket
import stat
import struct
import tarfile
import tempfile
import time
import tracemalloc
import types
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pytest

from grader import intake as intake_mod
from grader.errors import BadInput
from grader.intake import intake
from tests.conftest import TOY_HOME

REFERENCE = TOY_HOME / "reference" / "toy"
GOOD = (REFERENCE / "calc.py").read_bytes()
GiB = 1 << 30
MiB = 1 << 20
BOMB = 10 * GiB
QUICK_S = 2.0  # a refusal of a bomb or of a huge listing must come this fast


# -- guard and checks -----------------------------------------------------------------------

class Hung(BaseException):
    """Raised by the alarm; a BaseException, so no `except Exception` in intake can swallow it."""


@contextmanager
def _guard(seconds: float) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise Hung(f"intake did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _dest(tmp_path: Path) -> Path:
    dest = tmp_path / "dest"
    dest.mkdir(parents=True)
    return dest


def _run(source: Path, dest: Path, required: Iterable[str] = ("calc.py",), starter: Path | None = None,
         seconds: float = 10.0):
    with _guard(seconds):
        return intake(source, dest, list(required), starter=starter)


def _check_line(message: str, fragments: Iterable[str]) -> str:
    assert "\n" not in message and message.isprintable(), repr(message)
    assert len(message) <= 200, (len(message), message)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def _refused(source: Path, dest: Path, *fragments: str, required: Iterable[str] = ("calc.py",),
             starter: Path | None = None, seconds: float = 10.0) -> str:
    with pytest.raises(BadInput) as caught:
        _run(source, dest, required, starter, seconds)
    assert list(dest.iterdir()) == [], "a refusal left files in the destination"
    return _check_line(str(caught.value), fragments)


def _timed_refusal(source: Path, dest: Path, *fragments: str) -> tuple[str, float]:
    start = time.monotonic()
    message = _refused(source, dest, *fragments, seconds=30)
    elapsed = time.monotonic() - start
    assert elapsed < QUICK_S, f"took {elapsed:.2f} s: {message}"
    print(f"refused in {elapsed:.3f} s: {message}")  # shown with -s
    return message, elapsed


# -- archive builders -----------------------------------------------------------------------

def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None,
         mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        for info in members:
            payload = (data or {}).get(info.name)
            if payload is not None:
                info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            archive.addfile(_info(name, len(data)), io.BytesIO(data))
    return buffer.getvalue()


def _deflate(data: bytes, wbits: int = -15) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return packer.compress(data) + packer.flush()


def _zeros_stream(total: int, before: bytes = b"", wbits: int = -15) -> Iterator[bytes]:
    """Compressed `before` + `total` zero bytes (a multiple of 1 MiB): the 1 MiB segment is
    compressed twice and the second (identical to every later one) is repeated."""
    assert total % MiB == 0
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    yield packer.compress(before) + packer.flush(zlib.Z_FULL_FLUSH)
    zero = bytes(MiB)
    first = packer.compress(zero) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(zero) + packer.flush(zlib.Z_FULL_FLUSH)
    assert packer.compress(zero) + packer.flush(zlib.Z_FULL_FLUSH) == again
    yield first
    for _ in range(total // MiB - 3):
        yield again
    yield again + packer.compress(zero) + packer.flush(zlib.Z_FULL_FLUSH) + packer.flush()


@dataclass
class Raw:
    """One zip entry written byte by byte, so headers can say what they like."""

    name: bytes
    data: bytes | None = b""         # compressed here per method; None: `stream` gives compressed chunks
    stream: Callable[[], Iterable[bytes]] | None = None
    method: int = zipfile.ZIP_DEFLATED
    crc: int | None = None
    csize: int | None = None
    usize: int | None = None
    flags: int = 0
    local_name: bytes | None = None
    local_flags: int | None = None
    needed: int = 20
    mode: int = 0o100644
    offset_shift: int = 0            # added to the central directory's local-header offset
    extra: bytes = b""               # central directory extra field


def _raw_zip(path: Path, entries: list[Raw], before: bytes = b"") -> Path:
    central = []
    with open(path, "wb") as out:
        out.write(before)
        for e in entries:
            if e.data is not None:
                packed = e.data if e.method == zipfile.ZIP_STORED else _deflate(e.data)
                chunks: Iterable[bytes] = [packed]
                crc, csize, usize = zlib.crc32(e.data), len(packed), len(e.data)
            else:
                chunks, crc, csize, usize = e.stream(), 0, 0, 0  # type: ignore[misc]
            crc = crc if e.crc is None else e.crc
            usize = usize if e.usize is None else e.usize
            offset = out.tell()
            lname = e.name if e.local_name is None else e.local_name
            lflags = e.flags if e.local_flags is None else e.local_flags
            out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", e.needed, lflags, e.method, 0, 0x21, crc, 0, 0,
                                  len(lname), 0) + lname)
            written = 0
            for chunk in chunks:
                out.write(chunk)
                written += len(chunk)
            csize = written if e.csize is None else e.csize
            extra = e.extra
            c32, u32 = csize, usize
            if usize >= 0xFFFFFFFF:  # zip64: the real size in the extra field
                extra, u32 = struct.pack("<HHQ", 1, 8, usize) + extra, 0xFFFFFFFF
            central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 0x031E, e.needed, e.flags, e.method, 0, 0x21,
                                       crc, c32, u32, len(e.name), len(extra), 0, 0, 0, e.mode << 16,
                                       offset - len(before) + e.offset_shift) + e.name + extra)
        start = out.tell() - len(before)
        directory = b"".join(central)
        out.write(directory)
        count = min(len(entries), 0xFFFF)
        out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory), start, 0))
    return path


def _calc() -> Raw:
    return Raw(b"calc.py", GOOD)


# -- what is accepted -----------------------------------------------------------------------

def test_folder_zip_and_tar_give_the_same_files(tmp_path: Path) -> None:
    data = {"calc.py": GOOD, "notes/readme.txt": b"hi"}
    sources = [_zip(tmp_path / "s.zip", data),
               _tar(tmp_path / "s.tar.gz", [_info(n) for n in data], data),
               _tar(tmp_path / "s.tgz", [_info(n) for n in data], data),
               _tar(tmp_path / "s.tar", [_info(n) for n in data], data, mode="w")]
    for source in sources:
        got = _run(source, _dest(tmp_path / ("out-" + source.name)))
        assert got.files == ("calc.py", "notes/readme.txt")
        assert (got.root / "calc.py").read_bytes() == GOOD
        assert len(got.sha256) == 64
    folder = _run(REFERENCE, _dest(tmp_path / "dir"))
    assert folder.files == ("calc.py",)


def test_single_top_folder_is_looked_into(tmp_path: Path) -> None:
    zipped = _zip(tmp_path / "s.zip", {"mywork/calc.py": GOOD})
    got = _run(zipped, _dest(tmp_path))
    assert got.files == ("calc.py",)


def test_pycache_and_git_are_dropped(tmp_path: Path) -> None:
    dropped = {"__pycache__/calc.cpython-311.pyc": b"x", ".git/HEAD": b"x", "old.pyc": b"x"}
    zipped = _zip(tmp_path / "s.zip", {"calc.py": GOOD, **dropped})
    assert _run(zipped, _dest(tmp_path / "z")).files == ("calc.py",)
    tarred = _tar(tmp_path / "s.tar.gz", [_info(n) for n in ["calc.py", *dropped]], {"calc.py": GOOD, **dropped})
    assert _run(tarred, _dest(tmp_path / "t")).files == ("calc.py",)
    folder = tmp_path / "sub"
    for name, data in {"calc.py": GOOD, **dropped}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    assert _run(folder, _dest(tmp_path / "f")).files == ("calc.py",)


class _Unseekable(io.RawIOBase):
    def __init__(self) -> None:
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.buffer += data
        return len(data)


def test_ordinary_archive_variants_are_accepted(tmp_path: Path) -> None:
    """Directory entries, UTF-8 and cp437 names, data descriptors, zip64 records, bytes before
    the zip (self-extractors), pax headers: all gradable."""
    path = tmp_path / "dirs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("pkg/", b"")
        archive.writestr("calc.py", GOOD)
        archive.writestr("notes/résumé des tests.txt", b"hi")
    _raw_zip(tmp_path / "cp437.zip", [_calc(), Raw(b"old\x82.txt", b"cp437")])  # no UTF-8 flag: 0x82 is é
    with zipfile.ZipFile(tmp_path / "z64.zip", "w") as archive:
        with archive.open("calc.py", "w", force_zip64=True) as member:
            member.write(GOOD)
    stream = _Unseekable()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as archive:  # data descriptors
        archive.writestr("calc.py", GOOD)
    (tmp_path / "stream.zip").write_bytes(bytes(stream.buffer))
    _raw_zip(tmp_path / "sfx.zip", [_calc()], before=b"#!/bin/sh\nexit 0\n" + bytes(1000))
    with tarfile.open(tmp_path / "pax.tar.gz", "w:gz", format=tarfile.PAX_FORMAT) as archive:
        info = _info("calc.py", len(GOOD))
        info.pax_headers = {"comment": "made by hand"}
        archive.addfile(info, io.BytesIO(GOOD))
        long_name = "deep/" + "d" * 120 + "/notes.txt"
        archive.addfile(_info(long_name, 2), io.BytesIO(b"hi"))
    expected = {"dirs.zip": ("calc.py", "notes/résumé des tests.txt"), "cp437.zip": ("calc.py", "oldé.txt"),
                "z64.zip": ("calc.py",),
                "stream.zip": ("calc.py",), "sfx.zip": ("calc.py",), "pax.tar.gz": ("calc.py", long_name)}
    for name, files in expected.items():
        got = _run(tmp_path / name, _dest(tmp_path / ("out-" + name)))
        assert got.files == files, name
        assert (got.root / "calc.py").read_bytes() == GOOD


# -- names: unsafe ones refused, every message escaped ------------------------------------------

def test_zip_paths_that_escape_are_refused(tmp_path: Path) -> None:
    cases = [("../evil.py", "escapes the submission"), ("/etc/evil.py", "absolute path"),
             ("a/../../evil.py", "escapes the submission"), ("a\\..\\evil.py", "unsafe path"),
             ("__pycache__/../../evil.py", "escapes the submission"), ("a\0/evil.py", "unsafe path")]
    for i, (name, problem) in enumerate(cases):
        zipped = _raw_zip(tmp_path / f"s{i}.zip", [_calc(), Raw(name.encode(), b"boom")])
        _refused(zipped, _dest(tmp_path / str(i)), f"s{i}.zip", problem)
    assert not (tmp_path / "evil.py").exists() and not Path("/etc/evil.py").exists()


NAMES = [  # (name in the archive, problem, how the message shows it)
    ("bad\nname.py", "control or invisible character", "bad\\nname.py"),
    ("tab\there.py", "control or invisible character", "tab\\there.py"),
    ("\x1b[31mred.py", "control or invisible character", "\\x1b[31mred.py"),
    ("abc\u202egnp.py", "control or invisible character", "abc\\u202egnp.py"),
    ("caf\udce9.py", "not valid UTF-8", "caf\\xe9.py"),
    ("x" * 300 + ".py", "longer than 255 bytes", "xxx...xxx.py"),
    ("/".join(["d"] * 40) + "/f.py", "more than 32 folders deep", "d/d/d"),
    ("/".join(["e" * 150] * 7) + "/f.py", "longer than 1024 bytes", "eeeeeeeeee"),
]


@pytest.mark.parametrize("kind", ["folder", "zip", "tar"])
@pytest.mark.parametrize("name,problem,shown", NAMES, ids=[f"name{i}" for i in range(len(NAMES))])
def test_unsafe_names_are_refused_and_escaped(tmp_path: Path, kind: str, name: str, problem: str,
                                              shown: str) -> None:
    if kind == "folder":
        source = tmp_path / "sub"
        try:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes(b"x = 1\n")
        except OSError as exc:
            pytest.skip(f"this file system refuses the name: {exc}")
        (source / "calc.py").write_bytes(GOOD)
    elif kind == "zip":
        source = _raw_zip(tmp_path / "s.zip", [_calc(), Raw(name.encode("utf-8", "surrogateescape"), b"x = 1\n",
                                                               flags=0x800)])
    else:
        source = tmp_path / "s.tar.gz"
        with tarfile.open(source, "w:gz", format=tarfile.PAX_FORMAT, errors="surrogateescape") as archive:
            archive.addfile(_info("calc.py", len(GOOD)), io.BytesIO(GOOD))
            archive.addfile(_info(name, 6), io.BytesIO(b"x = 1\n"))
    message = _refused(source, _dest(tmp_path), source.name, problem)
    assert shown in message or all(part in message for part in shown.split("...")), message


def test_zip_name_flagged_utf8_that_is_not(tmp_path: Path) -> None:
    zipped = _raw_zip(tmp_path / "s.zip", [_calc(), Raw(b"caf\xe9\xff.py", b"x = 1\n", flags=0x800)])
    _refused(zipped, _dest(tmp_path), "s.zip", "caf\\xe9\\xff.py", "flagged UTF-8 but is not valid UTF-8")


def test_long_paths_and_names_keep_the_message_short(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["n" * 200] * 3, "sub\nmission")  # the submission's own path: long, with a newline
    deep.mkdir(parents=True)
    (deep / "calc.py").write_bytes(GOOD)
    (deep / ("q" * 240 + ".py")).write_bytes(b"def f(:\n")
    message = _refused(deep, _dest(tmp_path), "sub\\nmission: ", "qqq.py:1: syntax error")
    assert message.startswith(str(tmp_path)[:20]) and "..." in message


def test_missing_required_file_and_syntax_error(tmp_path: Path) -> None:
    _refused(_zip(tmp_path / "a.zip", {"other.py": b"x = 1"}), _dest(tmp_path / "a"),
             "a.zip", "missing required file: calc.py")
    _refused(_zip(tmp_path / "b.zip", {"calc.py": b"def f(:\n"}), _dest(tmp_path / "b"),
             "b.zip: calc.py:1: syntax error")
    _refused(_zip(tmp_path / "c.zip", {"calc.py": GOOD, "mod.py": b"return 1\n"}), _dest(tmp_path / "c"),
             "c.zip: mod.py:1: syntax error: 'return' outside function")
    _refused(_zip(tmp_path / "d.zip", {"calc.py": GOOD, "nul.py": b"x = 1\0\n"}), _dest(tmp_path / "d"),
             "d.zip: nul.py", "null bytes")


def test_compiling_prints_no_warning(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    zipped = _zip(tmp_path / "s.zip", {"calc.py": GOOD, "warn.py": b"assert (1, 'x')\ny = '\\d'\nz = 1 is 1\n"})
    assert _run(zipped, _dest(tmp_path)).files == ("calc.py", "warn.py")
    assert capfd.readouterr().err == ""


def test_python_beyond_the_parse_budget_is_not_parsed_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 16 MiB file of statements takes a minute and gigabytes to parse: beyond MAX_PARSE_BYTES
    of Python, intake leaves syntax to the sandboxed run. Required files are checked first."""
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "calc.py").write_bytes(GOOD)
    (folder / "big.py").write_bytes(b"x=1\n" * (intake_mod.MAX_FILE_BYTES // 4))
    start = time.monotonic()
    assert _run(folder, _dest(tmp_path / "a")).files == ("big.py", "calc.py")
    assert time.monotonic() - start < 5
    monkeypatch.setattr(intake_mod, "MAX_PARSE_BYTES", len(GOOD) + 10)
    (folder / "a.py").write_bytes(b"def broken(:\n")  # sorted first, after calc.py the budget is spent
    assert _run(folder, _dest(tmp_path / "b")).files == ("a.py", "big.py", "calc.py")
    (folder / "calc.py").write_bytes(b"def broken(:\n")
    _refused(folder, _dest(tmp_path / "c"), "calc.py:1: syntax error")


# -- zip: every malformed entry is one line, dropped entries checked too --------------------

ZIP_CASES: dict[str, tuple[Callable[[bytes], list[Raw]], str]] = {
    "bad-crc": (lambda n: [Raw(n, b"hello world", method=zipfile.ZIP_STORED, crc=1234)], "bad CRC-32"),
    "corrupt-deflate": (lambda n: [Raw(n, None, stream=lambda: [b"\xff" * 64], crc=0, usize=10)], "data is corrupt"),
    "local-name-differs": (lambda n: [Raw(n, b"x = 1\n", local_name=b"other.py")], "local header names it other.py"),
    "encrypted": (lambda n: [Raw(n, b"x = 1\n", flags=0x1)], "is encrypted"),
    "encrypted-local-only": (lambda n: [Raw(n, b"x = 1\n", local_flags=0x1)], "is encrypted"),
    "bzip2": (lambda n: [Raw(n, None, stream=lambda: [b"BZh9"], method=zipfile.ZIP_BZIP2, usize=6)],
              "compression method 12"),
    "lzma": (lambda n: [Raw(n, None, stream=lambda: [b"\x00"], method=zipfile.ZIP_LZMA, usize=6)],
             "compression method 14"),
    "aes": (lambda n: [Raw(n, None, stream=lambda: [b"\x00"], method=99, usize=6)], "compression method 99"),
    "understates": (lambda n: [Raw(n, bytes(100_000), usize=1000, crc=zlib.crc32(bytes(1000)))],
                    "inflates to more than the 1000 bytes its header declares"),
    "overstates": (lambda n: [Raw(n, b"x = 1\n", usize=60)], "holds 6 bytes, its header declares 60"),
    "compressed-size-short": (lambda n: [Raw(n, bytes(100_000), csize=10)], "compressed data ends early"),
    "stored-sizes-differ": (lambda n: [Raw(n, b"x = 1\n", method=zipfile.ZIP_STORED, usize=5)],
                            "stored entry whose compressed and uncompressed sizes differ"),
    "local-header-elsewhere": (lambda n: [Raw(n, b"x = 1\n", offset_shift=3)], "local header is missing"),
    "local-header-past-end": (lambda n: [Raw(n, b"x = 1\n", offset_shift=10 ** 6)], "local header is missing"),
    "version-too-new": (lambda n: [Raw(n, b"x = 1\n", needed=100)], "not a readable zip file"),
    "corrupt-extra": (lambda n: [Raw(n, b"x = 1\n", extra=b"\x01\x00\x08\x00\x01")], "not a readable zip file"),
}


@pytest.mark.parametrize("where", ["", "__pycache__/"], ids=["kept", "dropped"])
@pytest.mark.parametrize("case", sorted(ZIP_CASES))
def test_malformed_zip_entries_are_refused(tmp_path: Path, case: str, where: str) -> None:
    build, problem = ZIP_CASES[case]
    name = (where + "mod.py").encode()
    zipped = _raw_zip(tmp_path / "s.zip", [_calc(), *build(name)])
    fragments = ["s.zip", problem] if problem.startswith("not a readable") else ["s.zip: " + name.decode(), problem]
    _refused(zipped, _dest(tmp_path), *fragments)


@pytest.mark.parametrize("content,problem", [
    (b"", "not a readable zip file"),
    (b"not a zip", "not a readable zip file"),
    (b"PK\x05\x06" + bytes(18), "missing required file"),  # an empty zip is a zip
])
def test_unreadable_zip_files(tmp_path: Path, content: bytes, problem: str) -> None:
    (tmp_path / "s.zip").write_bytes(content)
    _refused(tmp_path / "s.zip", _dest(tmp_path), "s.zip", problem)


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9, 0.99])
def test_truncated_zip_is_refused(tmp_path: Path, fraction: float) -> None:
    whole = _zip(tmp_path / "whole.zip", {"calc.py": GOOD, "data.bin": os.urandom(50_000)}).read_bytes()
    (tmp_path / "s.zip").write_bytes(whole[:int(len(whole) * fraction)])
    _refused(tmp_path / "s.zip", _dest(tmp_path), "s.zip", "not a readable zip file")


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("calc.py", GOOD)
        link = zipfile.ZipInfo("link.py")
        link.external_attr = (0o120777 << 16)
        archive.writestr(link, "/etc/passwd")
    _refused(path, _dest(tmp_path), "s.zip: link.py", "not a regular file (a symbolic link")


# -- a path that is both a file and a folder ---------------------------------------------------

@pytest.mark.parametrize("names,problem,shown", [
    (["x", "x/y"], "is both a file and a folder", "x"),
    (["x/y", "x"], "is both a file and a folder", "x"),
    (["x/", "x"], "is both a file and a folder", "x"),
    (["a/b/c", "a/b"], "is both a file and a folder", "a/b"),
    (["a.txt", "a.txt"], "appears twice", "a.txt"),
    (["a/b", "a/./b"], "appears twice", "a/b"),
])
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_file_and_folder_of_one_name_are_refused(tmp_path: Path, kind: str, names: list[str], problem: str,
                                                 shown: str) -> None:
    if kind == "zip":
        source = _raw_zip(tmp_path / "s.zip", [_calc(), *[Raw(n.encode(), b"" if n.endswith("/") else b"1")
                                                           for n in names]])
    else:
        source = tmp_path / "s.tar.gz"
        with tarfile.open(source, "w:gz") as archive:
            archive.addfile(_info("calc.py", len(GOOD)), io.BytesIO(GOOD))
            for n in names:
                if n.endswith("/"):
                    archive.addfile(_info(n.rstrip("/"), 0, tarfile.DIRTYPE))
                else:
                    archive.addfile(_info(n, 1), io.BytesIO(b"1"))
    _refused(source, _dest(tmp_path), f"{source.name}: {shown}: {problem}")


def _starter(tmp_path: Path) -> Path:
    starter = tmp_path / "starter"
    (starter / "pkg").mkdir(parents=True)
    (starter / "pkg" / "__init__.py").write_bytes(b"")
    (starter / "calc.py").write_bytes(b"")
    (starter / "data.txt").write_bytes(b"1,2\n")
    (starter / "__pycache__").mkdir()
    (starter / "__pycache__" / "calc.cpython-311.pyc").write_bytes(b"")
    return starter


@pytest.mark.parametrize("members,shown,problem", [
    ({"pkg": b"I am a file"}, "pkg", "is a file here but a folder in the exercise's starter"),
    ({"data.txt/x.py": b"x = 1\n"}, "data.txt", "is a folder here but a file in the exercise's starter"),
    ({"pkg/__init__.py/x.py": b"x = 1\n"}, "pkg/__init__.py", "is a folder here but a file"),
])
def test_paths_that_clash_with_the_starter_are_refused(tmp_path: Path, members: dict[str, bytes], shown: str,
                                                       problem: str) -> None:
    from grader.pipeline import _overlay
    starter = _starter(tmp_path)
    folder = tmp_path / "sub"
    for name, data in {"calc.py": GOOD, **members}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    _refused(folder, _dest(tmp_path), f"sub: {shown}: {problem}", starter=starter)
    try:  # what the check spares the pipeline: copytree fails, or puts the file inside the starter's folder
        _overlay(starter, folder, tmp_path / "workspace")
    except (shutil.Error, OSError):
        return
    assert (tmp_path / "workspace" / shown).is_dir() and (tmp_path / "workspace" / shown / shown).is_file()


def test_paths_that_fit_the_starter_are_accepted(tmp_path: Path) -> None:
    from grader.pipeline import _overlay
    starter = _starter(tmp_path)
    zipped = _zip(tmp_path / "s.zip", {"calc.py": GOOD, "pkg/extra.py": b"x = 1\n", "data.txt": b"3\n",
                                       "new/data.txt": b"", "__pycache__.txt": b""})
    got = _run(zipped, _dest(tmp_path), starter=starter)
    _overlay(starter, got.root, tmp_path / "workspace")
    assert (tmp_path / "workspace" / "pkg" / "extra.py").exists()


def test_the_pipeline_gives_intake_the_starter(tmp_path: Path) -> None:
    from grader.pipeline import Grader
    starter = _starter(tmp_path)
    exercise = types.SimpleNamespace(
        starter=starter, manifest=types.SimpleNamespace(device="cpu", checks=[], required_files=["calc.py"]))
    zipped = _zip(tmp_path / "s.zip", {"calc.py": GOOD, "pkg": b"file"})
    grader = object.__new__(Grader)  # no sandbox backend needed: intake refuses before any run
    with pytest.raises(BadInput) as caught:
        with _guard(10):
            grader.grade(exercise, zipped, device="cpu")  # type: ignore[arg-type]
    _check_line(str(caught.value), ["s.zip: pkg: is a file here but a folder in the exercise's starter"])


# -- tar: truncated, corrupt, not a tar ------------------------------------------------------

def _good_tar_gz(tmp_path: Path) -> bytes:
    data = {"calc.py": GOOD, "data.bin": os.urandom(30_000)}
    return _tar(tmp_path / "whole.tar.gz", [_info(n) for n in data], data).read_bytes()


@pytest.mark.parametrize("cut", [5, 12, 0.3, 0.6, 0.95, -8, -4, -1])
def test_truncated_tar_gz_is_refused(tmp_path: Path, cut: float) -> None:
    whole = _good_tar_gz(tmp_path)
    keep = int(cut) if abs(cut) >= 1 else int(len(whole) * cut)
    (tmp_path / "s.tar.gz").write_bytes(whole[:keep])
    _refused(tmp_path / "s.tar.gz", _dest(tmp_path), "s.tar.gz: is truncated")


def test_tar_without_end_marker_is_refused(tmp_path: Path) -> None:
    plain = _tar_bytes({"calc.py": GOOD, "notes.txt": b"hello"})
    one_member = 512 + (len(GOOD) + 511) // 512 * 512
    (tmp_path / "s.tar").write_bytes(plain[:one_member])
    _refused(tmp_path / "s.tar", _dest(tmp_path / "a"), "s.tar: is truncated (no end-of-archive marker)")
    (tmp_path / "s.tar.gz").write_bytes(gzip.compress(plain[:one_member]))
    _refused(tmp_path / "s.tar.gz", _dest(tmp_path / "b"), "s.tar.gz: is truncated (no end-of-archive marker)")
    (tmp_path / "h.tar").write_bytes(plain[:one_member + 100])
    _refused(tmp_path / "h.tar", _dest(tmp_path / "c"), "h.tar: is truncated")


def test_tar_with_a_corrupt_later_header_is_refused(tmp_path: Path) -> None:
    plain = bytearray(_tar_bytes({"calc.py": GOOD, "notes.txt": b"hello"}))
    second = 512 + (len(GOOD) + 511) // 512 * 512
    plain[second + 148:second + 156] = b"0000000\0"  # wrong checksum
    (tmp_path / "s.tar.gz").write_bytes(gzip.compress(bytes(plain)))
    _refused(tmp_path / "s.tar.gz", _dest(tmp_path), "s.tar.gz: has a corrupt header after 1 entries")


@pytest.mark.parametrize("content,problem", [
    (b"", "is empty"),
    (b"not a tar", "not a readable tar archive (neither gzip-compressed nor a tar"),
    (os.urandom(3000).replace(b"\x1f", b"\x00"), "not a readable tar archive (neither gzip-compressed nor a tar"),
    (gzip.compress(b"just some text, not a tar" * 40), "not a readable tar archive (the gzip data holds no tar"),
    (gzip.compress(b""), "not a readable tar archive (the gzip data holds no tar: empty file)"),
    (b"BZh91AY&SY" + bytes(50), "is bzip2 data; a tar submission must be gzip-compressed or plain"),
    (b"\xfd7zXZ\x00" + bytes(50), "is xz data"),
    (b"PK\x03\x04" + bytes(50), "is zip data"),
])
def test_not_a_tar_gz_is_one_short_line(tmp_path: Path, content: bytes, problem: str) -> None:
    (tmp_path / "s.tar.gz").write_bytes(content)
    _refused(tmp_path / "s.tar.gz", _dest(tmp_path), "s.tar.gz", problem)


def test_corrupt_gzip_is_refused(tmp_path: Path) -> None:
    whole = bytearray(_good_tar_gz(tmp_path))
    crc_broken = bytes(whole[:-8]) + bytes(4) + bytes(whole[-4:])
    (tmp_path / "crc.tar.gz").write_bytes(crc_broken)
    _refused(tmp_path / "crc.tar.gz", _dest(tmp_path / "a"), "crc.tar.gz: gzip data is corrupt", "CRC check failed")
    (tmp_path / "tail.tar.gz").write_bytes(bytes(whole) + b"garbage after the gzip member")
    _refused(tmp_path / "tail.tar.gz", _dest(tmp_path / "b"), "tail.tar.gz: gzip data is corrupt")
    plain = _tar_bytes({"calc.py": GOOD, "data.bin": os.urandom(30_000)})
    (tmp_path / "two.tar.gz").write_bytes(gzip.compress(plain[:2000]) + b"not a second gzip member")
    _refused(tmp_path / "two.tar.gz", _dest(tmp_path / "d"), "two.tar.gz: gzip data is corrupt",
             "Not a gzipped file")  # inside data.bin's data: a reading error, not a writing one
    middle = bytearray(whole)
    middle[len(middle) // 2: len(middle) // 2 + 20] = os.urandom(20)
    (tmp_path / "mid.tar.gz").write_bytes(bytes(middle))
    message = _refused(tmp_path / "mid.tar.gz", _dest(tmp_path / "c"), "mid.tar.gz: ")
    assert any(p in message for p in ("gzip data is corrupt", "truncated", "corrupt header")), message


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_tar_links_and_devices_are_refused(tmp_path: Path, kind: bytes) -> None:
    odd = _info("calc2.py", kind=kind)
    odd.linkname = "/etc/passwd"
    tarred = _tar(tmp_path / "s.tar.gz", [_info("calc.py"), odd], {"calc.py": GOOD})
    _refused(tarred, _dest(tmp_path), "s.tar.gz: calc2.py: not a regular file")


def test_tar_sparse_file_is_refused(tmp_path: Path) -> None:
    plain = bytearray(_tar_bytes({"calc.py": GOOD, "holes.bin": b"abc"}))
    second = 512 + (len(GOOD) + 511) // 512 * 512
    plain[second + 156:second + 157] = tarfile.GNUTYPE_SPARSE
    plain[second + 148:second + 156] = b" " * 8
    plain[second + 148:second + 155] = b"%06o\0" % sum(plain[second:second + 512])
    (tmp_path / "s.tar.gz").write_bytes(gzip.compress(bytes(plain)))
    _refused(tmp_path / "s.tar.gz", _dest(tmp_path), "s.tar.gz: holes.bin: is a sparse file")


# -- what is not a file or folder, what cannot be read ---------------------------------------

@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short folder under /tmp (unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="mlg-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("name", ["s.zip", "s.tar.gz", "s"])
def test_fifo_or_socket_as_submission_is_refused_without_blocking(short_tmp: Path, name: str) -> None:
    os.mkfifo(short_tmp / name)
    _refused(short_tmp / name, _dest(short_tmp / "a"), f"{name}: is a FIFO, not a folder, a .zip or a .tar.gz",
             seconds=3)
    sock_path = short_tmp / ("k" + name)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        _refused(sock_path, _dest(short_tmp / "b"), f"k{name}: is a socket", seconds=3)


def test_devices_are_refused_and_a_link_the_operator_names_is_followed(tmp_path: Path) -> None:
    _refused(Path("/dev/zero"), _dest(tmp_path / "a"), "/dev/zero: is a character device", seconds=3)
    zipped = _zip(tmp_path / "real.zip", {"calc.py": GOOD})
    os.symlink(zipped, tmp_path / "s.zip")
    assert intake(tmp_path / "s.zip", _dest(tmp_path / "b"), ["calc.py"]).files == ("calc.py",)
    os.mkfifo(tmp_path / "fifo")
    os.symlink(tmp_path / "fifo", tmp_path / "f.zip")  # followed, and what it points to is checked
    _refused(tmp_path / "f.zip", _dest(tmp_path / "c"), "f.zip: is a FIFO", seconds=3)
    os.symlink(tmp_path / "missing.zip", tmp_path / "m.zip")
    _refused(tmp_path / "m.zip", _dest(tmp_path / "m"), "m.zip: is a link to something that cannot be read", seconds=3)
    try:
        os.mknod(tmp_path / "d.zip", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers
    except PermissionError:
        pass  # not root: /dev/zero above is the same case
    else:
        _refused(tmp_path / "d.zip", _dest(tmp_path / "d"), "d.zip: is a character device", seconds=3)
    _refused(tmp_path / "nope.zip", _dest(tmp_path / "e"), "nope.zip: no such file or folder")
    (tmp_path / "s.rar").write_bytes(b"x")
    _refused(tmp_path / "s.rar", _dest(tmp_path / "f"), "s.rar: a submission is a folder, a .zip or a .tar.gz")


def test_folder_with_symlink_fifo_or_socket_is_refused(short_tmp: Path) -> None:
    folder = short_tmp / "sub"
    folder.mkdir()
    (folder / "calc.py").write_bytes(GOOD)
    os.symlink("/etc/passwd", folder / "passwd.py")
    _refused(folder, _dest(short_tmp / "a"), "sub: passwd.py: not a regular file (a symbolic link", seconds=3)
    (folder / "passwd.py").unlink()
    os.mkfifo(folder / "pipe")
    _refused(folder, _dest(short_tmp / "b"), "sub: pipe: not a regular file (a FIFO", seconds=3)
    (folder / "pipe").unlink()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder / "sock"))
        _refused(folder, _dest(short_tmp / "c"), "sub: sock: not a regular file (a socket", seconds=3)


def _unprivileged(work: Callable[[], str]) -> str:
    """work() as uid and gid 65534 in a forked child when we are root (root reads anything)."""
    if os.geteuid() != 0:
        return work()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, run, report, never return into pytest
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            result = work()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            result = f"child raised {type(exc).__name__}: {exc}"
        os.write(write_end, result.encode("utf-8", "surrogateescape"))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        result = pipe.read().decode("utf-8", "surrogateescape")
    os.waitpid(pid, 0)
    return result


def _message_of(source: Path, dest: Path) -> Callable[[], str]:
    def work() -> str:
        try:
            _run(source, dest, seconds=5)
        except BadInput as exc:
            return "BadInput: " + str(exc)
        return "accepted"
    return work


@pytest.mark.parametrize("what", ["archive", "file", "folder", "unsearchable-folder"])
def test_unreadable_parts_are_refused(short_tmp: Path, what: str) -> None:
    short_tmp.chmod(0o755)
    dest = short_tmp / "dest"
    dest.mkdir()
    dest.chmod(0o777)
    if what == "archive":
        source = _zip(short_tmp / "s.zip", {"calc.py": GOOD})
        source.chmod(0)
        fragments = ["s.zip: cannot be read (PermissionError"]
    else:
        source = short_tmp / "sub"
        (source / "inner").mkdir(parents=True)
        (source / "calc.py").write_bytes(GOOD)
        (source / "inner" / "data.txt").write_bytes(b"x")
        for path in (source, source / "inner"):
            path.chmod(0o755)
        if what == "file":
            (source / "inner" / "data.txt").chmod(0)
            fragments = ["sub: inner/data.txt: cannot be read (PermissionError"]
        elif what == "folder":
            (source / "inner").chmod(0)
            fragments = ["sub: inner: cannot open the folder (PermissionError"]
        else:
            (source / "inner").chmod(0o644)  # listable, but nothing in it can be reached
            fragments = ["sub: inner/data.txt: cannot be read (PermissionError"]
    result = _unprivileged(_message_of(source, dest))
    assert result.startswith("BadInput: "), result
    _check_line(result.removeprefix("BadInput: "), fragments)
    assert list(dest.iterdir()) == []
    for path in short_tmp.rglob("*"):
        path.chmod(0o755)


# -- budgets: every entry counts, enforced while reading -------------------------------------

def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    zipped = _zip(tmp_path / "s.zip", {"calc.py": GOOD, "zeros.bin": bytes(15 * MiB)})
    assert zipped.stat().st_size < 100_000
    _refused(zipped, _dest(tmp_path), "s.zip", "compression ratio over 100:1")


def test_oversize_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake_mod, "MAX_FILE_BYTES", 1000)
    zipped = _zip(tmp_path / "s.zip", {"calc.py": GOOD, "big.bin": os.urandom(5000)}, zipfile.ZIP_STORED)
    _refused(zipped, _dest(tmp_path), "s.zip: big.bin: is 5000 bytes, over the 1000-byte limit per file")


def test_oversize_archive_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake_mod, "MAX_ARCHIVE_BYTES", 1000)
    zipped = _zip(tmp_path / "s.zip", {"calc.py": GOOD, "big.bin": os.urandom(5000)}, zipfile.ZIP_STORED)
    _refused(zipped, _dest(tmp_path), f"s.zip: is {zipped.stat().st_size} bytes, over the 1000-byte limit for an archive")


def test_too_many_files_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake_mod, "MAX_FILES", 3)
    zipped = _zip(tmp_path / "s.zip", {f"f{i}.txt": b"x" for i in range(5)} | {"calc.py": GOOD})
    _refused(zipped, _dest(tmp_path), "s.zip", "more than 3 files")


@pytest.mark.parametrize("kind", ["zip", "tar", "folder"])
def test_dropped_entries_count_against_the_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  kind: str) -> None:
    monkeypatch.setattr(intake_mod, "MAX_ENTRIES", 50)
    names = ["calc.py"] + [f"__pycache__/m{i}.pyc" for i in range(50)]
    if kind == "zip":
        source = _zip(tmp_path / "s.zip", {n: b"x" for n in names} | {"calc.py": GOOD})
    elif kind == "tar":
        source = _tar(tmp_path / "s.tar.gz", [_info(n) for n in names], {n: b"x" for n in names} | {"calc.py": GOOD})
    else:
        source = tmp_path / "sub"
        source.mkdir()
        (source / "calc.py").write_bytes(GOOD)
        for i in range(50):
            (source / f"m{i}.pyc").write_bytes(b"x")
    _refused(source, _dest(tmp_path / "a"), source.name, "more than 50 entries")
    if kind == "folder":
        return  # a folder's dropped files are not read, so their bytes cannot count
    monkeypatch.setattr(intake_mod, "MAX_ENTRIES", 10_000)
    monkeypatch.setattr(intake_mod, "MAX_FILE_BYTES", 1000)
    big = {"calc.py": GOOD, ".git/objects/pack/big.pack": os.urandom(5000)}
    if kind == "zip":
        source = _zip(tmp_path / "b.zip", big, zipfile.ZIP_STORED)
    else:
        source = _tar(tmp_path / "b.tar.gz", [_info(n) for n in big], big)
    _refused(source, _dest(tmp_path / "b"), ".git/objects/pack/big.pack: is 5000 bytes, over the 1000-byte limit")
    monkeypatch.setattr(intake_mod, "MAX_FILE_BYTES", 16 * MiB)
    monkeypatch.setattr(intake_mod, "MAX_TOTAL_BYTES", 20_000)
    many = {"calc.py": GOOD} | {f"__pycache__/{i}.pyc": os.urandom(5000) for i in range(5)}
    if kind == "zip":
        source = _zip(tmp_path / "t.zip", many, zipfile.ZIP_STORED)
    else:
        source = _tar(tmp_path / "t.tar.gz", [_info(n) for n in many], many)
    _refused(source, _dest(tmp_path / "t"), source.name, "submission is over 20000 bytes uncompressed")


def test_folder_listing_stops_at_the_entry_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake_mod, "MAX_ENTRIES", 50)
    folder = tmp_path / "sub"
    for i in range(51):
        (folder / f"d{i}").mkdir(parents=True)  # empty folders count too
    (folder / "calc.py").write_bytes(GOOD)
    _refused(folder, _dest(tmp_path), "sub: more than 50 entries")


def test_bomb_builder_gives_what_it_says() -> None:
    inflater = zlib.decompressobj(-15)
    out = sum(len(inflater.decompress(chunk)) for chunk in _zeros_stream(64 * MiB, before=b"head"))
    assert out + len(inflater.flush()) == 64 * MiB + 4 and inflater.eof


@pytest.mark.parametrize("where", ["__pycache__/big.bin", "data/big.bin"])
def test_zip_bomb_of_10_gib_is_refused_on_its_header(tmp_path: Path, where: str) -> None:
    zipped = _raw_zip(tmp_path / "s.zip", [_calc(), Raw(where.encode(), None, stream=lambda: _zeros_stream(BOMB),
                                                        usize=BOMB, needed=45)])
    assert zipped.stat().st_size < 16 * MiB
    _timed_refusal(zipped, _dest(tmp_path), f"s.zip: {where}: is {BOMB} bytes, over the 16777216-byte limit")


@pytest.mark.parametrize("where", ["__pycache__/big.bin", "data/big.bin"])
def test_zip_bomb_whose_header_understates_it_stops_while_inflating(tmp_path: Path, where: str) -> None:
    zipped = _raw_zip(tmp_path / "s.zip", [_calc(), Raw(where.encode(), None, stream=lambda: _zeros_stream(BOMB),
                                                        usize=1000, crc=0)])
    _timed_refusal(zipped, _dest(tmp_path), f"s.zip: {where}: inflates to more than the 1000 bytes")


def _tar_gz_bomb(path: Path, header: bytes, size: int, before: bytes = b"") -> Path:
    with open(path, "wb") as out:
        for chunk in _zeros_stream(size, before=before + header, wbits=31):
            out.write(chunk)
    return path


@pytest.mark.parametrize("where", ["__pycache__/big.bin", "data/big.bin"])
def test_tar_gz_bomb_of_10_gib_is_refused_on_its_header(tmp_path: Path, where: str) -> None:
    header = _info(where, BOMB).tobuf(tarfile.GNU_FORMAT)
    calc = _tar_bytes({"calc.py": GOOD})[:512 + (len(GOOD) + 511) // 512 * 512]  # no end-of-archive blocks
    tarred = _tar_gz_bomb(tmp_path / "s.tar.gz", header, BOMB, before=calc)
    assert tarred.stat().st_size < 16 * MiB
    _timed_refusal(tarred, _dest(tmp_path), f"s.tar.gz: {where}: is {BOMB} bytes, over the 16777216-byte limit")


def test_tar_gz_pax_header_bomb_stops_while_inflating(tmp_path: Path) -> None:
    header = _info("././@PaxHeader", BOMB, tarfile.XHDTYPE).tobuf(tarfile.GNU_FORMAT)
    tarred = _tar_gz_bomb(tmp_path / "s.tar.gz", header, BOMB)
    _timed_refusal(tarred, _dest(tmp_path), "s.tar.gz: tar stream inflates to over", "bomb?")


def test_tar_gz_with_10_gib_of_padding_stops_while_inflating(tmp_path: Path) -> None:
    tarred = _tar_gz_bomb(tmp_path / "s.tar.gz", _tar_bytes({"calc.py": GOOD}), BOMB)
    _timed_refusal(tarred, _dest(tmp_path), "s.tar.gz: tar stream inflates to over")


def _many_entries_zip(path: Path, count: int) -> Path:
    local, central = bytearray(), bytearray()
    for i in range(count):
        name = b"__pycache__/m%07d.pyc" % i
        offset = len(local)
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0) + name
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 0x031E, 20, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0, 0,
                               0, 0, 0o100644 << 16, offset) + name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, len(central), len(local), 0)
    path.write_bytes(bytes(local + central) + end)
    return path


def _many_entries_tar_gz(path: Path, count: int) -> Path:
    template = bytearray(_info("x").tobuf(tarfile.USTAR_FORMAT))
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    with open(path, "wb") as out:
        batch = bytearray()
        for i in range(count):
            block = bytearray(template)
            block[0:100] = (b"__pycache__/m%07d.pyc" % i).ljust(100, b"\0")
            block[148:156] = b" " * 8
            block[148:155] = b"%06o\0" % sum(block)
            batch += block
            if len(batch) >= MiB:
                out.write(packer.compress(bytes(batch)))
                batch.clear()
        out.write(packer.compress(bytes(batch) + bytes(1024)) + packer.flush())
    return path


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_entry_limit_plus_one_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.setattr(intake_mod, "MAX_ENTRIES", 100)
    build = _many_entries_zip if kind == "zip" else _many_entries_tar_gz
    _refused(build(tmp_path / f"ok.{kind}", 100), _dest(tmp_path / "a"), "missing required file")  # at the limit
    _refused(build(tmp_path / f"s.{kind}", 101), _dest(tmp_path / "b"), f"s.{kind}: more than 100 entries")


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_200k_entries_are_refused_fast_in_bounded_memory(tmp_path: Path, kind: str) -> None:
    build = _many_entries_zip if kind == "zip" else _many_entries_tar_gz
    source = build(tmp_path / f"s.{kind}", 200_000)
    tracemalloc.start()
    try:
        message, elapsed = _timed_refusal(source, _dest(tmp_path), f"s.{kind}: more than 10000 entries")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * MiB, f"peak {peak / MiB:.1f} MiB"
    print(f"{kind}: 200000 entries refused in {elapsed:.2f} s, peak {peak / MiB:.1f} MiB traced")
