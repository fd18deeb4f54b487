#!/usr/bin/env bash
# GPU benchmark check of the inference-latency exercise: compiled-Triton correctness on every
# spec.correctness_cases("cuda") case, then a latency table (baseline, vectorised, torch.compile,
# the reference twice, every calibration: p50/p90 us, GB/s, % of measured copy bandwidth,
# speed-up) and the targets (reference >= 80% of copy bandwidth on the large shapes, >= 1.2x
# torch.compile, run 1 vs run 2 within 2%). benchmarks/gpu_check.py does the work; its
# docstring says how.
#
# How to run it on the device (a lent NVIDIA H100): the device tool copies this repository's
# working tree to the machine and runs the command in the repository root, so one call is
# the whole check:
#
#     bash benchmarks/gpu_check.sh          (give the call a timeout of ~420 s)
#
# It needs only what the machine's image has (Python 3, torch, triton, numpy, safetensors,
# pytest): no Docker, no sandbox backend, no package registry. It ends within 6 minutes:
# gpu_check.py stops starting new work at GPU_CHECK_BUDGET_S (330 s by default, counted from
# its start) and `timeout` below ends it at GPU_CHECK_TIMEOUT_S (345 s) whatever happens.
# Results come back from $OUT (./gpu-check-out when OUT is unset): model_vs_gpu.md (modelled vs
# measured ranks), gpu_check.md (the tables,
# card name and date: what goes into docs/benchmarks.md), gpu_check.json (every number, raw
# samples included) and gpu_check.log (this output). Both result files are rewritten after
# every step, so a run cut short still leaves everything it measured, marked partial.
#
# The optional last step grades the reference with `python -m grader grade ... --device cuda
# --backend process`, which needs pydantic and jsonschema (not in the image: carry their
# wheels as the device README says and put them on PYTHONPATH first). A GPU grading needs ~5
# minutes on its own, more than the check leaves, so for it make a second call (timeout 600 s):
# `GPU_CHECK_BUDGET_S=540 GPU_CHECK_TIMEOUT_S=560 bash benchmarks/gpu_check.sh --grade-only`.
#
# Without a GPU: `bash benchmarks/gpu_check.sh --dry-run` runs the same code on the CPU with
# tiny shapes and TRITON_INTERPRET=1 in well under a minute
# (tests/benchmarks/test_gpu_check_dry_run.py does this in CI). PYTHON picks the interpreter
# (default: python3).
set -u
cd "$(dirname "$0")/.." || exit 2

OUT_DIR="${OUT:-./gpu-check-out}"
mkdir -p "$OUT_DIR" || exit 2
export OUT="$OUT_DIR"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD:$PWD/grader/harness${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"

budget=()
if [ -n "${GPU_CHECK_BUDGET_S:-}" ]; then
    budget=(--budget-s "$GPU_CHECK_BUDGET_S")
fi

set -o pipefail
timeout --kill-after=10 "${GPU_CHECK_TIMEOUT_S:-345}" \
    "$PY" benchmarks/gpu_check.py --out "$OUT_DIR" ${budget[@]+"${budget[@]}"} "$@" 2>&1 | tee "$OUT_DIR/gpu_check.log"
status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "gpu_check.sh: stopped by the ${GPU_CHECK_TIMEOUT_S:-345} s timeout; $OUT_DIR holds the partial results"
fi
# The CPU grader's modelled H100 times (benchmarks/model_predictions.json, made on a CPU) against
# what was just measured: the rank agreement that docs/benchmarks.md records.
if [ -f "$OUT_DIR/gpu_check.json" ]; then
    "$PY" benchmarks/model_vs_gpu.py compare "$OUT_DIR/gpu_check.json" >"$OUT_DIR/model_vs_gpu.md" 2>&1 || true
fi
exit "$status"
