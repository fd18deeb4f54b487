"""The `outputs` check: compare the candidate's outputs with the spec's float64 reference, on the host.

Inside the sandbox the probe only ran the candidate's function; here the inputs are made
again from each case's seed, the reference is computed in float64, and the spec's
`compare` decides. Inputs are also checked unchanged (digest after the call) and the
output's type and device come from the probe's description of what was returned.
"""
from __future__ import annotations

import dataclasses

from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Literal

from ..feedback import IMPORT_FAILED as FEEDBACK_IMPORT_FAILED, hidden_counts
from ..harness.wire import EVENT_CASE, EVENT_ENV, EVENT_IMPORT_ERROR, EVENT_MISSING_ENTRY, EVENT_STARTED
from ..harness.probe import inputs_digest
from ..results import TestResult
from ..scoring import CheckScore, fraction_score
from ..scrub import HiddenText
from .base import CheckSpec, Context, Kind, Outcome
from .probe_output import ProbeOutput, load_output

SPEC_ENTRY = {"entry": "ENTRY", "triton_entry": "TRITON_ENTRY"}
NOT_ATTEMPTED = "not attempted: "
IMPORT_FAILED = "import failed: "


class OutputsCheck(CheckSpec):
    """Points for outputs that match the spec's float64 reference, compared on the host.

    The sandbox only runs the candidate's function on inputs made from the spec's cases and
    writes what came out; the verdict is computed outside the candidate's process. Its tests are
    `<check id>::<case name>`; a hidden one may give hints keyed by the check id (every case) or
    one case's node id.
    """

    takes_hints: ClassVar[bool] = True

    kind: Literal["outputs"]
    entry: Literal["entry", "triton_entry"] = "entry"  # which of the spec's ENTRY / TRITON_ENTRY to call
    mode: Literal["cpu", "interpret", "cuda"] = "cpu"  # interpret: Triton kernels on CPU (TRITON_INTERPRET=1)
    partial_credit: bool = True

    def hint_key_owned(self, key: str) -> bool:
        return key == self.id or key.startswith(self.id + "::")

    def hint_targets(self, exercise: Any, collected: list[str]) -> list[str] | None:
        from .spec import load_spec
        spec = load_spec(exercise.root / str(exercise.manifest.spec))
        return [f"{self.id}::{case.name}" for case in spec.correctness_cases(self.mode)]


def grade(ctx: Context, checks: list[OutputsCheck]) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    for check in checks:
        outcomes[check.id] = outcome = _grade_one(ctx, check)
        ctx.import_hung = ctx.import_hung or outcome.import_hung
    return outcomes


def _grade_one(ctx: Context, check: OutputsCheck) -> Outcome:
    spec = ctx.spec_module()
    device = "cuda" if check.mode == "cuda" else "cpu"
    config = probe_config(check, spec, ctx.spec_path(), device)
    env = {"TRITON_INTERPRET": "1"} if check.mode == "interpret" else None
    config["import_timeout"] = ctx.exercise.manifest.limits.test_timeout_s
    if ctx.import_hung:  # it would hang again: judged without a run
        hung = ProbeOutput(lines=[{"event": EVENT_STARTED}, {"event": EVENT_IMPORT_ERROR, "message": ctx.import_hung}])
        return Outcome(judge_outputs(check, spec, hung, ctx.workspace, device))
    ctx.progress(f"{ctx.label}: {check.id}: {len(config['cases'])} cases, outputs compared on the host")

    def judge(probe: ProbeOutput, out: Path) -> Outcome:
        error = probe.first(EVENT_IMPORT_ERROR) or {}
        hung = str(error.get("message", ""))[:300] if error.get("hung") is True else None
        return Outcome(judge_outputs(check, spec, probe, out, device), env=probe.first(EVENT_ENV) or {},
                       import_hung=hung)

    run, outcome = ctx.probe(ctx.workspace, config, device, ctx.seed, judge, env=env)
    outcome.runs = [(check.id, run)]
    return outcome


def probe_config(check: OutputsCheck, spec: ModuleType, spec_path: str, device: str) -> dict[str, Any]:
    """What probe.py needs for this check (the case names fix the order)."""
    return {"mode": "outputs", "spec": spec_path, "spec_mode": check.mode, "device": device,
            "entry": getattr(spec, SPEC_ENTRY[check.entry]),
            "cases": [case.name for case in spec.correctness_cases(check.mode)]}


