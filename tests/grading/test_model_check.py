"""The model check end to end on the inference-latency exercise: real sandbox, real interpreter
trace, real sm_90 builds. The reference's own GPU path earns everything; work the trace cannot
see earns nothing and says why."""
from __future__ import annotations

import pytest

from grader.exercises import load_exercise
from grader.pipeline import Grader
from grader.report import candidate_view, validate_report
from sandbox import available_backends
from tests.conftest import FIXTURES

BACKEND = next(name for name, reason in available_backends().items() if reason is None)


@pytest.fixture(scope="module")
def graded(monkeypatch_module) -> dict:
    exercise = load_exercise("inference-latency")
    grader = Grader(BACKEND)
    return {name: grader.grade(exercise, path) for name, path in (
        ("tutorial", exercise.calibration("tutorial-kernel")),
        ("numpy", FIXTURES / "submissions" / "inference-latency" / "numpy-triton"),
        ("autotuned", FIXTURES / "submissions" / "inference-latency" / "autotuned-kernel"),
        ("numpy-copy", FIXTURES / "submissions" / "inference-latency" / "numpy-then-copy-kernel"))}


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    mp.delenv("MLGRADE_HOME", raising=False)  # the bundled exercises
    yield mp
    mp.undo()


def _check(report: dict, check_id: str) -> dict:
    return next(c for c in report["checks"] if c["id"] == check_id)


def test_a_spilling_tutorial_kernel_is_modelled_slower_than_the_reference_and_told_why(graded: dict) -> None:
    report = graded["tutorial"]
    validate_report(report)
    model = _check(report, "gpu-model")
    assert 0 < model["points"] < 0.5 * model["max_points"]
    (section,) = report["model"]
    assert section["label"] == "modelled, not measured" and section["entry"] == "logits:process_logits_triton"
    for case in section["cases"]:
        assert case["modelled_us"] > 3 * case["reference_modelled_us"]
        assert case["spill_mb"] > 0 and any(p["kernel"] == "softmax_kernel" for p in case["parts"])
    assert all("register spills" in r and "modelled, not measured" in r for r in model["reasons"])
    assert _check(candidate_view(report), "gpu-model")["reasons"] == model["reasons"]  # public: shown as is


def test_work_the_trace_cannot_see_scores_zero_for_the_model_only(graded: dict) -> None:
    report = graded["numpy"]
    validate_report(report)
    assert _check(report, "correct-cpu")["status"] == "pass"
    assert _check(report, "correct-triton")["status"] == "pass"
    model = _check(report, "gpu-model")
    assert model["points"] == 0
    assert any("less than the" in r and "one call must move" in r for r in model["reasons"]), model["reasons"]
    assert model["reasons"][0].startswith(f"-{model['max_points']:.2f} pts")
    assert all(r.startswith("also: ") for r in model["reasons"][1:])


def test_an_autotuned_kernel_runs_its_first_config_off_the_gpu_and_loses_nothing_for_it(graded: dict) -> None:
    """@triton.autotune cannot benchmark without a GPU; the interpreter checks use the first config."""
    report = graded["autotuned"]
    assert _check(report, "correct-triton")["status"] == "pass", _check(report, "correct-triton")["reasons"]
    model = _check(report, "gpu-model")
    assert model["points"] > 0 and report["model"][0]["flags"] == []
    assert _check(report, "latency-cpu")["status"] == "pass"


def test_hidden_work_behind_a_kernel_with_ideal_traffic_is_caught_by_the_cpu_time_it_cannot_explain(
        graded: dict) -> None:
    report = graded["numpy-copy"]
    assert _check(report, "correct-triton")["status"] == "pass"
    model = _check(report, "gpu-model")
    assert model["points"] == 0
    flags = report["model"][0]["flags"]
    assert any("outside every kernel and PyTorch op" in f and "cannot be modelled" in f for f in flags), flags
    assert not any("traffic" in f for f in flags), flags  # its traffic alone looks ideal
