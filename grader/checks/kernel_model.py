"""The `model` check: the modelled GPU time of the submission's GPU path, relative to the reference's.

For graders without a GPU. Two sandbox runs feed it (harness/probe.py, mode "model"): one over
the submission, one over the reference (cached per exercise version: it is deterministic).
Each traced one call per model case under the Triton interpreter and built every launched
kernel for sm_90. On the host, `gpu_model.model_call` turns each trace into modelled H100
seconds; the case earns min(1, (reference seconds / submission seconds) / full_at) in tenths,
and the check earns its points x the mean over cases.

The trace ran in the candidate's process, so it is evidence, not a verdict. Work the trace
cannot see (NumPy, a C extension, another process) scores 0 with the reason named when it
shows: a trace that accounts for less traffic than one call must move (reading the logits,
writing the probabilities), or a call whose CPU time was mostly spent outside every recorded
kernel and PyTorch op (the call is traced twice; the second, warm one is judged).
"""
from __future__ import annotations

from types import ModuleType
from typing import Any, Literal

from pydantic import Field

from ..harness.wire import EVENT_IMPORT_ERROR, EVENT_MODEL_CASE
from ..errors import InfraError
from ..results import TestResult
from ..scoring import CheckScore, blocked_score, per_case_score, step_down
from .gpu_model import H100, Modelled, model_call
from .latency import STEP, number, replaced_after_import, us
from .base import CheckSpec, Context, Kind, Outcome, ReportPart
from .probe_output import ProbeOutput

LABEL = "modelled, not measured"
MIN_TRAFFIC = 0.9  # share of spec.bytes_moved(case) a trace must account for
MAX_UNEXPLAINED = 0.5     # share of the call's CPU time spent outside every recorded kernel and op...
MIN_UNEXPLAINED_S = 0.02  # ...that is also at least this much: work the trace cannot see


TRACE_ENV = {"TRITON_INTERPRET": "1", "TORCHDYNAMO_DISABLE": "1"}  # compiled code is modelled as eager ops


class ModelCase(ReportPart):
    """One input case of a model check. `parts` (one per Triton launch) is kept loose."""

    case: str
    modelled_us: float
    reference_modelled_us: float
    relative: float
    kernels: int
    syncs: int
    traffic_mb: float
    spill_mb: float
    minimal_mb: float
    parts: list[dict[str, Any]]


class ModelSection(ReportPart):
    """One model check: the modelled GPU time of the submission's GPU path (modelled, not measured)."""

    check: str
    target: str
    label: Literal["modelled, not measured"]
    entry: str | None
    cases: list[ModelCase]
    flags: list[str]


class ModelCheck(CheckSpec):
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


def grade(ctx: Context, checks: list[ModelCheck]) -> dict[str, Outcome]:
    return {check.id: _grade_one(ctx, check) for check in checks}


def _grade_one(ctx: Context, check: ModelCheck) -> Outcome:
    spec = ctx.spec_module()
    config = probe_config(spec, ctx.spec_path(), check)
    empty = ProbeOutput()
    blocked = ctx.blocked(check)
    if blocked:
        score, section = judge_model(check, spec, empty, empty, blocked)
        return Outcome(score, section=section)
    runs = []
    key = ("model-reference", ctx.exercise.version_hash, check.id)
    if key not in ctx.cache:  # deterministic: traced once per exercise version and grader
        reference_ws = ctx.reference_workspace()
        ctx.progress(f"{ctx.label}: {check.id}: tracing the reference's kernels (once per exercise version)")
        run_ref, ctx.cache[key] = ctx.probe(reference_ws, config, "cpu", 0, lambda p, out: p, env=TRACE_ENV)
        runs.append((f"{check.id}-reference", run_ref))
    ctx.progress(f"{ctx.label}: {check.id}: tracing the GPU path's kernels and building them for sm_90")
    run, (score, section) = ctx.probe(
        ctx.workspace, config, "cpu", ctx.seed,
        lambda probe, out: judge_model(check, spec, probe, ctx.cache[key], []), env=TRACE_ENV)
    return Outcome(score, runs=runs + [(check.id, run)], section=section)


def probe_config(spec: ModuleType, spec_path: str, check: ModelCheck) -> dict[str, Any]:
    from .gpu_model import MAX_ELEMS_PER_THREAD
    names = {"entry": spec.ENTRY, "triton_entry": spec.TRITON_ENTRY}
    return {"mode": "model", "spec": spec_path, "device": "cpu", "entries": [names[e] for e in check.entries],
            "cases": [c.name for c in spec.model_cases()],
            "sample_programs": check.sample_programs, "max_records": 5000,
            "max_elems_per_thread": MAX_ELEMS_PER_THREAD, "ptxas_timeout_s": 30.0}


def modelled_cases(probe: ProbeOutput) -> dict[str, tuple[dict[str, Any], Modelled | None]]:
    """case name -> (its model_case event, the modelled call or None when the trace failed)."""
    found: dict[str, tuple[dict[str, Any], Modelled | None]] = {}
    for event in probe.events(EVENT_MODEL_CASE):
        records = event.get("records") if isinstance(event.get("records"), list) else []
        builds = event.get("builds") if isinstance(event.get("builds"), dict) else {}
        ok = event.get("ok") is True and not event.get("truncated")
        found[str(event.get("case"))] = (event, model_call([r for r in records if isinstance(r, dict)],
                                                           {str(k): v for k, v in builds.items() if isinstance(v, dict)})
                                         if ok else None)
    return found


def _seconds(value: Any) -> float | None:
    seconds = number(value)
    return seconds if seconds is not None and 0 <= seconds < 1e6 else None


