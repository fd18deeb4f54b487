"""kernel_trace on real Triton kernels under the interpreter, and real sm_90 builds (no GPU needed).

Run in a child process: TRITON_INTERPRET must be set before triton is imported, and the
interpreter patches triton.language, which must not leak into the rest of the suite.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import PROJECT

SCRIPT = textwrap.dedent('''
    import importlib.util, json, sys
    sys.path.insert(0, "grader/harness")
    import kernel_trace
    sys.path.insert(0, "reference/inference-latency")
    import logits
    spec_file = importlib.util.spec_from_file_location("spec", "exercises/inference-latency/tests/spec.py")
    spec = importlib.util.module_from_spec(spec_file); sys.modules["spec"] = spec; spec_file.loader.exec_module(spec)
    case = spec._case(8, 50257, 64, "float32", 7, "trace")
    fn = lambda **kw: spec.call(logits.process_logits_triton, kw)
    full = kernel_trace.trace_launches(fn, spec.make_inputs(case))
    sampled = kernel_trace.trace_launches(fn, spec.make_inputs(case), sample_programs=12)
    with_ops = kernel_trace.trace_launches(fn, spec.make_inputs(case), torch_ops=True, sample_programs=12)
    build = kernel_trace.compile_for_sm90(full[1], ptxas_timeout_s=120)
    call = full.pop()
    sampled.pop()
    print(json.dumps({"full": full, "sampled": sampled, "ops": [r for r in with_ops if r["kind"] == "torch"],
                      "call": call,
                      "build": {k: v for k, v in build.items() if k != "ptxas_log"},
                      "minimal": spec.bytes_moved(case), "grid": kernel_trace.sample_grid((64, 9, 1), 32)}))
''')


@pytest.fixture(scope="module")
def traced() -> dict:
    env = dict(os.environ, TRITON_INTERPRET="1")
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=PROJECT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_every_launch_of_the_reference_is_recorded_with_its_traffic(traced: dict) -> None:
    names = [r["name"] for r in traced["full"]]
    assert names == ["_history_bitmap_kernel", "_partial_stats_kernel", "_normalise_kernel"]
    stats, normalise = traced["full"][1], traced["full"][2]
    assert stats["num_warps"] == 4 and stats["max_tile"] == 1024 and stats["n_programs"] == stats["grid"][0] * stats["grid"][1]
    logits_bytes = 8 * 50257 * 4
    # each of the two streaming kernels reads the logits once; the second writes the probabilities
    assert stats["by_arg"]["logits_ptr"]["bytes_loaded"] == logits_bytes
    assert normalise["by_arg"]["out_ptr"]["bytes_stored"] == logits_bytes
    total = sum(r["sector_bytes_loaded"] + r["sector_bytes_stored"] for r in traced["full"])
    assert traced["minimal"] <= total <= 3 * traced["minimal"]


def test_a_sampled_trace_scales_to_the_same_traffic(traced: dict) -> None:
    for full, sampled in zip(traced["full"], traced["sampled"]):
        if full["n_programs"] > 12:
            assert sampled["sampled_programs"] < full["n_programs"]
        assert sampled["sector_bytes_loaded"] == pytest.approx(full["sector_bytes_loaded"], rel=0.01)
        assert sampled["bytes_stored"] == pytest.approx(full["bytes_stored"], rel=0.01)


def test_the_sample_keeps_the_last_program_of_every_axis_and_stands_for_the_whole_grid(traced: dict) -> None:
    grid = {tuple(p): w for p, w in traced["grid"]}
    assert (63, 8, 0) in grid and (0, 0, 0) in grid and len(grid) <= 40
    assert grid[(63, 8, 0)] == 1.0  # the tail program stands only for itself
    assert sum(grid.values()) == pytest.approx(64 * 9)


def test_pytorch_ops_between_kernels_are_recorded(traced: dict) -> None:
    names = [r["name"] for r in traced["ops"]]
    assert any(n.startswith("aten.zeros") for n in names)  # the history bitmap


def test_a_launched_kernel_builds_for_sm90_without_a_gpu(traced: dict) -> None:
    build = traced["build"]
    assert build["n_regs"] and build["n_regs"] <= 255
    assert build["spill_store_bytes"] == 0 and build["has_loops"] is True


def test_the_call_reports_its_cpu_time_and_the_part_the_records_explain(traced: dict) -> None:
    call = traced["call"]
    assert call["kind"] == "call"
    assert 0 < call["explained_cpu_s"] <= call["cpu_s"]
