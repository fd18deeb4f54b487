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
from typing import Any

from ..harness.probe import inputs_digest
from ..manifest import OutputsCheck
from ..results import TestResult
from ..scoring import CheckScore, fraction_score
from .probe_output import ProbeOutput, load_output

SPEC_ENTRY = {"entry": "ENTRY", "triton_entry": "TRITON_ENTRY"}


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
    import_error = probe.first("import_error")
    missing = probe.first("missing_entry")
    events = {e.get("case"): e for e in probe.events("case")}
    tests = []
    for case in cases:
        nodeid = f"{check.id}::{case.name}"
        if missing is not None and import_error is None:  # not attempted: no points, but nothing wrong either
            tests.append(TestResult(nodeid, "skipped", 0.0, f"not attempted: {missing.get('message', '')}"))
            continue
        if import_error is not None:
            tests.append(TestResult(nodeid, "error", 0.0, f"import failed: {import_error.get('message', '')}"))
            continue
        event = events.get(case.name)
        problems = judge_case(spec, case, event, out_dir, device)
        seconds = float(event.get("seconds", 0.0)) if event else 0.0
        outcome = "missing" if event is None else ("passed" if not problems else "failed")
        tests.append(TestResult(nodeid, outcome, max(seconds, 0.0), "; ".join(problems)[:2000]))
    score = fraction_score(check, tuple(tests))
    if missing is not None and import_error is None:  # one line, not one per case
        return dataclasses.replace(score, explanation=(
            f"-{check.points:.2f} pts: not attempted: {missing.get('message', '')} (optional; it carries these "
            "points)",))
    return score
