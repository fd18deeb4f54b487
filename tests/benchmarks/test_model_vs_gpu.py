"""benchmarks/model_vs_gpu.py compare: the rank agreement between the committed predictions and a
gpu_check.json (constructed here: measured numbers need a GPU, which tests never have)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT

PREDICTIONS = json.loads((PROJECT / "benchmarks" / "model_predictions.json").read_text())


def _compare(tmp_path: Path, measured: dict) -> str:
    path = tmp_path / "gpu_check.json"
    path.write_text(json.dumps(measured))
    run = subprocess.run([sys.executable, "benchmarks/model_vs_gpu.py", "compare", str(path)], cwd=PROJECT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


def _gpu_check(scale: dict[str, float]) -> dict:
    cases = []
    for case in PREDICTIONS["cases"]:
        rows = {row: {"p50_us": values[case] * scale.get(row, 1.0)}
                for row, values in PREDICTIONS["modelled_us"].items() if values.get(case)}
        cases.append({"case": case, "rows": rows})
    return {"device": "constructed", "timing": {"cases": cases}}


def test_predictions_cover_the_reference_and_the_triton_calibrations() -> None:
    assert set(PREDICTIONS["cases"]) == {"b64-v128256-f32-h128-bench", "b257-v50257-bf16-h128-bench"}
    rows = PREDICTIONS["modelled_us"]
    for case in PREDICTIONS["cases"]:
        assert rows["reference (run 1)"][case] < rows["calibration: tutorial-kernel"][case]
        assert rows["calibration: tutorial-kernel"][case] < rows["calibration: row-loop"][case]


def test_a_gpu_that_agrees_gives_full_rank_agreement(tmp_path: Path) -> None:
    out = _compare(tmp_path, _gpu_check({}))
    assert "Spearman rank correlation 1.00" in out and "(100%)" in out


def test_a_gpu_that_reverses_one_pair_is_reported(tmp_path: Path) -> None:
    out = _compare(tmp_path, _gpu_check({"reference (run 1)": 100.0}))  # the reference measured slowest
    assert "(100%)" not in out and "| reference (run 1) |" in out
