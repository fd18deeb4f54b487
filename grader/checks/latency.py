"""The `latency` check: speed-up over the baseline, relative to the reference's, with tamper evidence.

Two sandbox runs feed it. Run A imports the candidate and times baseline and candidate
in one process, interleaved; run B, with no candidate code, times the baseline and the
reference the same way. CPU: process CPU time per call (harness/cpu_timing.py); CUDA:
CUDA events (harness/gpu_timing.py). Warm-up (torch.compile, autotuning) runs before the
timed rounds until the calls settle, bounded by `warmup_limit_s`, and is reported, not
timed. On the host:

- correctness first: a required check with any wrong or missing output means 0 (an optional
  entry that was not attempted, "skipped", does not block);
- tamper evidence (any one means 0, with the reason named): timing functions or the
  baseline replaced after the candidate's import; timed calls that add up to less than
  `wall_agreement` of the wall clock around them; the baseline timed in run A slower than
  in the clean run B by more than `baseline_agreement` (a slowed baseline inflates the
  speed-up); a timed output (a random sample) that does not match the float64 reference;
  an achieved bandwidth over 1.25× the measured copy bandwidth (an impossible speed-up);
- score per case: r = log(candidate speed-up) / log(reference speed-up), clamped to [0, 1];
  the case earns min(1, r / full_at), rounded down to a tenth so that timing noise does not
  move scores between gradings; the check earns points × the mean over cases;
- a clean run B too noisy to measure (RSE of a median over `MAX_CLEAN_RSE`) is an
  infrastructure failure (exit 3, retryable), never a score.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Literal

from pydantic import Field

from ..harness.wire import EVENT_BANDWIDTH, EVENT_IMPORT_ERROR, EVENT_LATENCY, EVENT_TAMPER
from ..errors import InfraError
from ..results import TestResult
from ..scoring import STEP, CheckScore, blocked_score, per_case_score, step_down
from .base import CheckSpec, Context, Kind, Outcome, ReportPart
from .probe_output import ProbeOutput, load_output

ROOFLINE_SLACK = 1.25
MAX_CLEAN_RSE = 0.05         # run B's medians must be known to within 5% (else: too noisy, exit 3)
CPU_WALL_RATIO = 0.5         # candidate CPU/wall below this fraction of the baseline's: work hidden elsewhere
WARMUP_LIMIT_S = 60.0        # per function and case; documented in the exercise briefs
ALLOCATOR_ENV = {            # glibc malloc fixed for timing runs: no dynamic mmap threshold, no trimming,
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),  # so a multi-MB buffer per call is reused from the heap
    "MALLOC_TRIM_THRESHOLD_": str(2**30),       # the same way in every grading (it flipped p50 by ~3x)
    "MALLOC_TOP_PAD_": str(64 * 2**20),
}


MIN_WALL_S = 120.0  # the candidate's timing run gets at least this much...
WALL_FACTOR = 4.0  # ...or this many times the clean run's wall time, plus the warm-up allowance


class LatencyCase(ReportPart):
    """One input case of a latency check."""

    case: str
    baseline_p50_us: float
    candidate_p50_us: float
    candidate_p90_us: float
    candidate_p99_us: float
    reference_p50_us: float
    baseline_clean_p50_us: float
    rounds: int
    speedup: float
    speedup_ci: Annotated[list[float], Field(min_length=2, max_length=2)]
    reference_speedup: float
    gbs: float
    pct_of_copy_bandwidth: float | None
    warmup_s: dict[str, float | None] = Field(
        None, description="wall seconds of warm-up before timing, per function (not timed)")
    warmup_calls: dict[str, int] = Field(None, description="warm-up calls per function")


class LatencySection(ReportPart):
    """One latency check: how each number was measured and what it shows."""

    check: str
    device: Literal["cpu", "cuda"]
    method: str
    copy_gbs: float
    cases: list[LatencyCase]
    flags: list[str]


class LatencyCheck(CheckSpec):
    """Points for the speed-up over the baseline, relative to the reference's speed-up in the same grading."""

    kind: Literal["latency"]
    requires: list[str] = []  # check ids that must pass fully, else this check scores 0
    full_at: float = Field(0.85, gt=0, le=1)  # fraction of the reference's log-speed-up that earns full points
    baseline_agreement: float = Field(2.0, gt=1)  # max ratio of in-run to clean-process baseline times (CPU noise)
    wall_agreement: float = Field(0.5, gt=0, le=1)  # min (summed timed calls / wall clock of the same calls)
    threads: int = Field(1, ge=1)  # CPU timing threads: one is the steadiest on a shared machine
    warmup_limit_s: float = Field(WARMUP_LIMIT_S, gt=0, le=600)  # warm-up cap per function and case (untimed)
    partial_credit: bool = True


