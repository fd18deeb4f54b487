"""The `--out` folder of `mlgrade grade` and `mlgrade kit`: checked and claimed before any work.

`claim_out` refuses (BadInput, one line naming the path) an `--out` that is `/`, under /proc,
/sys or /dev, under a regular file, not writable, inside (or equal to, or a parent of) the
submission, the exercise or mlgrade's own exercises, reference and code, or an existing folder
holding anything but what the command itself writes there. It then creates the folder and writes
and deletes a probe file in it, so an unwritable place fails before the grading starts; whatever
it created goes away again if the command fails. `write_files` writes the results atomically and
turns a late failure (disk full, ...) into one line (InfraError, exit 3).
"""
from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from .errors import BadInput, InfraError

SYSTEM_TREES = (Path("/proc"), Path("/sys"), Path("/dev"))
PATH_SHOWN_MAX = 80  # characters of a path in a message; longer ones lose their middle


def _escape_char(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return repr(char)[1:-1]


def one_line(text: str) -> str:
    """text with control characters, line breaks and undecodable bytes escaped repr-style."""
    return "".join(c if c.isprintable() else _escape_char(c) for c in str(text))


def shown(path: str | os.PathLike[str], limit: int = PATH_SHOWN_MAX) -> str:
    """A path for a one-line message: as typed when plain, repr-style when it holds control
    characters or bytes that are not UTF-8, shortened in the middle when very long."""
    text = os.fspath(path)
    plain = text.isprintable() and one_line(text) == text and text.strip() == text and text != ""
    text = text if plain else "'" + one_line(text).replace("'", "\\'") + "'"
    if len(text) > limit:
        head = (limit - 1) // 3  # the end of a path says more than its start
        text = text[:head] + "…" + text[-(limit - 1 - head):]
    return text


@dataclass
class Protected:
    """A folder --out must stay out of (and must not contain)."""
    path: Path
    what: str  # "the submission", "the exercise folder", ...


@dataclass
class Out:
    """A claimed --out folder: its resolved path and the folders this command created for it."""
    arg: str
    path: Path
    created: list[Path] = field(default_factory=list)  # outermost first

    def remove_created(self) -> None:
        """Remove the folders this command created (only while they are empty)."""
        for folder in reversed(self.created):
            try:
                os.rmdir(folder)
            except OSError:
                break


def _label(arg: str, real: Path) -> str:
    if os.path.abspath(arg) == str(real):
        return f"--out {shown(arg)}"
    return f"--out {shown(arg, 60)} (= {shown(real, 60)})"


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _first_existing(real: Path, label: str) -> tuple[Path, os.stat_result]:
    """The nearest ancestor of real (or real itself) that exists, and its stat."""
    current = real
    while True:
        try:
            return current, os.stat(current)
        except (FileNotFoundError, NotADirectoryError):
            if current.parent == current:
                raise BadInput(f"{label}: no part of the path exists") from None
            current = current.parent
        except OSError as exc:
            raise BadInput(f"{label}: cannot examine {shown(current, 60)}: {exc.strerror or exc}") from None


def check_out(arg: str, *, allowed: Iterable[str] = (), protected: Iterable[Protected] = ()) -> Path:
    """The resolved --out folder, or BadInput naming the problem. Writes nothing.

    allowed: names of the regular files an existing --out folder may already hold (the command's
    own output from an earlier run, which it overwrites); with none, an existing folder must be empty.
    """
    if arg == "" or arg.strip() == "":
        raise BadInput(f"--out {shown(arg)}: empty path")
    if "\0" in arg:
        raise BadInput(f"--out {shown(arg)}: NUL character in the path")
    real = Path(os.path.realpath(arg))
    label = _label(arg, real)
    if real == real.parent:
        raise BadInput(f"{label}: the root folder is never an output folder")
    for tree in SYSTEM_TREES:
        if _inside(real, tree):
            raise BadInput(f"{label}: under {tree}, which is not a place for files")
    guards = [(Path(os.path.realpath(guard.path)), guard.what) for guard in protected]
    for folder, what in guards:
        if _inside(real, folder):
            where = "is" if real == folder else "is inside"
            raise BadInput(f"{label}: {where} {what} ({shown(folder, 60)}); pick a folder outside it")
    for folder, what in guards:
        if _inside(folder, real):
            raise BadInput(f"{label}: contains {what} ({shown(folder, 60)}); pick a folder outside it")
    existing, info = _first_existing(real, label)
    if existing == real:
        if not stat.S_ISDIR(info.st_mode):
            raise BadInput(f"{label}: exists and is not a folder")
        _check_contents(real, label, set(allowed))
    elif not stat.S_ISDIR(info.st_mode):
        raise BadInput(f"{label}: {shown(existing, 60)} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadInput(f"{label}: cannot write in {shown(existing, 60)} (read-only or no permission)")
    return real


def _listed(names: list[str]) -> str:
    """a, b and c"""
    return " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"


def _check_contents(folder: Path, label: str, allowed: set[str]) -> None:
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name in allowed and entry.is_file(follow_symlinks=False):
                    continue
                if allowed:
                    raise BadInput(f"{label}: folder holds other files than {_listed(sorted(allowed))} "
                                   f"(e.g. {shown(entry.name, 40)}); use a new or empty folder")
                raise BadInput(f"{label}: folder exists and is not empty; use a new or empty folder")
    except OSError as exc:
        raise BadInput(f"{label}: cannot list the folder: {exc.strerror or exc}") from None


def _create(out: Out, label: str) -> None:
    """mkdir -p out.path (recording what was made), then write and delete a probe file in it."""
    missing = []
    current = out.path
    while not os.path.isdir(current):
        missing.append(current)
        current = current.parent
    try:
        for folder in reversed(missing):
            os.mkdir(folder)
            out.created.append(folder)
        fd, probe = tempfile.mkstemp(prefix=".mlgrade-probe-", dir=out.path)
        try:
            os.write(fd, b"probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        out.remove_created()
        raise BadInput(f"{label}: cannot write there: {exc.strerror or exc}") from None


@contextmanager
def claim_out(arg: str, *, allowed: Iterable[str] = (), protected: Iterable[Protected] = ()) -> Iterator[Out]:
    """Check --out, create it and prove it writable; on any failure inside the block (a refused
    submission, an interrupt, ...) remove again the folders that were created for it."""
    real = check_out(arg, allowed=allowed, protected=protected)
    out = Out(arg=arg, path=real)
    _create(out, _label(arg, real))
    try:
        yield out
    except BaseException:
        out.remove_created()
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_files(out: Out, files: dict[str, str]) -> None:
    """Write files (name -> text) into the claimed folder, each replaced atomically (a symlink
    planted under one of the names is replaced, never followed). InfraError, one line, on failure."""
    staged: list[tuple[str, str]] = []
    try:
        for name, text in files.items():
            fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=out.path)
            staged.append((temp, name))
            os.fchmod(fd, 0o666 & ~_umask())  # as open() would, not mkstemp's 0600
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        for temp, name in staged:
            os.replace(temp, out.path / name)
    except OSError as exc:
        for temp, _ in staged:
            try:
                os.unlink(temp)
            except OSError:
                pass
        out.remove_created()
        raise InfraError(f"cannot write the reports to {shown(out.path)}: {exc.strerror or exc}") from None
