"""Putting an export in place: checked first, written whole or not at all.

A file export (csv, jsonl) is written under a temporary name beside its destination and renamed
over it. A folder export (gradescope, junit) is built in a temporary folder beside its
destination, which then takes the destination's place; a previous export there is moved aside
first and removed after, and restored if the swap fails. A destination folder is replaced only
when it holds nothing but an earlier export of the same format. Folders created for the
destination are removed again when the export fails.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..batch.layout import CANDIDATES, LEDGER
from ..errors import BadInput, InfraError
from ..exercises import PROJECT_ROOT
from ..outdir import SYSTEM_TREES, shown

Owned = Callable[[Path], str | None]  # an existing destination folder -> None, or what in it is not ours


def dumps(value: Any, **options: Any) -> str:
    """value as strict JSON, ASCII, one line per call unless indent is given, ending in a newline.
    InfraError (one line) for NaN or Infinity, which the round's readers refuse to let in: the
    standard allows neither, and most JSON readers refuse them."""
    try:
        return json.dumps(value, ensure_ascii=True, allow_nan=False, **options) + "\n"
    except ValueError as exc:
        raise InfraError(f"the export would hold a value JSON cannot (nothing written): {exc}") from None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_destination(path: Path, label: str, *, round_folder: Path, owned: Owned | None = None,
                      suffix: str = "") -> Path:
    """The resolved destination, or BadInput naming the problem; writes nothing. owned is given for a
    folder export (it says what in an existing folder is not an earlier export), suffix for a file."""
    if os.fspath(path).strip() == "" or "\0" in os.fspath(path):
        raise BadInput(f"{label}: not a usable path")
    real = Path(os.path.realpath(path))
    if real == real.parent or any(_inside(real, tree) for tree in SYSTEM_TREES):
        raise BadInput(f"{label}: not a place for an export")
    round_real = Path(os.path.realpath(round_folder))
    if _inside(round_real, real):
        raise BadInput(f"{label}: {'is' if real == round_real else 'contains'} the round folder; pick another place")
    guarded = [(round_real / CANDIDATES, "the round's candidate reports"), (round_real / LEDGER, "the ledger"),
               (PROJECT_ROOT / "grader", "mlgrade's code"), (PROJECT_ROOT / "sandbox", "mlgrade's code")]
    for folder, what in guarded:
        if _inside(real, folder) or _inside(folder, real):
            raise BadInput(f"{label}: {'is inside' if _inside(real, folder) else 'contains'} {what} "
                           f"({shown(folder, 60)}); pick another place")
    if suffix and real.suffix != suffix:
        raise BadInput(f"{label}: a {suffix} file name is expected")
    try:
        info = os.stat(real)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise BadInput(f"{label}: cannot examine it: {exc.strerror or exc}") from None
    if info is not None:
        if owned is None and not stat.S_ISREG(info.st_mode):
            raise BadInput(f"{label}: exists and is not a regular file")
        if owned is not None:
            if not stat.S_ISDIR(info.st_mode):
                raise BadInput(f"{label}: exists and is not a folder")
            foreign = owned(real)
            if foreign is not None:
                raise BadInput(f"{label}: holds {foreign}, which an earlier export did not write; "
                               "use a new or empty folder")
    existing = real.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise BadInput(f"{label}: {shown(existing, 60)} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadInput(f"{label}: cannot write in {shown(existing, 60)} (read-only or no permission)")
    return real


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p folder; the folders it created, outermost first."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    created = []
    try:
        for path in reversed(missing):
            os.mkdir(path)
            created.append(path)
    except OSError:
        _remove_created(created)
        raise
    return created


def _remove_created(created: list[Path]) -> None:
    for folder in reversed(created):
        try:
            os.rmdir(folder)
        except OSError:
            break


def _failed(dest: Path, exc: OSError) -> InfraError:
    return InfraError(f"cannot write the export to {shown(dest)}: {exc.strerror or exc}")


def write_file(dest: Path, data: bytes) -> None:
    """Replace dest by a file holding data, atomically."""
    created: list[Path] = []
    temp = None
    try:
        created = _make_parents(dest.parent)
        fd, temp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # as open() would, not mkstemp's 0600
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, dest)
    except BaseException as exc:
        if temp is not None:
            try:
                os.unlink(temp)
            except OSError:
                pass
        _remove_created(created)
        if isinstance(exc, OSError):
            raise _failed(dest, exc) from None
        raise


def write_folder(dest: Path, files: dict[str, bytes]) -> None:
    """Replace the folder dest by one holding files (relative path -> content), atomically."""
    created: list[Path] = []
    staging: Path | None = None
    old: Path | None = None
    try:
        created = _make_parents(dest.parent)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
        os.chmod(staging, 0o777 & ~_umask())
        for relative, data in files.items():
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as handle:
                handle.write(data)
        if os.path.lexists(dest):
            old = staging.with_name(staging.name + ".old")
            os.rename(dest, old)
        os.rename(staging, dest)
        staging = None
    except BaseException as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if old is not None and not os.path.lexists(dest):
            os.rename(old, dest)  # the earlier export goes back where it was
            old = None
        _remove_created(created)
        if isinstance(exc, OSError):
            raise _failed(dest, exc) from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
