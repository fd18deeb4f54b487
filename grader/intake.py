"""Intake: turn a submission (folder, .zip or .tar.gz) into a clean folder of regular files.

Everything here runs on the host before any candidate code runs, so it only reads
archive metadata and bytes: no extraction API that could follow links or write outside
the destination. Anything suspicious is refused with one line (BadInput, exit 2): the
submission and the entry, escaped and shortened, then the problem, at most MAX_MESSAGE
characters. On refusal nothing intake wrote is left in the destination.

Budgets are enforced while reading, never after: every entry an archive lists counts,
kept or dropped (`__pycache__`, `.git`, `*.pyc`), folders included; sizes are checked on
the header first and again on the bytes as they inflate, so a header that understates its
data, a bomb or a million-entry listing stops as soon as it crosses a limit.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import stat
import struct
import tarfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterator

from .cleanup import remove_tree
from .errors import BadInput, InfraError, SubmissionRefused

MAX_FILES = 2000                        # files kept
MAX_ENTRIES = 10_000                    # entries listed (files, folders, dropped ones): read no further
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024      # over every entry, dropped ones included
MAX_ARCHIVE_BYTES = MAX_TOTAL_BYTES + 4 * 1024 * 1024
MAX_RATIO = 100  # uncompressed / compressed, per archive: beyond this it is a zip bomb
MAX_DEPTH = 32                          # folders a path may go down
MAX_NAME_BYTES = 255                    # one path component (NAME_MAX)
MAX_PATH_BYTES = 1024
MAX_PARSE_BYTES = 2 * 1024 * 1024       # Python source syntax-checked here; the sandbox run imports the rest
MAX_MESSAGE = 200
IGNORED_PARTS = {"__pycache__", ".git", ".ipynb_checkpoints", "__MACOSX", ".DS_Store"}

CHUNK = 64 * 1024
TAR_HEADER_ALLOWANCE = 4096             # tar stream bytes allowed per entry besides its data (headers, padding)
TAR_STREAM_SLACK = 2 * 1024 * 1024      # ... and once (the header being read, the end-of-archive padding)
_NOFOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
_FILE_FLAGS = os.O_RDONLY | _NOFOLLOW
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW
_ZIP_ENCRYPTED = 0x0001 | 0x0040 | 0x2000  # traditional, strong, central-directory encryption
_ZIP_UTF8 = 0x0800


@dataclass(frozen=True)
class Submission:
    root: Path            # clean copy, regular files only
    source: str           # what the user named
    sha256: str           # of the archive file, or of the folder's tree
    files: tuple[str, ...]


# -- one-line messages ----------------------------------------------------------------------

def _escape(ch: str) -> str:
    code = ord(ch)
    if ch == "\\":
        return "\\\\"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if ch.isprintable():
        return ch
    if ch in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _show(text: str, limit: int) -> str:
    """text with control, invisible and non-UTF-8 characters escaped; over limit, its middle
    is cut (a third of the room for the start, the rest for the end, where a file name is)."""
    pieces = [_escape(ch) for ch in text]
    if sum(map(len, pieces)) <= limit:
        return "".join(pieces)
    room = max(limit - 3, 2)
    head: list[str] = []
    used = 0
    for piece in pieces:
        if used + len(piece) > room // 3:
            break
        head.append(piece)
        used += len(piece)
    tail: list[str] = []
    for piece in reversed(pieces[len(head):]):
        if used + len(piece) > room:
            break
        tail.append(piece)
        used += len(piece)
    return "".join(head) + "..." + "".join(reversed(tail))


def _bad(source: str, problem: str, name: str | None = None, at: str = "") -> BadInput:
    """BadInput with one line: `submission: entry: problem`, escaped and at most MAX_MESSAGE characters."""
    problem = _show(problem, 110)
    room = MAX_MESSAGE - len(problem) - 2
    if name is None:
        head = _show(source, max(20, room))
    else:
        shown = _show(name, max(20, room // 2)) + at
        head = _show(source, max(20, room - len(shown) - 2)) + ": " + shown
    return SubmissionRefused(f"{head}: {problem}"[:MAX_MESSAGE])


def _why(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISLNK, "symbolic link"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISDIR, "folder"), (stat.S_ISREG, "regular file")):
        if test(mode):
            return what
    return "special file"


# -- names, budget, output -----------------------------------------------------------------

def _safe_relpath(name: str, source: str) -> PurePosixPath | None:
    """The member's relative path, None for ignored entries; BadInput for unsafe names."""
    if any(0xDC80 <= ord(ch) <= 0xDCFF for ch in name):
        raise _bad(source, "name is not valid UTF-8", name)
    if "\\" in name or "\0" in name:
        raise _bad(source, "unsafe path (backslash or NUL in the name)", name)
    if not name.isprintable():  # control characters, newlines, bidi and other invisible ones
        raise _bad(source, "name has a control or invisible character", name)
    path = PurePosixPath(name)
    if path.is_absolute():
        raise _bad(source, "absolute path in submission", name)
    if ".." in path.parts:
        raise _bad(source, "path escapes the submission with '..'", name)
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or IGNORED_PARTS.intersection(parts) or parts[-1].endswith(".pyc"):
        return None
    if len(parts) > MAX_DEPTH:
        raise _bad(source, f"path is more than {MAX_DEPTH} folders deep", name)
    if any(len(p.encode()) > MAX_NAME_BYTES for p in parts):
        raise _bad(source, f"a name in the path is longer than {MAX_NAME_BYTES} bytes", name)
    if len(name.encode()) > MAX_PATH_BYTES:
        raise _bad(source, f"path is longer than {MAX_PATH_BYTES} bytes", name)
    return PurePosixPath(*parts)