def grade(ctx: Context, checks: list[LatencyCheck]) -> dict[str, Outcome]:
    return {check.id: _grade_one(ctx, check) for check in checks}


def _grade_one(ctx: Context, check: LatencyCheck) -> Outcome:
    spec = ctx.spec_module()
    device = ctx.device
    blocked = ctx.blocked(check)
    config = probe_config(spec, ctx.spec_path(), spec.ENTRY, spec.BASELINE, device, check.threads, ctx.seed,
                          check.warmup_limit_s)
    empty = ProbeOutput()
    if blocked:
        score, section = judge_latency(check, spec, device, empty, ctx.workspace, empty, blocked)
        return Outcome(score, section=section)
    reference_ws = ctx.reference_workspace()
    ctx.progress(f"{ctx.label}: {check.id}: timing the reference and the baseline in a clean process")
    env = dict(ALLOCATOR_ENV)
    run_b, probe_b = ctx.probe(reference_ws, config, device, ctx.seed, lambda p, out: p, env=env)
    ctx.progress(f"{ctx.label}: {check.id}: timing the candidate beside the baseline")
    # The candidate's run gets a few times what the clean run took plus the documented warm-up
    # allowance per case, not the whole wall budget: a submission that stalls the timing loop
    # must not hold the grader for long.
    warmup = len(config["cases"]) * 2 * config["warmup_limit_s"]
    wall = min(ctx.exercise.manifest.limits.wall_s, max(MIN_WALL_S, WALL_FACTOR * run_b.wall_s) + warmup)
    run_a, (score, section) = ctx.probe(
        ctx.workspace, config, device, ctx.seed,
        lambda probe, out: judge_latency(check, spec, device, probe, out, probe_b, []), env=env, wall_s=wall)
    return Outcome(score, runs=[(f"{check.id}-clean", run_b), (check.id, run_a)], section=section)


