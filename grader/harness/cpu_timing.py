"""CPU timing for the latency probe: process CPU time, interleaved calls, warm-up until stable.

Used by probe.py when the device is "cpu". Why not wall-clock time, and why not
pytest-benchmark (which timed one function fully, then the other):

- on a shared 2-core machine the wall clock of a call includes the time the scheduler gave
  to other processes; the *process CPU time* (every thread of this process, user + system)
  does not, so a CPU-bound neighbour moves it by a few per cent instead of several times;
- work hidden from that clock (a helper process) shows as wall time without CPU time: the
  candidate's CPU/wall ratio is reported and compared with the baseline's on the host;
- baseline and candidate alternate in random order within each round, so drift (frequency,
  cache pressure, a neighbour starting) lands on both alike and cancels in the speed-up;
- warm-up (torch.compile, autotuning, lazy initialisation) runs before the timed rounds until
  the last calls agree, bounded by `warmup_limit_s`; its time is reported, never timed, and
  it is not inside the wall window that the tamper check compares the timed calls with;
- rounds continue until the relative standard error of both medians is small, bounded by
  `max_rounds` and a time cap; the RSE is reported so the host can refuse noise.

The clocks are bound when this module is imported, before any candidate code runs.
"""
from __future__ import annotations

import math
import random
import statistics
import time
from typing import Any, Callable

_cpu_clock = time.process_time   # CLOCK_PROCESS_CPUTIME_ID: all threads of this process
_wall_clock = time.perf_counter


def rse_of_median(samples: list[float]) -> float:
    """Relative standard error of the median, 1.2533 * sigma / sqrt(n) / median, with sigma estimated
    robustly as 1.4826 * MAD: one call stretched by an interrupt must not make a whole series 'noisy'."""
    if len(samples) < 3:
        return math.inf
    middle = statistics.median(samples)
    mad = statistics.median(abs(x - middle) for x in samples)
    return 1.2533 * 1.4826 * mad / math.sqrt(len(samples)) / middle if middle > 0 else math.inf


def _one(call: Callable[[], Any]) -> tuple[float, float, Any]:
    """(CPU seconds, wall seconds, result) of one call."""
    wall0, cpu0 = _wall_clock(), _cpu_clock()
    result = call()
    cpu1, wall1 = _cpu_clock(), _wall_clock()
    return cpu1 - cpu0, wall1 - wall0, result


def warm_up(call: Callable[[int], Any], min_calls: int, limit_s: float, settle: float = 0.15,
            clock: Callable[[], float] | None = None) -> dict[str, Any]:
    """Call until the last three call times (CPU time, or `clock`) agree within `settle` of their
    median (at least min_calls), or until limit_s of wall time has passed; what happened, for the report."""
    started, times = _wall_clock(), []
    while True:
        if clock is None:
            seconds, _, _ = _one(lambda: call(len(times)))
        else:
            begin = clock()
            call(len(times))
            seconds = clock() - begin
        times.append(seconds)
        last = times[-3:]
        settled = len(times) >= max(3, min_calls) and max(last) - min(last) <= settle * statistics.median(last)
        spent = _wall_clock() - started
        if settled or spent > limit_s:
            return {"calls": len(times), "seconds": round(spent, 4), "first_call_s": round(times[0], 4),
                    "settled": settled}


def bench_pair(spec, baseline: Callable, fn: Callable, pool: list, samples: list[int], config: dict) -> dict:
    """Time baseline and candidate on the CPU; return what probe.py reports for one case.

    `samples`: indices of the candidate's timed calls whose outputs are kept for the host to check
    (chosen among the first `min_rounds`, which always run)."""
    import torch
    torch.set_num_threads(config["threads"])
    fns = {"baseline": baseline, "candidate": fn}
    rng = random.Random(config["seed"])
    warmup = {name: warm_up(lambda i, f=f: spec.call(f, pool[i % len(pool)]), config["warmup"],
                            config.get("warmup_limit_s", 60.0))
              for name, f in fns.items()}
    cpu: dict[str, list[float]] = {"baseline": [], "candidate": []}
    wall: dict[str, list[float]] = {"baseline": [], "candidate": []}
    kept: dict[int, tuple[int, Any]] = {}
    min_rounds, max_rounds = config.get("min_rounds", 15), config["rounds"]
    target, cap = config.get("target_rse", 0.01), config.get("max_seconds_per_case", 30.0)
    wanted = set(samples)
    started, call_index = _wall_clock(), 0
    while True:
        order = list(fns)
        rng.shuffle(order)
        for name in order:
            pool_index = call_index % len(pool)
            seconds, wall_s, result = _one(lambda: spec.call(fns[name], pool[pool_index]))
            cpu[name].append(seconds)
            wall[name].append(wall_s)
            if name == "candidate" and len(cpu[name]) - 1 in wanted:
                kept[len(cpu[name]) - 1] = (pool_index, result)
            del result
            call_index += 1
        rounds = len(cpu["candidate"])
        converged = rounds >= min_rounds and all(rse_of_median(t) <= target for t in cpu.values())
        if converged or rounds >= max_rounds or _wall_clock() - started > cap:
            break
    window = _wall_clock() - started
    return {"method": f"process CPU time of each call (all threads), {config['threads']} torch thread(s); "
                      f"baseline and candidate interleaved; fresh inputs from a pool of {len(pool)}; warm-up "
                      f"until stable (at most {config.get('warmup_limit_s', 60.0):g} s), not timed; stop at "
                      f"RSE(median) <= {target:.0%} (min {min_rounds}, max {max_rounds} rounds, {cap:g} s cap)",
            "threads": config["threads"], "baseline_s": cpu["baseline"], "candidate_s": cpu["candidate"],
            "wall_calls_s": wall, "wall_s": {"window": window},
            "wall_sum_s": {name: sum(times) for name, times in wall.items()},
            "rse": {name: rse_of_median(t) for name, t in cpu.items()}, "warmup": warmup, "kept": kept}
