"""In-sandbox probe for outputs and latency checks: run the candidate's function, write what happened.

    python probe.py CONFIG.json

It never decides a verdict. In "outputs" mode it calls the candidate's function on inputs
made by the exercise's trusted spec module and writes each output (safetensors) and a
digest of the inputs after the call; the grader regenerates the inputs on the host and
compares with its own float64 reference. In "latency" mode it times the baseline and the
candidate (CPU: `cpu_timing.py`, process CPU time; CUDA: `gpu_timing.py`, CUDA events), keeps
a sample of the timed outputs for the host to check, and records tamper evidence: the timing
functions, the harness's own timing code and the baseline as they were before the candidate's
module was imported, and the wall clock of the timed calls. Standard library, torch, numpy
and safetensors only.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import math
import os
import random
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

try:  # harness module; binds its clocks on import, before candidate code runs
    import cpu_timing
    from wire import (EVENT_BANDWIDTH, EVENT_CASE, EVENT_DONE, EVENT_ENV, EVENT_IMPORT_ERROR, EVENT_LATENCY,
                      EVENT_MISSING_ENTRY, EVENT_MODEL_CASE, EVENT_STARTED, EVENT_TAMPER, IMPORT_HUNG, PROBE_FILE,
                      PROBE_MESSAGE_CAP, STARTED, output_file)
except ModuleNotFoundError:  # imported on the host, as part of the grader package
    from . import cpu_timing  # type: ignore[no-redef]
    from .wire import (EVENT_BANDWIDTH, EVENT_CASE, EVENT_DONE, EVENT_ENV,  # type: ignore[no-redef]
                       EVENT_IMPORT_ERROR, EVENT_LATENCY, EVENT_MISSING_ENTRY, EVENT_MODEL_CASE, EVENT_STARTED,
                       EVENT_TAMPER, IMPORT_HUNG, PROBE_FILE, PROBE_MESSAGE_CAP, STARTED, output_file)

# Captured before any candidate code can run: the probe times with these, and compares
# them with what the names point to afterwards.
_perf_counter = time.perf_counter
_TIMERS = ("time.perf_counter", "time.perf_counter_ns", "time.monotonic", "time.time",
           "time.process_time", "time.thread_time", "torch.cuda.synchronize", "torch.cuda.Event",
           "torch.cuda.Event.elapsed_time", "torch.cuda.Event.record", "triton.testing.do_bench",
           # the harness's own timing code and the clocks it bound before the candidate's import
           "cpu_timing._cpu_clock", "cpu_timing._wall_clock", "cpu_timing._one", "cpu_timing.bench_pair",
           "cpu_timing.warm_up", "gpu_timing._timed", "gpu_timing.bench_pair", "gpu_timing._perf_counter",
           "__main__.run_latency", "__main__.run_model", "__main__._perf_counter", "__main__.Output.line",
           "kernel_trace.trace_launches", "kernel_trace.compile_for_sm90", "kernel_trace._Tracer.account",
           "kernel_trace._Tracer.finish", "kernel_trace._hooks", "kernel_trace.sample_grid")


def _resolve(dotted: str) -> Any:
    module_name, _, rest = dotted.partition(".")
    obj = sys.modules.get(module_name)
    for part in rest.split(".") if rest else []:
        if obj is None:
            return None
        obj = getattr(obj, part, None)
        if obj is None and part in ("testing",):  # triton.testing is a submodule
            obj = sys.modules.get(f"{module_name}.{part}")
    return obj


def _fingerprint(obj: Any) -> str | None:
    if obj is None:
        return None
    code = getattr(obj, "__code__", None)
    body = code.co_code + repr(code.co_consts).encode() if code is not None else repr(obj).encode()
    return f"{id(obj)}:{hashlib.sha256(body).hexdigest()[:16]}"


def snapshot(extra: dict[str, Callable] | None = None) -> dict[str, str | None]:
    """Identity and code hash of every timing function (and extra callables, e.g. the baseline)."""
    shot = {name: _fingerprint(_resolve(name)) for name in _TIMERS}
    for name, fn in (extra or {}).items():
        shot[name] = _fingerprint(fn)
    return shot


def _changed(before: dict[str, str | None], after: dict[str, str | None]) -> list[str]:
    """Names whose function was replaced (a name that did not exist before is not 'replaced')."""
    return sorted(k for k, v in before.items() if v is not None and after.get(k) != v)


def inputs_digest(inputs: dict[str, Any]) -> str:
    """sha256 over every input in key order: tensors by dtype, shape and bytes, others by repr."""
    import torch
    digest = hashlib.sha256()
    for key in sorted(inputs):
        value = inputs[key]
        digest.update(key.encode() + b"\0")
        if isinstance(value, torch.Tensor):
            flat = value.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
            digest.update(f"{value.dtype}{tuple(value.shape)}".encode() + flat.numpy().tobytes())
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


def autotune_first_config_when_interpreting() -> None:
    """Under TRITON_INTERPRET=1 there is no GPU to benchmark @triton.autotune's configs on (its
    benchmarker needs a driver and raises): every autotuned kernel then runs its first config, as
    the exercise briefs say, instead of failing the candidate's kernel."""
    if os.environ.get("TRITON_INTERPRET", "0").lower() not in ("1", "true", "yes", "on"):
        return
    try:
        from triton.runtime.autotuner import Autotuner
    except Exception:
        return

    def first_config_wins(self, *args: Any, config: Any, **meta: Any) -> list[float]:
        return [0.0, 0.0, 0.0] if config is self.configs[0] else [math.inf] * 3
    Autotuner._bench = first_config_wins