def probe_config(spec: ModuleType, spec_path: str, entry: str, baseline: str, device: str, threads: int,
                 seed: int, warmup_limit_s: float = WARMUP_LIMIT_S) -> dict[str, Any]:
    """What probe.py needs to time baseline and entry on device (threads: CPU threads, fixed)."""
    cpu = device == "cpu"
    return {"mode": "latency", "spec": spec_path, "device": device, "entry": entry, "baseline": baseline,
            "cases": [case.name for case in spec.bench_cases(device)], "threads": threads, "seed": seed,
            "rounds": 80 if cpu else 200, "min_rounds": 15 if cpu else 20, "target_rse": 0.01,
            "max_seconds_per_case": 20.0 if cpu else 30.0, "warmup": 3, "warmup_limit_s": warmup_limit_s,
            "checked_outputs": 3, "pool_bytes": 64 * 2**20 if cpu else 2 * 2**30}


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def bootstrap_speedup(baseline: list[float], candidate: list[float], seed: int = 0,
                      resamples: int = 1000) -> tuple[float, float]:
    """95% bootstrap confidence interval of median(baseline) / median(candidate)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    base, cand = np.asarray(baseline), np.asarray(candidate)
    ratios = [np.median(rng.choice(base, base.size)) / np.median(rng.choice(cand, cand.size))
              for _ in range(resamples)]
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def _floats(value: Any) -> list[float]:
    if not isinstance(value, list) or not value or not all(isinstance(v, (int, float)) and v > 0 for v in value):
        return []
    return [float(v) for v in value]


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        else None


@dataclasses.dataclass
class CaseTiming:
    case: str
    baseline: list[float]         # seconds per timed call: CPU time (CPU) or CUDA event time (GPU)
    candidate: list[float]
    wall: dict[str, float]        # CPU: {"window": wall clock of the timed rounds}; GPU: per function
    wall_sum: dict[str, float]    # CPU: summed wall time of each function's calls; GPU: event-time sums
    checked: dict[str, Any]
    side_stream: bool
    rse: dict[str, float]
    warmup: dict[str, dict[str, Any]]


def _timings(probe: ProbeOutput) -> dict[str, CaseTiming]:
    found = {}
    for event in probe.events(EVENT_LATENCY):
        def table(key: str) -> dict:
            return event.get(key) if isinstance(event.get(key), dict) else {}

        def numbers(key: str) -> dict[str, float]:
            return {str(k): v for k, v in ((k, number(v)) for k, v in table(key).items()) if v is not None}
        warmup = {str(k): v for k, v in table("warmup").items() if isinstance(v, dict)}
        found[str(event.get("case"))] = CaseTiming(str(event.get("case")), _floats(event.get("baseline_s")),
                                                   _floats(event.get("candidate_s")), numbers("wall_s"),
                                                   numbers("wall_sum_s"), table("checked"),
                                                   event.get("side_stream") is True, numbers("rse"), warmup)
    return found


def clean_run_noise(run_b: ProbeOutput) -> str | None:
    """Why the clean run's timings cannot be trusted (machine noise), or None."""
    for name, timing in _timings(run_b).items():
        for which in ("baseline", "candidate"):
            rse = timing.rse.get(which)
            if rse is None or rse > MAX_CLEAN_RSE:
                return (f"{name}: the clean run's {which} median is known only to "
                        f"{'?' if rse is None else f'{rse:.1%}'} (limit {MAX_CLEAN_RSE:.0%})")
    return None


def _case_fraction(speedup: float, reference: float, full_at: float) -> float:
    if reference <= 1.0:  # the reference is no faster than the baseline here: any non-slower code is full marks
        return 1.0 if speedup >= reference else 0.0
    ratio = math.log(max(speedup, 1.0)) / math.log(reference)
    return step_down(max(0.0, ratio) / full_at, STEP)


def judge_latency(check: LatencyCheck, spec: ModuleType, device: str, run_a: ProbeOutput, dir_a: Path,
                  run_b: ProbeOutput, blocked_by: list[str]) -> tuple[CheckScore, dict[str, Any]]:
    """Score the latency check and return the report's latency section."""
    method = next((e.get("method") for e in run_a.events(EVENT_LATENCY) if isinstance(e.get("method"), str)),
                  "pytest-benchmark" if device == "cpu" else "CUDA events")
    bandwidth = run_b.first(EVENT_BANDWIDTH) or {}
    copy_gbs = float(bandwidth.get("copy_gbs", 0.0)) if isinstance(bandwidth.get("copy_gbs"), (int, float)) else 0.0
    section: dict[str, Any] = {"check": check.id, "device": device, "method": method, "copy_gbs": round(copy_gbs, 2),
                               "cases": [], "flags": []}
    flags: list[str] = section["flags"]
    if blocked_by:  # nothing was timed: correctness decides first
        score, flag = blocked_score(check, blocked_by)
        flags.append(flag)
        return score, section
    if run_a.first(EVENT_IMPORT_ERROR):
        flags.append(f"the candidate's module failed to import: {run_a.first(EVENT_IMPORT_ERROR).get('message', '')}")
    tamper = run_a.events(EVENT_TAMPER)
    replaced = replaced_after_import(run_a)
    if replaced:
        flags.append(f"replaced after the candidate's import: {', '.join(replaced)}")
    elif not any(event.get("stage") == "run" for event in tamper) and not flags:
        flags.append("the timing run did not finish (it crashed or hit its time limit)")

    noise = clean_run_noise(run_b) if run_b.events(EVENT_LATENCY) else None
    if noise:
        raise InfraError(f"the machine is too noisy to time {check.id} (retry on a quieter machine): {noise}")
    timed_a, timed_b = _timings(run_a), _timings(run_b)
    cases = {c.name: c for c in spec.bench_cases(device)}
    fractions, tests = [], []
    for name, case in cases.items():
        a, b = timed_a.get(name), timed_b.get(name)
        nodeid = f"{check.id}::{name}"
        if b is None or not b.baseline or not b.candidate:
            tests.append(TestResult(nodeid, "error", 0.0, "the clean reference run produced no timings"))
            flags.append(f"{name}: no clean reference timing (infrastructure)")
            continue
        if a is None or not a.baseline or not a.candidate:
            tests.append(TestResult(nodeid, "missing", 0.0, "no timings reported"))
            fractions.append(0.0)
            continue
        row = _case_row(spec, case, a, b, copy_gbs, check, dir_a, flags)
        section["cases"].append(row)
        fraction = _case_fraction(row["speedup"], row["reference_speedup"], check.full_at)
        fractions.append(fraction)
        tests.append(TestResult(nodeid, "passed" if fraction >= 1.0 else "failed", sum(a.candidate),
                                _feedback(row, fraction)))
    return per_case_score(check, tests, fractions, flags), section


