"""pytest-benchmark timing of the baseline and the candidate, run by probe.py inside the sandbox.

Each round gets the next input from a pool of distinct inputs (setup is not timed). The
wall clock of the whole pedantic run is taken with the probe's own perf_counter, captured
before candidate code was imported, so that a patched timer shows as disagreement.
"""
from __future__ import annotations

import itertools

import pytest


@pytest.mark.parametrize("which", ["baseline", "candidate"])
def test_latency(benchmark, probe_state: dict, which: str) -> None:
    fn, pool, spec = probe_state["fns"][which], probe_state["pool"], probe_state["spec"]
    samples = probe_state["samples"] if which == "candidate" else set()
    kept = probe_state["kept"]
    calls = itertools.count()

    def setup():
        index = next(calls)
        return (index,), {}

    def one_call(index: int) -> None:
        result = spec.call(fn, pool[index % len(pool)])
        if index in samples:
            kept[index] = (index % len(pool), result)

    clock = probe_state["clock"]
    started = clock()
    benchmark.pedantic(one_call, setup=setup, rounds=probe_state["rounds"], warmup_rounds=probe_state["warmup"],
                       iterations=1)
    probe_state["wall"][which] = clock() - started
