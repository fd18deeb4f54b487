"""The H100 cost model on constructed trace records: each cost it claims to model moves the time
the way a GPU would (pure computation on records; the traces themselves are tested in
test_kernel_trace.py and end to end in test_model_check.py)."""
from __future__ import annotations

import pytest

from grader.checks.gpu_model import H100, model_call, spill_bytes_per_thread, triton_efficiency

MB = 10**6


def launch(programs: int, loaded: int, stored: int, warps: int = 4, tile: int = 1024, key: str = "k") -> dict:
    return {"kind": "triton", "name": "kernel", "cache_key": key, "grid": [programs, 1, 1], "n_programs": programs,
            "num_warps": warps, "max_tile": tile, "sector_bytes_loaded": loaded, "sector_bytes_stored": stored}


def op(name: str, read: int, written: int) -> dict:
    return {"kind": "torch", "name": name, "bytes_read": read, "bytes_written": written}


CLEAN = {"k": {"n_regs": 40, "spill_store_bytes": 0, "spill_load_bytes": 0, "shared_bytes": 16}}


def test_a_big_streaming_kernel_runs_at_the_roofline() -> None:
    result = model_call([launch(1024, 64 * MB, 32 * MB)], CLEAN)
    assert result.seconds == pytest.approx(96 * MB / H100.hbm_bytes_per_s)
    assert result.kernels == 1 and result.syncs == 0 and result.spill_bytes == 0


def test_a_grid_too_small_for_132_sms_is_slower_for_the_same_traffic() -> None:
    wide = model_call([launch(1024, 64 * MB, 32 * MB)], CLEAN).seconds
    narrow = model_call([launch(64, 64 * MB, 32 * MB)], CLEAN).seconds
    assert narrow > 3 * wide
    assert triton_efficiency(launch(64, 1, 1), CLEAN["k"]) == pytest.approx(64 * 4 / (132 * 8))


def test_register_spills_are_charged_as_memory_traffic() -> None:
    spilled = {"k": {"n_regs": 255, "spill_store_bytes": 8000, "spill_load_bytes": 12000, "shared_bytes": 0}}
    result = model_call([launch(1024, 64 * MB, 32 * MB, warps=8)], spilled)
    assert result.spill_bytes == 20000 * 256 * 1024
    assert result.seconds > 2 * model_call([launch(1024, 64 * MB, 32 * MB, warps=8)], CLEAN).seconds


def test_a_tile_too_large_to_build_is_charged_an_estimated_spill() -> None:
    record = launch(64, 32 * MB, 32 * MB, warps=8, tile=131072)  # 512 elements per thread
    assert spill_bytes_per_thread(record, {"skipped": "512 elements per thread"}) == 40 * 512
    assert spill_bytes_per_thread(launch(64, 1, 1, tile=2048), {"skipped": "x"}) == 0  # 16 per thread: no spill


def test_many_small_ops_are_launch_bound_and_syncs_serialise() -> None:
    fused = model_call([launch(1024, 8 * MB, 8 * MB)], CLEAN).seconds
    loop = [op("aten.mul.Tensor", 4096, 4096) for _ in range(500)]
    looped = model_call(loop, {})
    assert looped.kernels == 500 and looped.seconds == pytest.approx(500 * H100.launch_s)
    synced = model_call([r for pair in zip(loop, [op("aten._local_scalar_dense.default", 4, 0)] * 500)
                         for r in pair], {})
    assert synced.syncs == 500 and synced.seconds > looped.seconds + 500 * H100.sync_s * 0.99
    assert fused < looped.seconds / 50


def test_allocations_and_views_cost_nothing() -> None:
    assert model_call([op("aten.empty.memory_format", 0, 0)], {}).kernels == 0