def _feedback(row: dict[str, Any], fraction: float) -> str:
    """One readable line: rounded numbers, what earns the rest."""
    return (f"{row['speedup']:.1f}x faster than the baseline (reference {row['reference_speedup']:.1f}x; "
            f"{us(row['candidate_p50_us'])} vs {us(row['baseline_p50_us'])} a call) -> "
            f"{fraction:.0%} of this case's points")


def replaced_after_import(probe: ProbeOutput) -> list[str]:
    """Fingerprinted names (timers, harness code, the baseline) the probe saw replaced, in order."""
    return sorted({str(name) for event in probe.events(EVENT_TAMPER) if isinstance(event.get("changed"), list)
                   for name in event["changed"]})


def us(value: float) -> str:
    """Microseconds for a person: '850 us', '2.98 ms'."""
    return f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.0f} us"



def _case_row(spec: ModuleType, case: Any, a: CaseTiming, b: CaseTiming, copy_gbs: float, check: LatencyCheck,
              dir_a: Path, flags: list[str]) -> dict[str, Any]:
    med = statistics.median
    speedup = med(a.baseline) / med(a.candidate)
    reference = med(b.baseline) / med(b.candidate)
    gbs = spec.bytes_moved(case) / med(a.candidate) / 1e9
    row = {"case": case.name, "baseline_p50_us": med(a.baseline) * 1e6, "candidate_p50_us": med(a.candidate) * 1e6,
           "candidate_p90_us": _percentile(a.candidate, 0.9) * 1e6,
           "candidate_p99_us": _percentile(a.candidate, 0.99) * 1e6,
           "reference_p50_us": med(b.candidate) * 1e6, "baseline_clean_p50_us": med(b.baseline) * 1e6,
           "rounds": len(a.candidate), "speedup": speedup, "speedup_ci": list(bootstrap_speedup(a.baseline, a.candidate)),
           "reference_speedup": reference, "gbs": gbs,
           "pct_of_copy_bandwidth": 100 * gbs / copy_gbs if copy_gbs else None}
    row = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
    row["warmup_s"] = {which: number(w.get("seconds")) for which, w in a.warmup.items()}
    row["warmup_calls"] = {which: w.get("calls") for which, w in a.warmup.items() if isinstance(w.get("calls"), int)}
    if a.wall.get("window") is not None:  # CPU: process CPU time per call, one wall window
        _cpu_wall_flags(case.name, a, check, flags)
    else:
        _gpu_wall_flags(case.name, a, check, flags)
    if a.side_stream:
        flags.append(f"{case.name}: the candidate changed the current CUDA stream (work on a side stream)")
    # One-sided: a baseline slowed beside the candidate inflates its speed-up; a faster one cannot.
    drift = med(a.baseline) / med(b.baseline)
    if drift > check.baseline_agreement:
        flags.append(f"{case.name}: the baseline took {med(a.baseline) * 1e6:.0f} us beside the candidate but "
                     f"{med(b.baseline) * 1e6:.0f} us in a clean process ({drift:.2f}x apart)")
    if copy_gbs and gbs > ROOFLINE_SLACK * copy_gbs:
        flags.append(f"{case.name}: {gbs:.1f} GB/s is beyond the measured copy bandwidth ({copy_gbs:.1f} GB/s): "
                     "an impossible speed-up")
    for round_index, kept in a.checked.items():
        problems = _check_timed_output(spec, case, kept, dir_a)
        if problems:
            flags.append(f"{case.name}: timed call {round_index} returned a wrong output: {problems[0]}")
            break
    return row


