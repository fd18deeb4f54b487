"""Modelled vs measured: does the CPU grader's H100 model rank implementations as a real GPU does?

    # on this machine (CPU): model every implementation on spec.model_cases(), write the predictions
    TRITON_INTERPRET=1 TORCHDYNAMO_DISABLE=1 .venv/bin/python benchmarks/model_vs_gpu.py predict
    # after `bash benchmarks/gpu_check.sh` on a GPU: compare with its measured p50s
    .venv/bin/python benchmarks/model_vs_gpu.py compare gpu-check-out/gpu_check.json

`predict` traces the reference and every calibration of inference-latency exactly as the
`model` check does (harness/kernel_trace.py, same sampling, same sm_90 builds, same cost
model: grader/checks/gpu_model.py) and writes benchmarks/model_predictions.json, keyed by the
row names gpu_check.py uses. `compare` reads gpu_check.json (its timing stage measures the same
implementations on spec.bench_cases("cuda"), which include every model case by name) and prints
a Markdown table for docs/benchmarks.md: modelled and measured microseconds per case, each
implementation's rank under both, Spearman's rank correlation, and the share of pairs the
model orders as the GPU does. Trusted code only (the bundled submissions are imported here).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
EXERCISE = PROJECT / "exercises" / "inference-latency"
PREDICTIONS = Path(__file__).with_name("model_predictions.json")


def _load(path: Path, name: str):
    from grader.harness.probe import load_module_from
    return load_module_from(str(path), name)


def _implementations() -> list[tuple[str, Path]]:
    rows = [("reference (run 1)", PROJECT / "reference" / "inference-latency" / "logits.py")]
    for folder in sorted((EXERCISE / "calibration").iterdir()):
        if (folder / "logits.py").is_file():  # gpu_check.py names the vectorised calibration's row "vectorised"
            rows.append(("vectorised" if folder.name == "vectorised" else f"calibration: {folder.name}",
                         folder / "logits.py"))
    return rows


def predict() -> None:
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("predict needs TRITON_INTERPRET=1 (and TORCHDYNAMO_DISABLE=1) in the environment")
    sys.path.insert(0, str(PROJECT / "grader" / "harness"))
    sys.path.insert(0, str(PROJECT))
    import kernel_trace  # before any kernel runs
    from grader.checks.gpu_model import MAX_ELEMS_PER_THREAD, model_call
    spec = _load(EXERCISE / "tests" / "spec.py", "mlgrade_spec")
    out: dict = {"date": str(date.today()), "cases": [c.name for c in spec.model_cases()], "modelled_us": {}}
    sys.path.insert(0, str(EXERCISE / "starter"))  # the baseline, as in a grading's workspace
    for index, (row, path) in enumerate(_implementations()):
        sys.path.insert(0, str(path.parent))  # a calibration may import modules of its own
        try:
            module = _load(path, f"impl_{index}")
        except Exception as exc:
            print(f"{row}: import failed: {type(exc).__name__}: {exc}"[:300], flush=True)
            continue
        finally:
            sys.path.pop(0)
        fn = getattr(module, "process_logits_triton", None) or module.process_logits
        out["modelled_us"][row] = {}
        for case in spec.model_cases():
            try:
                records = kernel_trace.trace_launches(lambda **kw: spec.call(fn, kw), spec.make_inputs(case),
                                                      torch_ops=True, sample_programs=32)
            except Exception as exc:
                out["modelled_us"][row][case.name] = None
                print(f"{row} {case.name}: trace failed: {type(exc).__name__}: {exc}"[:300], flush=True)
                continue
            builds = {}
            for record in records:
                if record["kind"] == "triton" and record["cache_key"] not in builds:
                    per_thread = record["max_tile"] / (32 * max(1, record["num_warps"] or 4))
                    builds[record["cache_key"]] = ({"skipped": True} if per_thread > MAX_ELEMS_PER_THREAD else
                                                   kernel_trace.compile_for_sm90(record, ptxas_timeout_s=30))
            modelled = model_call(records[:5000], builds) if len(records) <= 5000 else None
            out["modelled_us"][row][case.name] = round(modelled.seconds * 1e6, 2) if modelled else None
            print(f"{row} {case.name}: {out['modelled_us'][row][case.name]} us", flush=True)
    PREDICTIONS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {PREDICTIONS}")


def _ranks(values: dict[str, float]) -> dict[str, int]:
    return {name: rank for rank, name in enumerate(sorted(values, key=values.__getitem__), start=1)}


def compare(measured_path: Path) -> None:
    predictions = json.loads(PREDICTIONS.read_text())
    measured = json.loads(measured_path.read_text())
    device = measured.get("device") or measured.get("gpu") or "?"
    by_case = {c.get("case"): c.get("rows", {}) for c in measured.get("timing", {}).get("cases", [])}
    print(f"Modelled ({predictions['date']}, CPU) vs measured ({device}) p50, microseconds\n")
    agree = total = 0
    for case in predictions["cases"]:
        rows = by_case.get(case)
        if rows is None:
            print(f"{case}: not in {measured_path.name} (shapes measured: {', '.join(map(str, by_case))})\n")
            continue
        model = {r: v[case] for r, v in predictions["modelled_us"].items() if v.get(case)}
        real = {r: rows[r]["p50_us"] for r in model if isinstance(rows.get(r), dict) and rows[r].get("p50_us")}
        model = {r: model[r] for r in real}
        rank_m, rank_r = _ranks(model), _ranks(real)
        print(f"**{case}**\n\n| implementation | modelled us | rank | measured us | rank |\n|---|---|---|---|---|")
        for r in sorted(real, key=real.__getitem__):
            print(f"| {r} | {model[r]:.1f} | {rank_m[r]} | {real[r]:.1f} | {rank_r[r]} |")
        n = len(real)
        if n >= 2:
            d2 = sum((rank_m[r] - rank_r[r]) ** 2 for r in real)
            rho = 1 - 6 * d2 / (n * (n * n - 1))
            names = list(real)
            # Pairs the model cannot tell apart (the same ops: vectorised, timer-patch, torch.compile
            # modelled eagerly) are left out rather than counted either way.
            pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if model[a] != model[b]]
            same = sum((model[a] - model[b]) * (real[a] - real[b]) > 0 for a, b in pairs)
            agree, total = agree + same, total + len(pairs)
            print(f"\nSpearman rank correlation {rho:.2f}; pairs ordered alike {same}/{len(pairs)} "
                  f"(pairs the model ties left out)\n")
    if total:
        print(f"All cases: pairs ordered alike {agree}/{total} ({100 * agree / total:.0f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("predict")
    cmp = sub.add_parser("compare")
    cmp.add_argument("gpu_check_json", type=Path)
    args = parser.parse_args()
    if args.command == "predict":
        predict()
    else:
        if not args.gpu_check_json.is_file():
            sys.exit(f"{args.gpu_check_json}: not found (run benchmarks/gpu_check.sh on a GPU first)")
        compare(args.gpu_check_json)


if __name__ == "__main__":
    main()