class _Budget:
    """Limits on what one submission may list and hold, checked as entries are listed and read."""

    def __init__(self, source: str, compressed: int | None) -> None:
        self.source, self.compressed = source, compressed
        self.entries = self.files = self.total = 0

    def listed(self) -> None:
        """One more entry seen (file, folder, link, dropped or kept)."""
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            raise _bad(self.source, f"more than {MAX_ENTRIES} entries (files and folders, dropped ones included)")

    def declare(self, name: str, size: int) -> None:
        """An entry's size, from its header (archives) or lstat (folders), before reading it."""
        if size < 0:
            raise _bad(self.source, "header declares a negative size", name)
        if size > MAX_FILE_BYTES:
            raise _bad(self.source, f"is {size} bytes, over the {MAX_FILE_BYTES}-byte limit per file", name)
        self.total += size
        if self.total > MAX_TOTAL_BYTES:
            raise _bad(self.source, f"submission is over {MAX_TOTAL_BYTES} bytes uncompressed")
        if self.compressed is not None and self.total > max(self.compressed * MAX_RATIO, 1 << 20):
            raise _bad(self.source, f"compression ratio over {MAX_RATIO}:1 (zip bomb?)")

    def keep(self) -> None:
        self.files += 1
        if self.files > MAX_FILES:
            raise _bad(self.source, f"more than {MAX_FILES} files in submission")

    def stream_allowance(self) -> int:
        """Bytes a tar stream may inflate to so far: the declared data plus room for headers."""
        return self.total + self.entries * TAR_HEADER_ALLOWANCE + TAR_STREAM_SLACK


