"""The GPU benchmark check (benchmarks/gpu_check.sh) in its --dry-run mode, so it does not rot.

The real check needs an NVIDIA GPU, which the machines that run these tests do not have: it
only runs when someone runs it on a lent GPU machine. The dry run goes through the same code
(loading every implementation, the compiled-Triton correctness stage under TRITON_INTERPRET=1,
the copy bandwidth, the latency stage with an injected CPU timer in place of
gpu_timing.bench_pair, the targets, the Markdown and JSON reports) on tiny CPU shapes, in a
subprocess, through the shell wrapper. What it cannot cover: CUDA events, the L2 flush,
torch.compile's inductor backend (the dry run uses aot_eager) and every number's meaning.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
CALIBRATIONS = sorted(p.name for p in (PROJECT / "exercises" / "inference-latency" / "calibration").iterdir()
                      if (p / "logits.py").is_file())


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("gpu-check")
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable)
    env.pop("TRITON_INTERPRET", None)  # the script sets it itself for the dry run
    run = subprocess.run(["bash", str(PROJECT / "benchmarks" / "gpu_check.sh"), "--dry-run"], cwd=PROJECT, env=env,
                         capture_output=True, text=True, timeout=120)
    return run, out


def test_dry_run_finishes_and_writes_both_reports(dry_run):
    run, out = dry_run
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads((out / "gpu_check.json").read_text())
    assert data["mode"] == "dry-run"
    assert data["status"] == "complete", data["errors"]
    assert data["elapsed_s"] < 60
    assert (out / "gpu_check.md").read_text().startswith("# inference-latency: GPU benchmark check")
    assert "done in" in (out / "gpu_check.log").read_text()


def test_correctness_stage_passes_the_reference_and_catches_the_tail_bug(dry_run):
    _, out = dry_run
    correctness = json.loads((out / "gpu_check.json").read_text())["correctness"]
    # The reference and every calibration that exports a Triton entry, in folder order.
    assert correctness["implementations"][0] == "reference"
    assert "calibration: triton-tail-bug" in correctness["implementations"]
    assert "calibration: tutorial-kernel" in correctness["implementations"]
    summary = correctness["summary"]
    assert summary["reference"]["passed"] == summary["reference"]["checked"] == summary["reference"]["cases"] > 0
    for case in correctness["cases"]:
        tail = case["results"]["calibration: triton-tail-bug"]
        vocab = int(case["case"].split("-v")[1].split("-")[0])
        assert tail["ok"] == (vocab % 1024 == 0), case  # wrong exactly where V leaves a tail


def test_every_implementation_has_a_timed_row_in_json_and_markdown(dry_run):
    _, out = dry_run
    data = json.loads((out / "gpu_check.json").read_text())
    markdown = (out / "gpu_check.md").read_text()
    expected = ["baseline", "vectorised", "torch.compile(vectorised)", "reference (run 1)", "reference (run 2)"] + \
        [f"calibration: {name}" for name in CALIBRATIONS if name != "vectorised"]
    cases = data["timing"]["cases"]
    assert len(cases) == 2 and any(c["large"] for c in cases)
    for case in cases:
        rows = case["rows"]
        assert sorted(rows) == sorted(expected)
        for name in expected:
            row = rows[name]
            assert "error" not in row, (case["case"], name, row)
            assert row["p50_us"] > 0 and row["p90_us"] >= row["p50_us"] and row["gbs"] > 0
            assert row["pct_copy"] > 0 and row["speedup"] > 0 and row["rounds"] >= 1
            assert f"| {name} |" in markdown
        assert rows["calibration: returns-input"]["timed_output"].startswith("WRONG")
        assert rows["reference (run 1)"]["timed_output"] == "ok"
        assert rows["torch.compile(vectorised)"]["compile_s"] >= 0


def test_targets_and_the_skipped_grading_are_reported(dry_run):
    _, out = dry_run
    data = json.loads((out / "gpu_check.json").read_text())
    targets = {item["target"] for item in data["targets"]["items"]}
    assert len(targets) == 3  # copy bandwidth on the large shapes, vs torch.compile, run 1 vs run 2
    assert all(item["result"] in ("PASS", "FAIL") for item in data["targets"]["items"])
    assert data["grader"]["status"] == "skipped" and data["grader"]["reason"]
    assert data["copy_gbs"] > 0
    # timer-patch replaces clocks at import: named in a note, and put back before anything is timed
    assert any("timer-patch" in note and "put back" in note for note in data["notes"])


def test_a_failing_implementation_or_compile_is_recorded_in_its_row_and_the_rest_runs_on(tmp_path: Path):
    """An implementation that raises on every call and a torch.compile that cannot compile
    (an unknown backend) each get their error in their row; every other row is still timed."""
    driver = """
import sys
out = sys.argv[1]
sys.argv = ["gpu_check.py", "--dry-run"]  # before the import: the dry run picks the Triton interpreter
sys.path.insert(0, "benchmarks")
import gpu_check

def broken(**kwargs):
    raise RuntimeError("boom")

load = gpu_check.load_implementations
def load_with_a_broken_one(spec, report):
    baseline, impls, flaws = load(spec, report)
    impls.append(gpu_check.Impl("calibration: broken", lambda *a, **k: broken(), triton=lambda *a, **k: broken()))
    return baseline, impls, flaws
gpu_check.load_implementations = load_with_a_broken_one
sys.exit(gpu_check.main(["--dry-run", "--cases", "1", "--compile-backend", "no-such-backend", "--out", out]))
"""
    env = dict(os.environ, PYTHONPATH=f"{PROJECT}{os.pathsep}{PROJECT / 'grader' / 'harness'}")
    env.pop("TRITON_INTERPRET", None)
    run = subprocess.run([sys.executable, "-c", driver, str(tmp_path)], cwd=PROJECT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = data["timing"]["cases"][0]["rows"]
    assert "boom" in rows["calibration: broken"]["error"]
    assert rows["torch.compile(vectorised)"]["error"]
    assert rows["reference (run 2)"]["p50_us"] > 0 and rows["calibration: ptr-cache"]["p50_us"] > 0
    broken_checks = [c["results"]["calibration: broken"] for c in data["correctness"]["cases"]]
    assert broken_checks and all(not r["ok"] and "boom" in r["problems"][0] for r in broken_checks)
    assert "ERROR" in (tmp_path / "gpu_check.md").read_text()
