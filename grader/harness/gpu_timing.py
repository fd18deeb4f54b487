"""GPU timing for the latency probe: CUDA events, L2 flushed, fresh inputs, interleaved, stop on noise.

Used by probe.py when the device is "cuda" (imported only there). The method, in the
spirit of `triton.testing.do_bench` but interleaving two functions:

- before every timed call the L2 cache is flushed by zeroing a buffer at least twice the
  size of L2; the flush runs before the start event, so it is not measured;
- every call gets the next input from a pool whose total size exceeds L2 (distinct
  storage and content per call: nothing a cache could key on);
- baseline and candidate alternate in random order within each round, in one process;
- rounds continue until the relative standard error of both medians is at most
  `target_rse` (after `min_rounds`), bounded by `max_rounds` and a wall-clock cap;
- separately, `wall_calls` back-to-back calls of each function are timed by the host clock
  ending in a full device synchronize, to compare with the sum of their event times: work
  on a side stream, or forged events, show up as a gap.
"""
from __future__ import annotations

import random
import time
from typing import Any, Callable

import torch

try:  # harness module; binds its clocks on import, before candidate code runs
    import cpu_timing
except ModuleNotFoundError:  # imported on the host, as part of the grader package
    from . import cpu_timing  # type: ignore[no-redef]

_perf_counter = time.perf_counter  # bound at import, before candidate code runs


rse_of_median = cpu_timing.rse_of_median


def _flush_buffer() -> torch.Tensor:
    l2 = getattr(torch.cuda.get_device_properties(torch.cuda.current_device()), "L2_cache_size", 0) or 50 * 2**20
    return torch.empty(max(2 * l2, 256 * 2**20), dtype=torch.int8, device="cuda")


def _timed(fn: Callable[[], Any], flush: torch.Tensor) -> tuple[float, Any]:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    flush.zero_()
    start.record()
    result = fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3, result


def _wall_check(call: Callable[[int], Any], count: int) -> tuple[float, float]:
    """(sum of event times, host wall clock ending in a device sync) over `count` back-to-back calls."""
    events = []
    torch.cuda.synchronize()
    started = _perf_counter()
    for index in range(count):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call(index)
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    wall = _perf_counter() - started
    return sum(s.elapsed_time(e) for s, e in events) / 1e3, wall


def bench_pair(spec, baseline: Callable, fn: Callable, pool: list, samples: list[int], config: dict) -> dict:
    """Time baseline and candidate on the GPU; return what probe.py reports for one case."""
    flush = _flush_buffer()
    stream = torch.cuda.current_stream()
    fns = {"baseline": baseline, "candidate": fn}
    times: dict[str, list[float]] = {"baseline": [], "candidate": []}
    kept: dict[int, tuple[int, Any]] = {}
    rng = random.Random(config["seed"])
    min_rounds, max_rounds = config.get("min_rounds", 20), config.get("max_rounds", config["rounds"])
    wanted = set(samples)  # among the first min_rounds, which always run
    target, cap = config.get("target_rse", 0.01), config.get("max_seconds_per_case", 30.0)
    def synced(function: Callable) -> Callable[[int], None]:
        def call(index: int) -> None:
            spec.call(function, pool[index % len(pool)])
            torch.cuda.synchronize()
        return call

    # Warm-up (torch.compile, autotuning, lazy initialisation) until the calls' times settle.
    warmup = {name: cpu_timing.warm_up(synced(function), config["warmup"], config.get("warmup_limit_s", 60.0),
                                       clock=_perf_counter)
              for name, function in fns.items()}
    started, call_index = _perf_counter(), 0
    side_stream = False
    while True:
        order = list(fns)
        rng.shuffle(order)
        for name in order:
            pool_index = call_index % len(pool)
            seconds, result = _timed(lambda: spec.call(fns[name], pool[pool_index]), flush)
            side_stream |= torch.cuda.current_stream() != stream
            times[name].append(seconds)
            if name == "candidate" and len(times[name]) - 1 in wanted:
                kept[len(times[name]) - 1] = (pool_index, result)
            call_index += 1
        rounds = len(times["candidate"])
        converged = rounds >= min_rounds and all(rse_of_median(t) <= target for t in times.values())
        if converged or rounds >= max_rounds or _perf_counter() - started > cap:
            break
    wall_calls = config.get("wall_calls", 20)
    sums, walls = {}, {}
    for name, function in fns.items():
        sums[name], walls[name] = _wall_check(lambda i: spec.call(function, pool[i % len(pool)]), wall_calls)
    return {"method": f"CUDA events; L2 flushed with a {flush.numel() >> 20} MiB buffer between calls; fresh inputs "
                      f"from a pool of {len(pool)}; baseline and candidate interleaved; stop at RSE(median) <= "
                      f"{target:.0%} (min {min_rounds}, max {max_rounds} rounds, {cap:g} s cap)",
            "baseline_s": times["baseline"], "candidate_s": times["candidate"],
            # The wall agreement compares the wall-check sums with their own wall clocks.
            "wall_s": walls, "wall_sum_s": sums, "side_stream": side_stream,
            "rse": {name: rse_of_median(t) for name, t in times.items()}, "warmup": warmup, "kept": kept}
