"""Outputs and latency checks end to end on the toy latency exercise: real sandbox, real timing.

Each hostile submission is a known way to game a latency score; each must score 0 for
latency with its reason named (or lose correctness first).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from grader.checks.latency import judge_latency
from grader.checks.probe_output import ProbeOutput
from grader.checks.spec import load_spec
from grader.errors import InfraError
from grader.pipeline import Grader
from grader.report import validate_report
from sandbox import available_backends
from tests.conftest import load_fixture_exercise, FIXTURES, TOY_HOME

SUBMISSIONS = FIXTURES / "submissions" / "toy-latency"
BACKEND = next(name for name, reason in available_backends().items() if reason is None)


@pytest.fixture(scope="module")
def grader() -> Grader:
    return Grader(BACKEND)


@pytest.fixture(scope="module")
def exercise():
    return load_fixture_exercise("toy-latency")


def _check(report: dict, check_id: str) -> dict:
    return next(c for c in report["checks"] if c["id"] == check_id)


def test_reference_earns_everything_and_the_report_explains_the_timing(grader: Grader, exercise) -> None:
    report = grader.grade(exercise, TOY_HOME / "reference" / "toy-latency")
    validate_report(report)
    assert report["score"]["percent"] == 100.0
    (section,) = report["latency"]
    assert section["device"] == "cpu" and section["method"].startswith("process CPU time")
    (case,) = section["cases"]
    assert case["speedup"] > 3 and case["reference_speedup"] > 3
    assert case["speedup_ci"][0] <= case["speedup"] <= case["speedup_ci"][1]
    assert case["candidate_p50_us"] <= case["candidate_p90_us"] <= case["candidate_p99_us"]
    assert section["flags"] == [] and section["copy_gbs"] > 0
    assert [r["what"] for r in report["run"]["runs"]] == ["correct", "latency-clean", "latency"]


@pytest.mark.parametrize("name,correct,reason", [
    ("returns-input", 0.0, "values outside tolerance"),
    ("ptr-cache", 0.0, "values outside tolerance"),          # the decoy's result came back from the cache
    ("modifies-input", 0.0, "modified its inputs"),
])
def test_wrong_outputs_fail_correctness_and_latency_is_not_even_timed(grader: Grader, exercise, name: str,
                                                                      correct: float, reason: str) -> None:
    report = grader.grade(exercise, SUBMISSIONS / name)
    assert _check(report, "correct")["points"] == correct
    assert any(reason in r for r in _check(report, "correct")["reasons"])
    latency = _check(report, "latency")
    assert latency["points"] == 0 and latency["reasons"] == ["-5.00 pts: correctness first: correct had wrong or missing outputs"]
    assert [r["what"] for r in report["run"]["runs"]] == ["correct"]


@pytest.mark.parametrize("name,flag", [
    ("calls-baseline", "-> 0% of this case's points"),                    # no flag: simply no speed-up
    ("timer-patch", "replaced after the candidate's import: time.perf_counter"),
    ("slows-baseline", "in a clean process"),
    ("wrong-when-timed", "returned a wrong output"),
    ("offload-process", "work done outside the measured process"),
])
def test_latency_cheats_score_zero_with_the_reason_named(grader: Grader, exercise, name: str, flag: str) -> None:
    report = grader.grade(exercise, SUBMISSIONS / name)
    validate_report(report)
    assert _check(report, "correct")["points"] == 5.0
    latency = _check(report, "latency")
    assert latency["points"] == 0.0
    assert any(flag in reason for reason in latency["reasons"]), latency["reasons"]


def test_a_patched_clock_changes_nothing_that_is_measured(grader: Grader, exercise) -> None:
    """The probe times with clocks bound before the candidate's import: the 10x-slow perf_counter
    of timer-patch is flagged, and the speed-up it would have faked is not what was measured."""
    report = grader.grade(exercise, SUBMISSIONS / "timer-patch")
    (case,) = report["latency"][0]["cases"]
    assert case["speedup"] < 2.5 * case["reference_speedup"], case


def _gpu_probe(side_stream: bool, gbs_factor: float = 1.0, rse: float = 0.005) -> ProbeOutput:
    base = [0.004] * 20
    cand = [0.0004 / gbs_factor] * 20
    event = {"event": "latency", "case": "b256-v512", "method": "CUDA events", "baseline_s": base,
             "candidate_s": cand, "wall_s": {"baseline": 0.09, "candidate": 0.009 / gbs_factor},
             "wall_sum_s": {"baseline": 0.08, "candidate": 0.008 / gbs_factor}, "side_stream": side_stream,
             "checked": {}, "rse": {"baseline": rse, "candidate": rse}}
    return ProbeOutput(lines=[{"event": "started"}, {"event": "bandwidth", "copy_gbs": 3000.0}, event,
                              {"event": "tamper", "stage": "import", "changed": []},
                              {"event": "tamper", "stage": "run", "changed": []}, {"event": "done"}])


def test_gpu_only_flags_side_stream_and_roofline(exercise) -> None:
    """Constructed probe output: these flags come from CUDA runs, and no GPU is available where tests run."""
    spec = load_spec(exercise.root / "tests" / "spec.py")
    check = _check_model(exercise)
    clean = _gpu_probe(False)
    score, section = judge_latency(check, spec, "cuda", _gpu_probe(False), Path("/nonexistent"), clean, [])
    assert score.earned == check.points and section["flags"] == []
    score, section = judge_latency(check, spec, "cuda", _gpu_probe(True), Path("/nonexistent"), clean, [])
    assert score.earned == 0 and any("side stream" in f for f in section["flags"])
    score, section = judge_latency(check, spec, "cuda", _gpu_probe(False, gbs_factor=1e4), Path("/nonexistent"),
                                   clean, [])
    assert score.earned == 0 and any("impossible speed-up" in f for f in section["flags"])


def test_a_clean_run_too_noisy_to_measure_is_an_infrastructure_failure(exercise) -> None:
    """Constructed probe output (the noise of a real machine cannot be ordered up in a test)."""
    spec = load_spec(exercise.root / "tests" / "spec.py")
    with pytest.raises(InfraError, match="too noisy to time latency.*known only to 8.0%"):
        judge_latency(_check_model(exercise), spec, "cuda", _gpu_probe(False), Path("/nonexistent"),
                      _gpu_probe(False, rse=0.08), [])


def _check_model(exercise):
    return next(c for c in exercise.manifest.checks if c.kind == "latency")


def test_an_import_that_never_finishes_costs_the_import_timeout_not_the_wall_clock(grader: Grader, exercise) -> None:
    report = grader.grade(exercise, SUBMISSIONS / "import-hang")
    correct = _check(report, "correct")
    assert correct["points"] == 0
    assert {t["message"] for t in correct["tests"]} == {"import failed: importing the submission did not finish within 10 s"}
    assert [r["timed_out"] for r in report["run"]["runs"]] == [False]  # ended by the watchdog; latency never ran