def judge_model(check: ModelCheck, spec: ModuleType, run: ProbeOutput, reference: ProbeOutput,
                blocked_by: list[str]) -> tuple[CheckScore, dict[str, Any]]:
    """Score the model check and return the report's model section."""
    section: dict[str, Any] = {"check": check.id, "target": H100.name, "label": LABEL, "entry": None,
                               "cases": [], "flags": []}
    flags: list[str] = section["flags"]
    if blocked_by:
        score, flag = blocked_score(check, blocked_by)
        flags.append(flag)
        return score, section
    if run.first(EVENT_IMPORT_ERROR):
        message = run.first(EVENT_IMPORT_ERROR).get("message", "")
        return CheckScore(check, (), 0.0, (f"-{check.points:.2f} pts: the module failed to import: {message}",)), section
    changed = replaced_after_import(run)
    if changed:
        flags.append(f"replaced after the candidate's import: {', '.join(changed)}")
    ours, theirs = modelled_cases(run), modelled_cases(reference)
    tests, fractions = [], []
    for case in spec.model_cases():
        nodeid = f"{check.id}::{case.name}"
        ref = theirs.get(case.name, ({}, None))[1]
        if ref is None or ref.seconds <= 0:
            raise InfraError(f"{check.id}: the reference's model trace of {case.name} failed; "
                             f"run `mlgrade validate` on the exercise")
        event, got = ours.get(case.name, ({}, None))
        section["entry"] = section["entry"] or event.get("entry")
        if got is None:
            why = (f"the traced call raised: {str(event.get('error', ''))[:300]}" if event.get("ok") is False
                   else "more kernels than the trace keeps (5000) in one call" if event.get("truncated")
                   else "no trace reported")
            tests.append(TestResult(nodeid, "failed", 0.0, why))
            fractions.append(0.0)
            continue
        minimal = spec.bytes_moved(case)
        relative = ref.seconds / got.seconds if got.seconds > 0 else 0.0  # nothing seen: flagged below
        row = {"case": case.name, "modelled_us": round(got.seconds * 1e6, 2),
               "reference_modelled_us": round(ref.seconds * 1e6, 2), "relative": round(relative, 3),
               "kernels": got.kernels, "syncs": got.syncs, "traffic_mb": round(got.bytes / 1e6, 2),
               "spill_mb": round(got.spill_bytes / 1e6, 2), "minimal_mb": round(minimal / 1e6, 2),
               "parts": got.parts[:20]}
        section["cases"].append(row)
        call = next((r for r in event.get("records", []) if isinstance(r, dict) and r.get("kind") == "call"), {})
        cpu, explained = _seconds(call.get("cpu_s")), _seconds(call.get("explained_cpu_s"))
        if cpu is None or explained is None:
            flags.append(f"{case.name}: the trace did not report the call's CPU time")
        elif cpu - explained > max(MIN_UNEXPLAINED_S, MAX_UNEXPLAINED * cpu):
            flags.append(f"{case.name}: {cpu - explained:.2f} s of the traced call's {cpu:.2f} s of CPU time was "
                         "spent outside every kernel and PyTorch op the trace records (Python, NumPy or other work "
                         "the model cannot price): this GPU path cannot be modelled")
        if got.bytes + got.spill_bytes < MIN_TRAFFIC * minimal:
            flags.append(f"{case.name}: the trace saw {got.bytes / 1e6:.1f} MB of traffic, less than the "
                         f"{minimal / 1e6:.1f} MB one call must move: part of the work ran where it cannot be modelled")
        fraction = step_down(max(0.0, relative) / check.full_at, STEP)
        fractions.append(fraction)
        tests.append(TestResult(nodeid, "passed" if fraction >= 1.0 else "failed", 0.0, _feedback(row, got, fraction)))
    return per_case_score(check, tests, fractions, flags), section


def _feedback(row: dict[str, Any], got: Modelled, fraction: float) -> str:
    """One line: the modelled time against the reference's, and the largest cost named."""
    costs = []
    if got.spill_bytes > 0.2 * got.bytes:
        costs.append(f"register spills add {got.spill_bytes / 1e6:.0f} MB")
    if got.kernels > 4:
        costs.append(f"{got.kernels} kernels per call")
    if got.syncs:
        costs.append(f"{got.syncs} device syncs")
    if got.bytes > 2 * row["minimal_mb"] * 1e6:
        costs.append(f"{got.bytes / 1e6:.0f} MB moved for {row['minimal_mb']:.0f} MB of inputs and outputs")
    detail = f" ({'; '.join(costs)})" if costs else ""
    return (f"modelled {us(row['modelled_us'])} on an H100 vs the reference's {us(row['reference_modelled_us'])}"
            f"{detail} -> {fraction:.0%} of this case's points ({LABEL})")



def markdown(section: dict[str, Any]) -> list[str]:
    """The section in report.md."""
    return [f"## Modelled GPU time ({section['label']}): {section['target']}", "",
            f"Entry modelled: `{section['entry']}`. Times are one call, as the cost model prices it.", "",
            "| Case | Modelled | Reference (modelled) | Kernels | Syncs | Traffic MB | Spills MB | Minimal MB |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"] + [
        f"| {c['case']} | {c['modelled_us']:.0f} us | {c['reference_modelled_us']:.0f} us | {c['kernels']} "
        f"| {c['syncs']} | {c['traffic_mb']:.0f} | {c['spill_mb']:.0f} | {c['minimal_mb']:.0f} |"
        for c in section["cases"]]


KIND = Kind(name="model", markdown=markdown, spec=ModelCheck, grade=grade, priced_by_measurement=True, section="model",
            section_model=ModelSection,
            section_doc="one entry per model check: the modelled GPU time of the submission's GPU path "
                        "(modelled, not measured)",
            needs_spec=True)