class _Out:
    """The clean copy under dest; refuses paths that appear twice or as both a file and a folder."""

    def __init__(self, dest: Path, source: str) -> None:
        self.dest, self.source = dest, source
        self.files: set[str] = set()
        self.dirs: set[str] = set()

    def _parents(self, parts: tuple[str, ...]) -> None:
        for i in range(1, len(parts)):
            key = "/".join(parts[:i])
            if key in self.files:
                raise _bad(self.source, "is both a file and a folder in the submission", key)
            self.dirs.add(key)

    def claim_dir(self, rel: PurePosixPath) -> None:
        key = rel.as_posix()
        if key in self.files:
            raise _bad(self.source, "is both a file and a folder in the submission", key)
        self._parents(rel.parts)
        self.dirs.add(key)

    def write(self, rel: PurePosixPath, chunks: Iterator[bytes]) -> None:
        key = rel.as_posix()
        if key in self.files:
            raise _bad(self.source, "appears twice in submission", key)
        if key in self.dirs:
            raise _bad(self.source, "is both a file and a folder in the submission", key)
        self._parents(rel.parts)
        self.files.add(key)
        target = self.dest.joinpath(*rel.parts)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
        except OSError as exc:
            raise InfraError(f"cannot write the intake copy of the submission: {_why(exc)}") from None
        handle = open(fd, "wb")
        try:
            for chunk in chunks:  # reading errors are the submission's (BadInput), writing ones are ours
                try:
                    handle.write(chunk)
                except OSError as exc:
                    raise InfraError(f"cannot write the intake copy of the submission: {_why(exc)}") from None
            try:
                handle.close()
            except OSError as exc:
                raise InfraError(f"cannot write the intake copy of the submission: {_why(exc)}") from None
        finally:
            if not handle.closed:
                try:
                    handle.close()
                except OSError:
                    pass


def _drain(chunks: Iterator[bytes]) -> None:
    for _ in chunks:
        pass


# -- folders --------------------------------------------------------------------------------

def _listdir(fd: int, shown: str, budget: _Budget, source: str) -> list[str]:
    names = []
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                budget.listed()  # counted as listed: a million-entry folder stops at the limit
                names.append(entry.name)
    except OSError as exc:
        raise _bad(source, f"cannot list the folder ({_why(exc)})", shown) from None
    return sorted(names)


def _file_chunks(handle: BinaryIO, size: int, shown: str, source: str) -> Iterator[bytes]:
    """The file's bytes; BadInput when they are not the size lstat gave (it changed while read)."""
    got = 0
    while got <= size:
        try:
            data = handle.read(min(CHUNK, size + 1 - got))
        except OSError as exc:
            raise _bad(source, f"cannot be read ({_why(exc)})", shown) from None
        if not data:
            break
        got += len(data)
        if got > size:
            break
        yield data
    if got != size:
        raise _bad(source, "changed size while being read", shown)