def judge_case(spec: ModuleType, case: Any, event: dict[str, Any] | None, out_dir: Path, device: str) -> list[str]:
    """Problems with one case's output (empty when it matches the reference)."""
    if event is None:
        return ["no output reported (the probe crashed or hit a limit)"]
    if not event.get("ok"):
        return [f"raised {str(event.get('error', '')).strip()}"]
    problems = []
    if event.get("type") != "Tensor":
        problems.append(f"returned {event.get('type')}, not a torch.Tensor")
    elif event.get("device") != device:
        problems.append(f"returned a tensor on {event.get('device')}, not on the inputs' device ({device})")
    inputs = spec.make_inputs(case)
    if event.get("inputs_after") != inputs_digest(inputs):
        problems.append("modified its inputs")
    if problems:
        return problems
    output = load_output(out_dir, event.get("file"))
    if output is None:
        return [f"output not readable as float32 [B, V] (dtype {event.get('dtype')}, shape {event.get('shape')})"]
    return list(spec.compare(case, inputs, output, spec.reference(inputs)))


def judge_outputs(check: OutputsCheck, spec: ModuleType, probe: ProbeOutput, out_dir: Path,
                  device: str) -> CheckScore:
    """One test per correctness case; partial credit (or all-or-nothing) over the cases."""
    cases = spec.correctness_cases(check.mode)
    import_error = probe.first(EVENT_IMPORT_ERROR)
    missing = probe.first(EVENT_MISSING_ENTRY)
    events = {e.get("case"): e for e in probe.events(EVENT_CASE)}
    # Worded here, from the trusted spec's entry, not from the probe's line (candidate code shares its process).
    module, _, function = str(getattr(spec, SPEC_ENTRY[check.entry])).partition(":")
    not_defined = f"{function} is not defined in {module}.py"
    tests = []
    for case in cases:
        nodeid = f"{check.id}::{case.name}"
        if missing is not None and import_error is None:  # not attempted: no points, but nothing wrong either
            tests.append(TestResult(nodeid, "skipped", 0.0, f"{NOT_ATTEMPTED}{not_defined}"))
            continue
        if import_error is not None:
            tests.append(TestResult(nodeid, "error", 0.0, f"{IMPORT_FAILED}{import_error.get('message', '')}"))
            continue
        event = events.get(case.name)
        problems = judge_case(spec, case, event, out_dir, device)
        seconds = float(event.get("seconds", 0.0)) if event else 0.0
        outcome = "missing" if event is None else ("passed" if not problems else "failed")
        tests.append(TestResult(nodeid, outcome, max(seconds, 0.0), "; ".join(problems)[:2000]))
    score = fraction_score(check, tuple(tests))
    if missing is not None and import_error is None:  # one line, not one per case
        return dataclasses.replace(score, explanation=(
            f"-{check.points:.2f} pts: {NOT_ATTEMPTED}{not_defined}"
            + (" (optional; it carries these points)" if check.entry == "triton_entry" else ""),))
    return score


def candidate_check(entry: dict[str, Any], hidden: HiddenText) -> None:
    """A hidden outputs check for the candidate: "not attempted: <entry> is not defined in <module>.py" (worded
    on the host from the spec) in place of the count, or the count and, when the submission did not import,
    why (its own error, scrubbed as candidate text); never a case's name or message (grader/feedback.py)."""
    not_attempted = [r for r in entry["reasons"] if r.partition(" pts: ")[2].startswith(NOT_ATTEMPTED)]
    failed_import = next((t["message"][len(IMPORT_FAILED):] for t in entry["tests"]
                          if t["outcome"] == "error" and t["message"].startswith(IMPORT_FAILED)), None)
    hidden_counts(entry)
    if not_attempted:
        entry["reasons"] = not_attempted
    elif failed_import is not None:
        entry["reasons"].append(f"{FEEDBACK_IMPORT_FAILED}{failed_import}")


KIND = Kind(name="outputs", spec=OutputsCheck, grade=grade, needs_spec=True, candidate_check=candidate_check)
