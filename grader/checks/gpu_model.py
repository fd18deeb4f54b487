"""A modelled H100 time for one call, from what the kernel trace saw on the CPU (modelled, not measured).

Input: the records of `harness/kernel_trace.py` for one call (Triton launches with their
memory traffic and sm_90 build statistics; PyTorch ops with their tensor sizes and syncs).
Output: seconds, and the parts that make them up, for the report.

The operation graded is memory-bound, so the model is a roofline over HBM plus the costs
that make real code miss it:

- every kernel (a Triton launch or a PyTorch op) costs at least `min_kernel_s` on the device
  and `launch_s` of host time; host and device overlap until a sync (`.item()`, `nonzero`,
  `unique`...), which costs `sync_s` and ends the overlap (a Python loop of small ops with
  syncs is host-bound, as on a real GPU);
- a Triton launch moves its coalescing-aware traffic (32-byte sectors touched) plus its
  register spills (ptxas' spill bytes per thread x threads x programs, stored and loaded)
  at `hbm_bytes_per_s` scaled by how much of the GPU it keeps busy: resident warps per SM
  (limited by warps, registers and shared memory) against `saturating_warps_per_sm`, and
  the idle tail of the last wave;
- a PyTorch op moves its inputs and outputs once at full bandwidth (no launch shape to
  judge: an optimistic figure for it).

The constants describe an H100 SXM; they are not fitted to any submission. How far the
model's ranking agrees with measured H100 timings is recorded in docs/benchmarks.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# PyTorch ops that wait for the device on a GPU (their result's size or value goes to the host).
SYNC_OPS = ("aten._local_scalar_dense", "aten.nonzero", "aten.unique", "aten._unique", "aten.masked_select",
            "aten.item", "aten.equal", "aten.is_nonzero", "aten.repeat_interleave", "aten.bincount")


@dataclass(frozen=True)
class GpuTarget:
    name: str = "NVIDIA H100 SXM (modelled)"
    sms: int = 132
    hbm_bytes_per_s: float = 3.0e12        # achievable copy bandwidth (~90% of the 3.35 TB/s peak)
    saturating_warps_per_sm: int = 8       # resident warps per SM that keep enough loads in flight
    max_warps_per_sm: int = 64
    max_programs_per_sm: int = 32
    registers_per_sm: int = 65536
    shared_bytes_per_sm: int = 228 * 1024
    launch_s: float = 5e-6                 # host time to launch one kernel (PyTorch op or Triton)
    min_kernel_s: float = 2.5e-6           # device time of the smallest kernel
    sync_s: float = 10e-6                  # a device-to-host sync (.item(), nonzero, ...)


H100 = GpuTarget()


@dataclass
class Modelled:
    seconds: float = 0.0
    device_s: float = 0.0
    host_s: float = 0.0
    kernels: int = 0
    syncs: int = 0
    bytes: int = 0
    spill_bytes: int = 0
    parts: list[dict[str, Any]] = field(default_factory=list)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0


SPILL_BYTES_PER_ELEMENT = 40  # measured on sm_90 builds: 512 fp32 elements per thread -> ~21 KB spilled
MAX_ELEMS_PER_THREAD = 256    # tiles larger than this are not built (a build takes minutes); estimated


def spill_bytes_per_thread(record: dict[str, Any], build: dict[str, Any]) -> int:
    """Spill traffic per thread (stores + loads) from the sm_90 build, or estimated from the tile
    when the tile was too large to build in the grading's time (or the build failed)."""
    if build.get("n_regs") is not None and not build.get("ptxas_timed_out"):
        return _int(build.get("spill_store_bytes")) + _int(build.get("spill_load_bytes"))
    per_thread = _int(record.get("max_tile")) / (32 * max(1, _int(record.get("num_warps")) or 4))
    return int(SPILL_BYTES_PER_ELEMENT * per_thread) if per_thread > 64 else 0


def triton_efficiency(record: dict[str, Any], build: dict[str, Any], target: GpuTarget = H100) -> float:
    """The fraction of HBM bandwidth a launch of this shape can draw (occupancy x wave tail)."""
    warps = max(1, _int(record.get("num_warps")) or 4)
    programs = max(1, _int(record.get("n_programs")))
    regs = _int(build.get("n_regs")) or 32
    shared = _int(build.get("shared_bytes"))
    per_sm = min(target.max_programs_per_sm, target.max_warps_per_sm // warps,
                 target.registers_per_sm // (regs * 32 * warps),
                 target.shared_bytes_per_sm // shared if shared else target.max_programs_per_sm)
    per_sm = max(per_sm, 1)  # the hardware runs at least one (ptxas caps registers to make it fit)
    capacity = per_sm * target.sms
    resident = min(programs, capacity)
    parallel = min(1.0, resident * warps / (target.sms * target.saturating_warps_per_sm))
    waves = math.ceil(programs / capacity)
    tail = programs / (waves * capacity) if programs > capacity else 1.0
    return parallel * tail


def model_call(records: list[dict[str, Any]], builds: dict[str, dict[str, Any]],
               target: GpuTarget = H100) -> Modelled:
    """Modelled seconds of one call: `records` from the trace, `builds` by cache_key from compile_for_sm90."""
    result = Modelled()
    host = device = 0.0  # since the last sync
    for record in records:
        kind, sync = record.get("kind"), False
        if kind == "triton":
            build = builds.get(str(record.get("cache_key")), {})
            traffic = sum(_int(record.get(f"sector_bytes_{verb}")) or _int(record.get(f"bytes_{verb}"))
                          for verb in ("loaded", "stored")) + 2 * _int(record.get("sector_bytes_atomic") or
                                                                      record.get("bytes_atomic"))
            threads = 32 * max(1, _int(record.get("num_warps")) or 4)
            spill = spill_bytes_per_thread(record, build) * threads * max(1, _int(record.get("n_programs")))
            efficiency = triton_efficiency(record, build, target)
            seconds = max(target.min_kernel_s, (traffic + spill) / (target.hbm_bytes_per_s * efficiency))
            result.bytes += traffic
            result.spill_bytes += spill
            result.parts.append({"kernel": str(record.get("name"))[:80], "us": round(seconds * 1e6, 2),
                                 "bytes": traffic, "spill_bytes": spill, "efficiency": round(efficiency, 3),
                                 "programs": _int(record.get("n_programs")), "warps": _int(record.get("num_warps")),
                                 "regs": _int(build.get("n_regs"))})
        elif kind == "torch":
            traffic = _int(record.get("bytes_read")) + _int(record.get("bytes_written"))
            sync = str(record.get("name", "")).startswith(SYNC_OPS)
            if traffic == 0 and not sync:
                continue  # allocation or metadata: no kernel
            seconds = max(target.min_kernel_s, traffic / target.hbm_bytes_per_s)
            result.bytes += traffic
        else:
            continue
        result.kernels += 1
        host += target.launch_s
        device += seconds
        result.device_s += seconds
        if sync:
            result.syncs += 1
            result.seconds += max(host, device) + target.sync_s
            host = device = 0.0
    result.seconds += max(host, device)
    result.host_s = result.kernels * target.launch_s
    return result
