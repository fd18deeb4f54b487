"""The exercise manifest (`exercises/<id>/exercise.toml`): parsing and validation.

A wrong manifest is refused with one line naming the file, the key and the problem.
"""
from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator,
                      model_validator)

from .errors import BadInput

SLUG = r"^[a-z0-9][a-z0-9-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitsSpec(_Strict):
    wall_s: float = Field(600, gt=0, le=24 * 3600)
    test_timeout_s: float = Field(30, gt=0)
    memory_mb: int = Field(4096, ge=64)
    cpus: int = Field(2, ge=1)
    pids: int = Field(512, ge=8)
    output_kb: int = Field(256, ge=1)
    file_size_mb: int = Field(64, ge=1)


class _CheckBase(_Strict):
    id: str = Field(pattern=SLUG)
    title: str = Field(min_length=1)
    visibility: Literal["public", "hidden"]
    points: float = Field(gt=0)
    device: Literal["cpu", "cuda", "any"] = "any"  # gradings on another device leave the check out

    def owns(self, nodeid: str) -> bool:
        """True when the pytest node id belongs to this check (only pytest checks own tests)."""
        return False


class PytestCheck(_CheckBase):
    """Points for the pytest tests under the given node-id prefixes."""

    kind: Literal["pytest"] = "pytest"
    tests: list[str] = Field(min_length=1)
    timeout_s: float | None = Field(None, gt=0)
    partial_credit: bool = True  # False: the points need every test of the check to pass (an invariant)

    @model_validator(mode="after")
    def _tests_match_visibility(self) -> "PytestCheck":
        for pattern in self.tests:
            if not pattern.startswith(self.visibility + "/"):
                raise ValueError(f"test {pattern!r} is not under {self.visibility}/ like its check")
        return self

    def owns(self, nodeid: str) -> bool:
        return any(matches(pattern, nodeid) for pattern in self.tests)


class OutputsCheck(_CheckBase):
    """Points for outputs that match the spec's float64 reference, compared on the host.

    The sandbox only runs the candidate's function on inputs made from the spec's cases and
    writes what came out; the verdict is computed outside the candidate's process.
    """

    kind: Literal["outputs"]
    entry: Literal["entry", "triton_entry"] = "entry"  # which of the spec's ENTRY / TRITON_ENTRY to call
    mode: Literal["cpu", "interpret", "cuda"] = "cpu"  # interpret: Triton kernels on CPU (TRITON_INTERPRET=1)
    partial_credit: bool = True


class LatencyCheck(_CheckBase):
    """Points for the speed-up over the baseline, relative to the reference's speed-up in the same grading."""

    kind: Literal["latency"]
    requires: list[str] = []  # check ids that must pass fully, else this check scores 0
    full_at: float = Field(0.85, gt=0, le=1)  # fraction of the reference's log-speed-up that earns full points
    baseline_agreement: float = Field(2.0, gt=1)  # max ratio of in-run to clean-process baseline times (CPU noise)
    wall_agreement: float = Field(0.5, gt=0, le=1)  # min (summed timed calls / wall clock of the same calls)
    threads: int = Field(1, ge=1)  # CPU timing threads: one is the steadiest on a shared machine
    partial_credit: bool = True


class ModelCheck(_CheckBase):
    """Points for the modelled GPU time of the submission's GPU path, relative to the reference's.

    For CPU graders: the spec's `model_cases()` are traced under the Triton interpreter (the first
    of `entries` the submission defines), every launched kernel is built for sm_90, and the host
    models one call on an H100 (grader/checks/gpu_model.py). Modelled, not measured: the report
    says so."""

    kind: Literal["model"]
    entries: list[Literal["entry", "triton_entry"]] = ["triton_entry", "entry"]
    requires: list[str] = []  # check ids whose cases must all pass (or be skipped), else 0
    full_at: float = Field(0.8, gt=0, le=1)  # modelled throughput relative to the reference for full points
    sample_programs: int = Field(32, ge=1)  # programs interpreted per kernel launch
    partial_credit: bool = True


def _kind(value: object) -> str:
    return value.get("kind", "pytest") if isinstance(value, dict) else getattr(value, "kind", "pytest")


CHECK_KINDS = ("pytest", "outputs", "latency", "model")
Check = Annotated[Union[Annotated[PytestCheck, Tag("pytest")], Annotated[OutputsCheck, Tag("outputs")],
                        Annotated[LatencyCheck, Tag("latency")], Annotated[ModelCheck, Tag("model")]],
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
        for check in self.checks:
            if check.kind in ("outputs", "latency", "model") and not self.spec:
                raise ValueError(f"check {check.id} of kind {check.kind} needs the top-level key spec")
            for needed in getattr(check, "requires", []):
                if needed not in ids or needed == check.id:
                    raise ValueError(f"check {check.id} requires {needed!r}, which is not another check")
        for calibration in self.calibration:
            for named in calibration.checks:
                if named not in ids:
                    raise ValueError(f"calibration {calibration.name} names check {named!r}, which is not a check")
        return self

    @property
    def total_points(self) -> float:
        return sum(c.points for c in self.checks)


def matches(pattern: str, nodeid: str) -> bool:
    """Node-id prefix match: a file, file::test, or file::test[param], never a partial name."""
    return nodeid == pattern or nodeid.startswith(pattern + "::") or nodeid.startswith(pattern + "[")


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