def load_module_from(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_entry(entry: str, submission: str) -> tuple[Any, str]:
    """Import the submission's module (candidate code runs here); (module, function name)."""
    module_name, _, function = entry.partition(":")
    if submission not in sys.path:
        sys.path.insert(0, submission)
    return importlib.import_module(module_name), function


def _import_watchdog(out: "Output", seconds: float) -> threading.Timer | None:
    """A timer that reports an import still running after `seconds` and ends the process: an import that
    loops or forks without end costs that long, not the run's wall clock. None when seconds is 0."""
    if seconds <= 0:
        return None

    def fire() -> None:
        out.line(event=EVENT_IMPORT_ERROR, message=f"{IMPORT_HUNG} {seconds:g} s", hung=True)
        os._exit(0)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


class Output:
    """Appends one JSON line per event to out/probe.jsonl (wire.PROBE_FILE), flushed at once."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.handle = open(out / PROBE_FILE, "a", encoding="utf-8")

    def line(self, **event: Any) -> None:
        self.handle.write(json.dumps(event) + "\n")
        self.handle.flush()


def _error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[-PROBE_MESSAGE_CAP:]


def _sync(device: str) -> None:
    if device == "cuda":
        import torch
        torch.cuda.synchronize()


def _move(inputs: dict[str, Any], device: str) -> dict[str, Any]:
    import torch
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def _poison(like_numel: int, device: str) -> None:
    """Fill freed memory with NaN so an output the candidate leaves partly unwritten shows it."""
    import torch
    block = torch.full((like_numel,), float("nan"), dtype=torch.float32, device=device)
    del block


def _save_output(out_dir: Path, index: int, tensor: Any, rows: list[int] | None) -> str | None:
    import torch
    from safetensors.torch import save_file
    if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.float32 or tensor.dim() != 2:
        return None
    data = tensor.detach().to("cpu")
    if rows is not None:
        data = data[[r for r in rows if r < data.shape[0]]]
    name = output_file(index)
    save_file({"output": data.contiguous()}, str(out_dir / name))
    return name


def _describe(value: Any) -> dict[str, Any]:
    import torch
    if isinstance(value, torch.Tensor):
        return {"type": "Tensor" if type(value) is torch.Tensor else type(value).__name__,
                "dtype": str(value.dtype).removeprefix("torch."), "shape": list(value.shape),
                "device": value.device.type}
    return {"type": type(value).__name__, "dtype": None, "shape": None, "device": None}


# -- outputs mode ---------------------------------------------------------------------------

def run_outputs(config: dict, spec, fn: Callable, out: Output) -> None:
    device = config["device"]
    cases = {c.name: c for c in spec.correctness_cases(config["spec_mode"])}
    for index, name in enumerate(config["cases"]):
        case = cases[name]
        started = _perf_counter()
        event: dict[str, Any] = {"event": EVENT_CASE, "index": index, "case": name}
        try:
            # A decoy call first, then the real inputs copied into the decoy's buffers: a
            # result cached by data_ptr() returns the decoy's output and fails the comparison.
            decoy_case = dataclasses.replace(case, seed=case.seed + 7919)
            buffers = _move(spec.make_inputs(decoy_case), device)
            spec.call(fn, buffers)
            real = _move(spec.make_inputs(case), device)
            for key, value in real.items():
                if hasattr(value, "copy_") and key in buffers and buffers[key].shape == value.shape:
                    buffers[key].copy_(value)
                else:
                    buffers[key] = value
            _sync(device)
            _poison(case.batch * case.vocab, device)
            result = spec.call(fn, buffers)
            _sync(device)
            event.update(_describe(result), ok=True, inputs_after=inputs_digest(buffers),
                         file=_save_output(out.out, index, result, config.get("rows", {}).get(name)))
        except Exception as exc:  # the candidate's exception is a verdict, not a probe failure
            event.update(ok=False, error=_error_text(exc))
        event["seconds"] = round(_perf_counter() - started, 4)
        out.line(**event)


# -- latency mode ---------------------------------------------------------------------------

def _pool(spec, case, device: str, size: int) -> list[dict[str, Any]]:
    """Distinct inputs for every timed call (no pointer or content reuse a cache could key on)."""
    return [_move(spec.make_inputs(dataclasses.replace(case, seed=case.seed + 1000 + i)), device)
            for i in range(size)]


def _pool_size(spec, case, config: dict) -> int:
    per_call = max(1, spec.bytes_moved(case))
    return max(config.get("min_pool", 4), min(config.get("max_pool", 64),
                                              math.ceil(config["pool_bytes"] / per_call)))


def run_latency(config: dict, spec, fn: Callable, baseline: Callable, out: Output) -> None:
    device = config["device"]
    cases = {c.name: c for c in spec.bench_cases(device)}
    rng = random.Random(config["seed"])
    for index, name in enumerate(config["cases"]):
        case = cases[name]
        pool = _pool(spec, case, device, _pool_size(spec, case, config))
        # Outputs kept for the host to check: calls among the first min_rounds, which always run.
        min_rounds = config["min_rounds"]
        samples = sorted(rng.sample(range(min_rounds), k=min(config["checked_outputs"], min_rounds)))
        if device == "cuda":
            import gpu_timing  # noqa: E402  (harness module, imported only on a GPU)
            stats = gpu_timing.bench_pair(spec, baseline, fn, pool, samples, config)
        else:
            stats = cpu_timing.bench_pair(spec, baseline, fn, pool, samples, config)
        files = {}
        for round_index, (pool_index, result) in stats.pop("kept").items():
            files[str(round_index)] = {"pool_index": pool_index,
                                       "file": _save_output(out.out, index * 10000 + round_index, result, None),
                                       **_describe(result)}
        out.line(event=EVENT_LATENCY, index=index, case=name, checked=files, **stats)


# -- model mode ---------------------------------------------------------------------------

_RECORD_KEYS = ("kind", "name", "cache_key", "grid", "n_programs", "sampled_programs", "num_warps", "max_tile",
                "bytes_loaded", "bytes_stored", "bytes_atomic", "sector_bytes_loaded", "sector_bytes_stored",
                "sector_bytes_atomic", "bytes_read", "bytes_written", "cpu_s", "explained_cpu_s")
_BUILD_KEYS = ("name", "num_warps", "n_regs", "stack_bytes", "spill_store_bytes", "spill_load_bytes", "shared_bytes",
               "global_loads", "global_stores", "has_loops", "compile_s", "ptxas_timed_out")


def run_model(config: dict, spec, fn: Callable, entry: str, out: Output) -> None:
    """Trace one call per case under the Triton interpreter (kernels on a sample of their programs,
    PyTorch ops between them) and build each launched kernel for sm_90: the evidence of a modelled
    GPU time, which the host computes (grader/checks/gpu_model.py)."""
    import kernel_trace
    cases = {c.name: c for c in spec.model_cases()}
    for index, name in enumerate(config["cases"]):
        case = cases[name]
        started = _perf_counter()
        event: dict[str, Any] = {"event": EVENT_MODEL_CASE, "index": index, "case": name, "entry": entry}
        try:
            # Twice: the first call pays one-off costs (lazy imports, autotune, caches) that would
            # otherwise look like CPU time no recorded kernel or op explains.
            for _ in range(2):
                records = kernel_trace.trace_launches(lambda **kw: spec.call(fn, kw), spec.make_inputs(case),
                                                      torch_ops=True, sample_programs=config["sample_programs"])
        except Exception as exc:  # the candidate's exception is a verdict, not a probe failure
            event.update(ok=False, error=_error_text(exc), seconds=round(_perf_counter() - started, 3))
            out.line(**event)
            continue
        call = records.pop()  # {"kind": "call", ...}: always last, kept whatever the cap
        truncated = len(records) > config["max_records"]
        records = records[:config["max_records"]] + [call]
        builds: dict[str, dict] = {}
        for record in records:
            key = record.get("cache_key")
            if record["kind"] != "triton" or key in builds:
                continue
            per_thread = record["max_tile"] / (32 * max(1, record["num_warps"] or 4))
            if per_thread > config["max_elems_per_thread"]:  # builds of huge tiles take minutes
                builds[key] = {"name": record["name"], "skipped": f"{per_thread:.0f} elements per thread"}
                continue
            try:
                build = kernel_trace.compile_for_sm90(record, ptxas_timeout_s=config["ptxas_timeout_s"])
                builds[key] = {k: build.get(k) for k in _BUILD_KEYS}
            except Exception as exc:
                builds[key] = {"name": record["name"], "error": _error_text(exc)[:300]}
        event.update(ok=True, truncated=truncated, builds=builds,
                     records=[{k: r[k] for k in _RECORD_KEYS if k in r} for r in records],
                     seconds=round(_perf_counter() - started, 3))
        out.line(**event)


def copy_bandwidth_gbs(device: str) -> float:
    """Measured copy bandwidth (read + write bytes per second / 1e9), best of several copies."""
    import torch
    n = (1024 if device == "cuda" else 64) * 2**20 // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(10):
        if device == "cuda":  # device time: host launch and sync overhead would understate the bandwidth
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            dst.copy_(src)
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3)
        else:
            started = _perf_counter()
            dst.copy_(src)
            best = min(best, _perf_counter() - started)
    return 2 * n * 4 / best / 1e9


def main() -> int:
    print(STARTED, flush=True)  # before candidate code: see pipeline._harness_started
    config = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    out = Output(Path(os.environ["MLGRADE_OUT"]))
    tests = Path(os.environ["MLGRADE_TESTS"])
    spec = load_module_from(str(tests / config["spec"]), "mlgrade_spec")
    baseline = None
    if config["mode"] == "latency":
        module, _, function = config["baseline"].partition(":")
        baseline = getattr(load_module_from(str(Path(os.environ["MLGRADE_BASELINE"]) / f"{module}.py"),
                                            "mlgrade_baseline"), function)
    try:  # import the timing libraries now, so that their functions are fingerprinted as they are
        import triton.testing  # noqa: F401
    except Exception:
        pass
    autotune_first_config_when_interpreting()
    if config["mode"] == "model":  # before any kernel runs: it snapshots triton.language (kernel_trace.py)
        import kernel_trace  # noqa: F401  (imported for its side effect)
    before = snapshot({"baseline": baseline} if baseline else None)
    out.line(event=EVENT_STARTED, mode=config["mode"])
    import torch
    out.line(event=EVENT_ENV, python=sys.version.split()[0], torch=torch.__version__,
             triton=getattr(sys.modules.get("triton"), "__version__", None))
    entries = config.get("entries") or [config["entry"]]  # model mode: the first one defined is used
    watchdog = _import_watchdog(out, float(config.get("import_timeout", 0)))
    try:
        module, _ = load_entry(entries[0], os.environ["MLGRADE_SUBMISSION"])
    except BaseException as exc:  # an import that fails or exits is the candidate's verdict
        out.line(event=EVENT_IMPORT_ERROR, message=_error_text(exc))
        return 0
    finally:
        if watchdog is not None:
            watchdog.cancel()
    found = [(entry, getattr(sys.modules.get(entry.partition(":")[0]), entry.partition(":")[2], None))
             for entry in entries]
    entry, fn = next(((e, f) for e, f in found if callable(f)), (entries[0], None))
    if not callable(fn):  # an optional entry (a Triton kernel) the candidate did not write
        function = entries[0].partition(":")[2]
        out.line(event=EVENT_MISSING_ENTRY, message=f"{module.__name__}.py defines no function {function}")
        return 0
    after_import = snapshot({"baseline": baseline} if baseline else None)
    # Reported at once: a run that then hangs or is killed still leaves this evidence.
    out.line(event=EVENT_TAMPER, stage="import", changed=_changed(before, after_import))
    if config["mode"] == "outputs":
        run_outputs(config, spec, fn, out)
    elif config["mode"] == "model":
        run_model(config, spec, fn, entry, out)
    else:
        out.line(event=EVENT_BANDWIDTH, copy_gbs=copy_bandwidth_gbs(config["device"]))
        run_latency(config, spec, fn, baseline, out)
    out.line(event=EVENT_TAMPER, stage="run",
             changed=_changed(before, snapshot({"baseline": baseline} if baseline else None)))
    out.line(event=EVENT_DONE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