def _from_dir(path: Path, out: _Out, budget: _Budget, source: str) -> None:
    """Walk with directory file descriptors (no path is resolved twice, no link followed),
    depth first in name order; every error is a refusal, never a silently skipped folder."""
    try:
        top = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        raise _bad(source, f"cannot open the folder ({_why(exc)})") from None
    stack: list[tuple[int, tuple[str, ...], Iterator[str]]] = []
    try:
        stack.append((top, (), iter(_listdir(top, ".", budget, source))))
        while stack:
            fd, parts, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                os.close(fd)
                continue
            shown = "/".join(parts + (name,))
            rel = _safe_relpath(shown, source)
            if rel is None:
                continue  # dropped without being opened
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError as exc:
                raise _bad(source, f"cannot be read ({_why(exc)})", shown) from None
            if stat.S_ISDIR(st.st_mode):
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise _bad(source, f"cannot open the folder ({_why(exc)})", shown) from None
                try:
                    listing = _listdir(child, shown, budget, source)
                except BaseException:
                    os.close(child)
                    raise
                stack.append((child, parts + (name,), iter(listing)))
                continue
            if not stat.S_ISREG(st.st_mode):
                raise _bad(source, f"not a regular file (a {_kind(st.st_mode)}; links and devices are refused)",
                           shown)
            budget.declare(shown, st.st_size)
            budget.keep()
            try:
                file_fd = os.open(name, _FILE_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _bad(source, f"cannot be read ({_why(exc)})", shown) from None
            with open(file_fd, "rb", buffering=0) as handle:
                now = os.fstat(file_fd)
                if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                    raise _bad(source, "was replaced while being read", shown)
                out.write(rel, _file_chunks(handle, st.st_size, shown, source))
    finally:
        for fd, _, _ in stack:
            os.close(fd)


# -- archives -------------------------------------------------------------------------------

def _open_archive(path: Path, source: str) -> tuple[BinaryIO, int]:
    """The archive opened without following a link or blocking, checked to be a regular file
    of a sane size on the descriptor itself."""
    try:
        fd = os.open(path, _FILE_FLAGS)
    except OSError as exc:
        raise _bad(source, f"cannot be read ({_why(exc)})") from None
    handle = open(fd, "rb")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        handle.close()
        raise _bad(source, f"is a {_kind(st.st_mode)}, not a folder, a .zip or a .tar.gz")
    if st.st_size > MAX_ARCHIVE_BYTES:
        handle.close()
        raise _bad(source, f"is {st.st_size} bytes, over the {MAX_ARCHIVE_BYTES}-byte limit for an archive")
    return handle, st.st_size


def _sha256_handle(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    handle.seek(0)
    return digest.hexdigest()


def _zip_listing(fh: BinaryIO, source: str) -> None:
    """Walk the central directory record by record before zipfile reads it whole into a list:
    refuse more than MAX_ENTRIES records, and names flagged UTF-8 that are not."""
    endrec = zipfile._EndRecData(fh)  # the same end record zipfile will use
    if not endrec:
        raise _bad(source, "not a readable zip file (no end of central directory)")
    size_cd, offset_cd = endrec[zipfile._ECD_SIZE], endrec[zipfile._ECD_OFFSET]
    concat = endrec[zipfile._ECD_LOCATION] - size_cd - offset_cd
    if endrec[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
        concat -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
    if offset_cd + concat < 0:
        return  # zipfile refuses it
    fh.seek(offset_cd + concat)
    seen = done = 0
    while done < size_cd:
        head = fh.read(46)
        if len(head) < 46 or head[:4] != b"PK\x01\x02":
            return  # a corrupt directory: zipfile refuses it
        flags, = struct.unpack_from("<H", head, 8)
        name_len, extra_len, comment_len = struct.unpack_from("<3H", head, 28)
        seen += 1
        if seen > MAX_ENTRIES:
            raise _bad(source, f"more than {MAX_ENTRIES} entries (files and folders, dropped ones included)")
        raw = fh.read(name_len)
        if flags & _ZIP_UTF8:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _bad(source, "name is flagged UTF-8 but is not valid UTF-8",
                           raw.decode("utf-8", "surrogateescape")) from None
        fh.seek(extra_len + comment_len, 1)
        done += 46 + name_len + extra_len + comment_len


def _zip_chunks(fh: BinaryIO, info: zipfile.ZipInfo, source: str) -> Iterator[bytes]:
    """An entry's bytes, inflated here in CHUNK pieces: refused as soon as they pass the size
    its header declares, and at the end unless size and CRC-32 match."""
    name = info.orig_filename
    if info.flag_bits & _ZIP_ENCRYPTED:
        raise _bad(source, "is encrypted (not supported)", name)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _bad(source, f"uses compression method {info.compress_type}; only stored and deflated are supported",
                   name)
    fh.seek(info.header_offset)
    head = fh.read(30)
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        raise _bad(source, "its local header is missing or corrupt", name)
    _, _, flags, method, _, _, _, _, _, name_len, extra_len = struct.unpack("<4s5H3L2H", head)
    raw = fh.read(name_len)
    try:
        local = raw.decode("utf-8" if flags & _ZIP_UTF8 else "cp437")
    except UnicodeDecodeError:
        local = raw.decode("utf-8", "surrogateescape")
    if local != name:
        raise _bad(source, f"its local header names it {local[:40]} instead", name)
    if flags & _ZIP_ENCRYPTED:
        raise _bad(source, "is encrypted (not supported)", name)
    if method != info.compress_type:
        raise _bad(source, "local header and central directory disagree on the compression", name)
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise _bad(source, "stored entry whose compressed and uncompressed sizes differ", name)
    fh.seek(extra_len, 1)
    inflater = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
    left, produced, crc = info.compress_size, 0, 0
    while True:
        try:
            if inflater is not None and inflater.eof:
                break
            if inflater is not None and inflater.unconsumed_tail:
                piece = inflater.decompress(inflater.unconsumed_tail, CHUNK)
            else:
                if left == 0:
                    if inflater is None:
                        break
                    raise _bad(source, "compressed data ends early (truncated or corrupt)", name)
                data = fh.read(min(CHUNK, left))
                if not data:
                    raise _bad(source, "data is truncated (the archive ends inside it)", name)
                left -= len(data)
                piece = data if inflater is None else inflater.decompress(data, CHUNK)
        except zlib.error as exc:
            raise _bad(source, f"data is corrupt ({exc})", name) from None
        produced += len(piece)
        if produced > info.file_size:
            raise _bad(source, f"inflates to more than the {info.file_size} bytes its header declares", name)
        crc = zlib.crc32(piece, crc)
        yield piece
    if produced != info.file_size:
        raise _bad(source, f"holds {produced} bytes, its header declares {info.file_size}", name)
    if crc != info.CRC:
        raise _bad(source, "bad CRC-32 (the data is corrupt)", name)


def _from_zip(fh: BinaryIO, out: _Out, budget: _Budget, source: str) -> None:
    try:
        _zip_listing(fh, source)
        fh.seek(0)
        archive = zipfile.ZipFile(fh)
    except (BadInput, InfraError):
        raise
    except Exception as exc:  # whatever zipfile makes of a malformed directory
        raise _bad(source, f"not a readable zip file ({_why(exc)})") from None
    with archive:
        if len(archive.infolist()) > MAX_ENTRIES:
            raise _bad(source, f"more than {MAX_ENTRIES} entries (files and folders, dropped ones included)")
        for info in archive.infolist():
            name = info.orig_filename  # before zipfile cuts it at a NUL
            budget.listed()
            rel = _safe_relpath(name, source)
            mode = info.external_attr >> 16
            budget.declare(name, info.file_size)  # on the header, before inflating anything
            if info.is_dir() or stat.S_ISDIR(mode):
                if rel is not None:
                    out.claim_dir(rel)
                continue
            chunks = _zip_chunks(fh, info, source)
            if rel is None:
                _drain(chunks)  # dropped, but inflated and checked like any other entry
                continue
            if stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # type bits are optional in zips
                raise _bad(source, f"not a regular file (a {_kind(mode)}; links and devices are refused)", name)
            budget.keep()
            out.write(rel, chunks)


class _Counted:
    """The tar stream as it inflates, refused once it passes what its entries account for
    (a pax or long-name header, or padding, that inflates without end)."""

    def __init__(self, raw: BinaryIO, budget: _Budget, source: str) -> None:
        self.raw, self.budget, self.source, self.count = raw, budget, source, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(CHUNK if size is None or size < 0 else min(size, 1 << 20))
        self.count += len(data)
        allowance = self.budget.stream_allowance()
        if self.count > allowance:
            raise _bad(self.source, f"tar stream inflates to over {allowance} bytes, more than its entries "
                                    f"account for (bomb?)")
        return data


def _recording_tarinfo() -> type[tarfile.TarInfo]:
    """A TarInfo class that remembers why tarfile stopped reading: tarfile ends the archive
    silently at a corrupt or truncated header after the first one."""

    class Info(tarfile.TarInfo):
        stop: Exception | None = None

        @classmethod
        def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
            try:
                return super().fromtarfile(tar)
            except tarfile.HeaderError as exc:
                cls.stop = exc
                raise

    return Info


def _tar_chunks(archive: tarfile.TarFile, member: tarfile.TarInfo, name: str, source: str) -> Iterator[bytes]:
    handle = archive.extractfile(member)
    left = member.size
    while left > 0:
        data = handle.read(min(CHUNK, left)) if handle else b""
        if not data:
            raise _bad(source, "is truncated (the archive ends inside it)", name)
        left -= len(data)
        yield data


def _tar_problem(exc: Exception) -> str:
    text = str(exc)
    if isinstance(exc, EOFError) or "unexpected end" in text or isinstance(exc, tarfile.TruncatedHeaderError):
        return "is truncated (the archive ends early)"
    if isinstance(exc, (gzip.BadGzipFile, zlib.error)):
        return f"gzip data is corrupt ({_why(exc)})"
    return f"not a readable tar archive ({_why(exc)})"


def _from_tar(fh: BinaryIO, out: _Out, budget: _Budget, source: str) -> None:
    magic = fh.read(6)
    fh.seek(0)
    if not magic:
        raise _bad(source, "is empty")
    for prefix, what in ((b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"),
                         (b"PK\x03\x04", "zip")):
        if magic.startswith(prefix):
            raise _bad(source, f"is {what} data; a tar submission must be gzip-compressed or plain")
    gzipped = magic.startswith(b"\x1f\x8b")
    raw: BinaryIO = gzip.GzipFile(fileobj=fh, mode="rb") if gzipped else fh  # type: ignore[assignment]
    counted = _Counted(raw, budget, source)
    info_class = _recording_tarinfo()
    try:
        try:
            archive = tarfile.open(fileobj=counted, mode="r|", tarinfo=info_class,  # type: ignore[arg-type]
                                   encoding="utf-8", errors="surrogateescape")
        except tarfile.ReadError as exc:
            inner = "the gzip data holds no tar" if gzipped else "neither gzip-compressed nor a tar"
            raise _bad(source, f"not a readable tar archive ({inner}: {exc})") from None
        with archive:
            for member in archive:  # one member at a time: no list of them all is built first
                budget.listed()
                name = member.name
                rel = _safe_relpath(name, source)
                budget.declare(name, member.size)  # on the header; tarfile skips dropped data through `counted`
                if member.isdir():
                    if rel is not None:
                        out.claim_dir(rel)
                    continue
                if rel is None:
                    continue
                if not member.isreg():
                    raise _bad(source, "not a regular file (links and devices are refused)", name)
                if member.type == tarfile.GNUTYPE_SPARSE or member.sparse is not None:
                    raise _bad(source, "is a sparse file (not supported)", name)
                budget.keep()
                out.write(rel, _tar_chunks(archive, member, name, source))
            stop = info_class.stop
            if stop is not None and not isinstance(stop, tarfile.EOFHeaderError):
                if isinstance(stop, tarfile.EmptyHeaderError):
                    raise _bad(source, "is truncated (no end-of-archive marker)")
                if isinstance(stop, tarfile.TruncatedHeaderError):
                    raise _bad(source, "is truncated (the archive ends inside a header)")
                raise _bad(source, f"has a corrupt header after {budget.entries} entries ({_why(stop)})")
        while counted.read(CHUNK):  # the rest, counted: checks the gzip trailer (CRC, length)
            pass
    except (BadInput, InfraError):
        raise
    except Exception as exc:  # whatever tarfile or gzip make of malformed data
        raise _bad(source, _tar_problem(exc)) from None
    finally:
        if gzipped:
            raw.close()


# -- after the copy -------------------------------------------------------------------------

def _sha256_tree(root: Path, files: list[str]) -> str:
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()


def _root(out: _Out, required: list[str]) -> tuple[str | None, list[str]]:
    """Archives made by zipping a folder hold one top folder; look inside it when the
    required files are there and not at the top."""
    tops = {key.split("/", 1)[0] for key in out.files}
    if len(tops) == 1:
        top = next(iter(tops))
        if top not in out.files and not all(r in out.files for r in required):
            return top, sorted(key[len(top) + 1:] for key in out.files)
    return None, sorted(out.files)


def _check_python(root: Path, files: list[str], required: list[str], source: str) -> None:
    """Compile Python files (required ones first) until MAX_PARSE_BYTES of source: a 16 MiB
    file of statements takes a minute and gigabytes to parse, so larger ones are left to the
    sandboxed run. Nothing compiled here runs, and no warning reaches stderr."""
    left = MAX_PARSE_BYTES
    present = set(files)
    order = [r for r in required if r in present] + [f for f in files if f not in required]
    for rel in order:
        if not rel.endswith(".py"):
            continue
        size = (root / rel).stat().st_size
        if size > left:
            continue
        left -= size
        data = (root / rel).read_bytes()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                compile(data, rel, "exec", dont_inherit=True)
        except SyntaxError as exc:
            raise _bad(source, f"syntax error: {exc.msg}", rel, at=f":{exc.lineno or '?'}") from None
        except (ValueError, RecursionError, MemoryError, OverflowError) as exc:  # null bytes, nesting
            raise _bad(source, f"cannot be parsed as Python ({_why(exc)})", rel) from None


def _check_starter(starter: Path, files: list[str], source: str) -> None:
    """The workspace is the starter with the submission copied over it: refuse a file where
    the starter has a folder, and a folder where it has a file (copytree would fail)."""

    def kind(parts: list[str]) -> int | None:
        if any(p == "__pycache__" or p.endswith(".pyc") for p in parts):
            return None  # not copied from the starter
        try:
            return os.stat(starter.joinpath(*parts)).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise InfraError(f"cannot read the exercise's starter: {_why(exc)}") from None

    for rel in files:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            mode = kind(parts[:i])
            if mode is None:
                break
            if not stat.S_ISDIR(mode):
                raise _bad(source, "is a folder here but a file in the exercise's starter", "/".join(parts[:i]))
        else:
            mode = kind(parts)
            if mode is not None and stat.S_ISDIR(mode):
                raise _bad(source, "is a file here but a folder in the exercise's starter", rel)


def _remove_new(dest: Path, before: set[str]) -> None:
    try:
        for name in set(os.listdir(dest)) - before:
            remove_tree(dest / name)
    except OSError:
        pass


def intake(submission: Path, dest: Path, required_files: list[str], *, starter: Path | None = None) -> Submission:
    """Copy a submission into dest (an empty folder) after every safety check.

    Raises BadInput for unsafe or malformed submissions, missing required files, Python
    files that do not compile and, given the exercise's starter, paths that clash with it.
    On any refusal, whatever intake wrote into dest is removed.
    """
    try:
        before = set(os.listdir(dest))
    except OSError as exc:
        raise InfraError(f"intake folder {dest}: {_why(exc)}") from None
    try:
        return _intake(submission, dest, required_files, starter, str(submission))
    except BaseException:
        _remove_new(dest, before)
        raise


def _intake(submission: Path, dest: Path, required: list[str], starter: Path | None, source: str) -> Submission:
    try:
        mode = os.lstat(submission).st_mode  # nothing is opened before its type is known
    except FileNotFoundError:
        raise _bad(source, "no such file or folder") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise _bad(source, f"cannot be read ({_why(exc)})") from None
    if stat.S_ISLNK(mode):  # the operator named a link (the operator is trusted): grade what it points to
        submission = Path(os.path.realpath(submission))
        try:
            mode = os.lstat(submission).st_mode
        except (OSError, ValueError) as exc:
            raise _bad(source, f"is a link to something that cannot be read ({_why(exc)})") from None
    out, name = _Out(dest, source), submission.name.lower()
    sha = None
    if stat.S_ISDIR(mode):
        _from_dir(submission, out, _Budget(source, None), source)
    elif not stat.S_ISREG(mode):
        raise _bad(source, f"is a {_kind(mode)}, not a folder, a .zip or a .tar.gz")
    elif name.endswith((".zip", ".tar.gz", ".tgz", ".tar")):
        handle, size = _open_archive(submission, source)
        with handle:
            sha = _sha256_handle(handle)
            reader = _from_zip if name.endswith(".zip") else _from_tar
            reader(handle, out, _Budget(source, size), source)
    else:
        raise _bad(source, "a submission is a folder, a .zip or a .tar.gz")
    top, files = _root(out, required)
    root = dest / top if top else dest
    missing = [r for r in required if r not in files]
    if missing:
        raise _bad(source, f"missing required file{'s' if len(missing) > 1 else ''}: "
                           f"{', '.join(m[:60] for m in missing)}")
    if starter is not None:
        _check_starter(starter, files, source)
    _check_python(root, files, required, source)
    return Submission(root=root, source=source, sha256=sha or _sha256_tree(root, files), files=tuple(files))