def _cpu_wall_flags(name: str, a: CaseTiming, check: LatencyCheck, flags: list[str]) -> None:
    window = a.wall["window"]
    walls = {which: a.wall_sum.get(which) for which in ("baseline", "candidate")}
    if any(w is None or w <= 0 for w in walls.values()) or window <= 0 \
            or sum(walls.values()) / window < check.wall_agreement:  # type: ignore[arg-type]
        flags.append(f"{name}: the timed calls add up to {sum(w or 0 for w in walls.values()):.3g} s of wall time but "
                     f"the wall clock around them says {window:.3g} s")
        return
    # CPU time over wall time: the baseline's shows how much CPU this process got; a candidate whose
    # calls got far less did its work where the clock does not look (another process).
    ratio = {which: sum(getattr(a, which)) / walls[which] for which in walls}  # type: ignore[operator]
    if ratio["candidate"] < CPU_WALL_RATIO * ratio["baseline"]:
        flags.append(f"{name}: the candidate's calls used {ratio['candidate']:.0%} of their wall time as CPU time "
                     f"in this process, the baseline's {ratio['baseline']:.0%}: work done outside the measured "
                     "process")


def _gpu_wall_flags(name: str, a: CaseTiming, check: LatencyCheck, flags: list[str]) -> None:
    for which, samples in (("candidate", a.candidate), ("baseline", a.baseline)):
        wall, timed = a.wall.get(which), a.wall_sum.get(which, sum(samples))
        if wall is None or wall <= 0 or timed / wall < check.wall_agreement:
            flags.append(f"{name}: the {which}'s timed calls add up to {timed:.3g} s but the wall clock around "
                         f"them says {wall} s")


def _check_timed_output(spec: ModuleType, case: Any, kept: Any, out_dir: Path) -> list[str]:
    if not isinstance(kept, dict) or not isinstance(kept.get("pool_index"), int):
        return ["no description of the output"]
    if kept.get("type") != "Tensor":
        return [f"returned {kept.get('type')}"]
    inputs = spec.make_inputs(dataclasses.replace(case, seed=case.seed + 1000 + kept["pool_index"]))
    output = load_output(out_dir, kept.get("file"))
    if output is None:
        return ["output not readable as float32 [B, V]"]
    return list(spec.compare(case, inputs, output, spec.reference(inputs)))


def markdown(section: dict[str, Any]) -> list[str]:
    """The section in report.md."""
    return [f"## Measured latency ({section['device']})", "", section["method"], "",
            "| Case | p50 | Baseline p50 | Speed-up | Reference speed-up | Warm-up s |",
            "| --- | --- | --- | --- | --- | --- |"] + [
        f"| {c['case']} | {c['candidate_p50_us']:.0f} us | {c['baseline_p50_us']:.0f} us | "
        f"{c['speedup']:.2f}x | {c['reference_speedup']:.2f}x | "
        f"{(c.get('warmup_s') or {}).get('candidate') or 0:.2f} |" for c in section["cases"]]


KIND = Kind(name="latency", markdown=markdown, spec=LatencyCheck, grade=grade, measured=True, priced_by_measurement=True,
            section="latency", section_model=LatencySection,
            section_doc="one entry per latency check: how each number was measured and what it shows",
            needs_spec=True)
