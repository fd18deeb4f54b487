"""The exercise manifest (`exercises/<id>/exercise.toml`): parsing and validation.

A wrong manifest is refused with one line naming the file, the key and the problem.
"""
from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from .errors import BadInput

from .checks import KINDS
from .checks.base import SLUG, Strict as _Strict
from .checks.pytest_check import matches  # noqa: F401  (re-exported: node-id prefixes are part of the format)


class LimitsSpec(_Strict):
    wall_s: float = Field(600, gt=0, le=24 * 3600)
    test_timeout_s: float = Field(30, gt=0)
    memory_mb: int = Field(4096, ge=64)
    cpus: int = Field(2, ge=1)
    pids: int = Field(512, ge=8)
    output_kb: int = Field(256, ge=1)
    file_size_mb: int = Field(64, ge=1)


def _kind(value: object) -> str:
    return value.get("kind", "pytest") if isinstance(value, dict) else getattr(value, "kind", "pytest")


# The kind list: each registered kind's spec model, told apart by its `kind` key (default pytest).
CHECK_KINDS = tuple(KINDS)
Check = Annotated[Union[tuple(Annotated[kind.spec, Tag(name)] for name, kind in KINDS.items())],  # type: ignore[misc]
                  Discriminator(_kind, custom_error_type="check_kind",
                                custom_error_message=f"kind must be one of {', '.join(CHECK_KINDS)}")]


class Calibration(_Strict):
    name: str = Field(pattern=SLUG)
    band: tuple[float, float]
    flaw: str = Field(min_length=1)
    checks: list[str] = Field(min_length=1)  # where its flaw costs points, and nowhere else (one bug, one deduction)

    @field_validator("band")
    @classmethod
    def _band_order(cls, band: tuple[float, float]) -> tuple[float, float]:
        low, high = band
        if not 0 <= low <= high <= 100:
            raise ValueError("band must be [low, high] with 0 <= low <= high <= 100")
        return band


class Manifest(_Strict):
    id: str = Field(pattern=SLUG)
    title: str = Field(min_length=1)
    summary: str = Field(min_length=1)
    level: Literal["junior", "mid", "senior"]
    time_budget_min: int = Field(gt=0)
    device: Literal["cpu", "cuda", "any"]
    required_files: list[str] = Field(min_length=1)
    limits: LimitsSpec = LimitsSpec()
    checks: list[Check] = Field(min_length=1)
    calibration: list[Calibration] = []
    starter_passes: dict[str, str] = {}
    spec: str | None = None  # trusted spec module for outputs/latency checks, relative to the exercise folder
    feedback: Literal["none", "hints"] = "hints"  # "none": hidden checks' hints are never listed (grader/hints.py)

    @model_validator(mode="after")
    def _unique_ids(self) -> "Manifest":
        for what, names in (("check id", [c.id for c in self.checks]),
                            ("calibration name", [c.name for c in self.calibration])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {what}: {', '.join(dupes)}")
        for path in [*self.required_files, *([self.spec] if self.spec else [])]:
            if path.startswith("/") or ".." in Path(path).parts:
                raise ValueError(f"path {path!r} must be relative and stay inside its folder")
        ids = {c.id for c in self.checks}
        kinds, order = {c.id: c.kind for c in self.checks}, {name: i for i, name in enumerate(KINDS)}
        for check in self.checks:
            if KINDS[check.kind].needs_spec and not self.spec:
                raise ValueError(f"check {check.id} of kind {check.kind} needs the top-level key spec")
            for needed in getattr(check, "requires", []):
                if needed not in ids or needed == check.id:
                    raise ValueError(f"check {check.id} requires {needed!r}, which is not another check")
                if order[kinds[needed]] > order[check.kind]:
                    raise ValueError(f"check {check.id} requires {needed!r}, a {kinds[needed]} check, which is "
                                     f"graded after {check.kind} checks")
        for calibration in self.calibration:
            for named in calibration.checks:
                if named not in ids:
                    raise ValueError(f"calibration {calibration.name} names check {named!r}, which is not a check")
        for check in self.checks:  # after the rest, so that a wrong `tests` or `kind` is named first
            if check.hints and not check.takes_hints:
                raise ValueError(f"check {check.id}: a {check.kind} check takes no hints")
            for key in check.hints:
                if not check.hint_key_owned(key):
                    raise ValueError(f"check {check.id}: hint key {key!r} names no test of this check")
        return self

    @property
    def total_points(self) -> float:
        return sum(c.points for c in self.checks)


def _where(loc: tuple) -> str:
    # A check's location carries the union's tag after its index (checks.1.pytest.points): drop it.
    parts = [str(p) for i, p in enumerate(loc) if not (p in CHECK_KINDS and i and isinstance(loc[i - 1], int))]
    return ".".join(parts) or "(top level)"


def load_manifest(path: Path) -> Manifest:
    """Parse and validate one exercise.toml; raise BadInput with one line on any problem."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{path}: manifest not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not valid TOML: {exc}") from None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        msg = err["msg"].removeprefix("Value error, ")
        raise BadInput(f"{path}: key {_where(err['loc'])}: {msg}{more}") from None
    if manifest.id != path.parent.name:
        raise BadInput(f"{path}: key id: {manifest.id!r} must equal the folder name {path.parent.name!r}")
    return manifest


def tree_hash(*roots: Path) -> str:
    """sha256 over the relative paths and bytes of every file under roots (stable order)."""
    digest = hashlib.sha256()
    for root in roots:
        if not root.exists():
            continue
        files = [root] if root.is_file() else root.rglob("*")
        for file in sorted(p for p in files if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(file.relative_to(root.parent)).encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()


