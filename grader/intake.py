"""Intake: turn a submission (folder, .zip or .tar.gz) into a clean folder of regular files.

Everything here runs on the host before any candidate code runs, so it only reads
archive metadata and bytes: no extraction API that could follow links or write outside
the destination. Anything suspicious is refused with one line (BadInput, exit 2).
"""
from __future__ import annotations

import ast
import hashlib
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import BadInput

MAX_FILES = 2000
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024
MAX_RATIO = 100  # uncompressed / compressed, per archive: beyond this it is a zip bomb
IGNORED_PARTS = {"__pycache__", ".git", ".ipynb_checkpoints", "__MACOSX", ".DS_Store"}


@dataclass(frozen=True)
class Submission:
    root: Path            # clean copy, regular files only
    source: str           # what the user named
    sha256: str           # of the archive file, or of the folder's tree
    files: tuple[str, ...]


def _safe_relpath(name: str, source: str) -> PurePosixPath | None:
    """The member's relative path, None for ignored entries; BadInput for unsafe names."""
    if "\\" in name or "\0" in name:
        raise BadInput(f"{source}: unsafe path {name!r} in submission")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise BadInput(f"{source}: absolute path {name!r} in submission")
    if ".." in path.parts:
        raise BadInput(f"{source}: path {name!r} escapes the submission with '..'")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or IGNORED_PARTS.intersection(parts) or parts[-1].endswith(".pyc"):
        return None
    return PurePosixPath(*parts)


class _Budget:
    def __init__(self, source: str, compressed: int | None) -> None:
        self.source, self.compressed, self.files, self.total = source, compressed, 0, 0

    def take(self, name: str, size: int) -> None:
        self.files += 1
        self.total += size
        if self.files > MAX_FILES:
            raise BadInput(f"{self.source}: more than {MAX_FILES} files in submission")
        if size > MAX_FILE_BYTES:
            raise BadInput(f"{self.source}: {name} is {size} bytes, over the {MAX_FILE_BYTES}-byte limit per file")
        if self.total > MAX_TOTAL_BYTES:
            raise BadInput(f"{self.source}: submission is over {MAX_TOTAL_BYTES} bytes uncompressed")
        if self.compressed and self.total > max(self.compressed * MAX_RATIO, 1 << 20):
            raise BadInput(f"{self.source}: compression ratio over {MAX_RATIO}:1 (zip bomb?)")


def _write(dest: Path, rel: PurePosixPath, data: bytes, source: str) -> None:
    target = dest.joinpath(*rel.parts)
    if target.exists():
        raise BadInput(f"{source}: {rel} appears twice in submission")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _from_zip(path: Path, dest: Path, source: str) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadInput(f"{source}: not a readable zip file ({exc})") from None
    budget = _Budget(source, path.stat().st_size)
    with archive:
        for info in archive.infolist():
            rel = _safe_relpath(info.filename, source)
            mode = info.external_attr >> 16
            if rel is None or info.is_dir():
                continue
            if stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # type bits are optional in zips
                raise BadInput(f"{source}: {info.filename} is not a regular file (links and devices are refused)")
            budget.take(info.filename, info.file_size)  # refuse on the header before inflating
            with archive.open(info) as member:  # read capped all the same: a header can lie
                data = member.read(MAX_FILE_BYTES + 1)
            if len(data) != info.file_size:
                raise BadInput(f"{source}: {info.filename}: size in the zip header does not match its data")
            _write(dest, rel, data, source)


def _from_tar(path: Path, dest: Path, source: str) -> None:
    try:
        archive = tarfile.open(path, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        raise BadInput(f"{source}: not a readable tar archive ({exc})") from None
    budget = _Budget(source, path.stat().st_size)
    with archive:
        for member in archive:
            rel = _safe_relpath(member.name, source)
            if rel is None or member.isdir():
                continue
            if not member.isfile():
                raise BadInput(f"{source}: {member.name} is not a regular file (links and devices are refused)")
            budget.take(member.name, member.size)
            extracted = archive.extractfile(member)
            _write(dest, rel, extracted.read(MAX_FILE_BYTES + 1) if extracted else b"", source)


def _from_dir(path: Path, dest: Path, source: str) -> None:
    budget = _Budget(source, None)
    for item in sorted(path.rglob("*")):
        rel = _safe_relpath(item.relative_to(path).as_posix(), source)
        if rel is None:
            continue
        mode = item.lstat().st_mode
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            raise BadInput(f"{source}: {rel} is not a regular file (links and devices are refused)")
        budget.take(str(rel), item.lstat().st_size)
        _write(dest, rel, item.read_bytes(), source)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256_tree(root: Path, files: list[str]) -> str:
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()


def _strip_single_top_folder(dest: Path, required: list[str]) -> Path:
    """Archives made by zipping a folder hold one top folder; look inside it when the
    required files are there and not at the top."""
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not all((dest / r).exists() for r in required):
        return entries[0]
    return dest


def intake(submission: Path, dest: Path, required_files: list[str]) -> Submission:
    """Copy a submission into dest (an empty folder) after every safety check.

    Raises BadInput for unsafe or malformed submissions, missing required files and
    Python files that do not parse.
    """
    source = str(submission)
    if not submission.exists():
        raise BadInput(f"{source}: no such file or folder")
    name = submission.name.lower()
    if submission.is_dir():
        _from_dir(submission, dest, source)
    elif name.endswith(".zip"):
        _from_zip(submission, dest, source)
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        _from_tar(submission, dest, source)
    else:
        raise BadInput(f"{source}: a submission is a folder, a .zip or a .tar.gz")
    root = _strip_single_top_folder(dest, required_files)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    missing = [r for r in required_files if r not in files]
    if missing:
        raise BadInput(f"{source}: missing required file{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    for rel in files:
        if rel.endswith(".py"):
            try:
                ast.parse((root / rel).read_bytes(), filename=rel)
            except SyntaxError as exc:
                raise BadInput(f"{source}: {rel}:{exc.lineno}: syntax error: {exc.msg}") from None
            except ValueError as exc:  # null bytes
                raise BadInput(f"{source}: {rel}: cannot be parsed as Python: {exc}") from None
    sha = _sha256_tree(root, files) if submission.is_dir() else _sha256_file(submission)
    return Submission(root=root, source=source, sha256=sha, files=tuple(files))
