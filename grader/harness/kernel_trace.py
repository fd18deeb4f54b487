"""Evidence for a GPU cost model of Triton kernels, gathered on a CPU: launches and sm_90 builds.

- `trace_launches(fn, inputs)`: runs `fn(**inputs)` under the Triton interpreter
  (TRITON_INTERPRET=1 must be set before triton is imported) and returns one record per
  kernel launch, in order: what was launched (name, source hash, grid, warps, stages,
  constexprs, argument types and the 16-byte alignment a GPU launch would specialise on) and
  the memory traffic of all its programs (active lanes x element size, 32-byte sectors, and
  per argument).
- `compile_for_sm90(record)`: builds that exact specialisation for sm_90 with Triton's own
  compiler and ptxas (no GPU, no driver) and reads registers, spills, shared memory and the
  global/local memory instructions of the PTX.

Runs inside the candidate's process (sandbox): standard library, numpy, torch and triton only.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import re
import shutil
import subprocess
import sys
import tempfile
import time
import types
import warnings
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.utils._python_dispatch
import torch.utils._pytree

from triton import knobs
from triton.backends.compiler import GPUTarget
from triton.compiler.compiler import ASTSource, make_backend
from triton.runtime.autotuner import Autotuner, Heuristics
from triton.runtime.jit import JITFunction, create_function_from_signature

__all__ = ["trace_launches", "compile_for_sm90", "SM90"]

_perf_counter = time.perf_counter  # bound before candidate code can replace it
_cpu_clock = time.process_time
SM90 = GPUTarget("cuda", 90, 32)
SECTOR = 32  # bytes: the granularity of DRAM/L2 transactions on sm_90
_TWINS: dict[Any, JITFunction] = {}         # raw python function -> compilable JITFunction
_BY_KEY: dict[str, JITFunction] = {}        # record["cache_key"] -> JITFunction
_COMPILED: dict[tuple, dict] = {}           # compile_for_sm90 memo
_RAW_CONSTS: dict[tuple, dict] = {}         # (cache_key, repr of the recorded constexprs) -> raw values


# --------------------------------------------------------------------- compilable twins

def _raw_fn(kernel: Any) -> Callable:
    """The undecorated python function under jit / interpreter / autotune / heuristics wrappers."""
    while isinstance(kernel, (Autotuner, Heuristics)) or (hasattr(kernel, "fn") and not inspect.isfunction(kernel)):
        kernel = kernel.fn
    return kernel


def _jit_kwargs(kernel: Any) -> dict:
    while not hasattr(kernel, "kwargs") and hasattr(kernel, "fn") and not inspect.isfunction(kernel):
        kernel = kernel.fn
    kw = dict(getattr(kernel, "kwargs", {}) or {})  # InterpretedFunction keeps @jit's arguments
    if isinstance(kernel, JITFunction):
        kw = {"do_not_specialize": [p.num for p in kernel.params if p.do_not_specialize],
              "do_not_specialize_on_alignment": [p.num for p in kernel.params if p.do_not_specialize_on_alignment],
              "noinline": kernel.noinline}
    return {k: v for k, v in kw.items() if k in ("do_not_specialize", "do_not_specialize_on_alignment", "noinline")
            and v is not None}


def _swap(value: Any) -> Any:
    from triton.runtime.interpreter import InterpretedFunction
    return _twin(value) if type(value) is InterpretedFunction else value


def _copy_cell(cell: Any) -> Any:
    try:
        return types.CellType(cell.cell_contents)
    except ValueError:  # an empty cell
        return types.CellType()


def _twin(kernel: Any) -> JITFunction:
    """A JITFunction for `kernel` that the compiler accepts in a TRITON_INTERPRET=1 process.

    Under the interpreter @triton.jit returns InterpretedFunction objects, which the code
    generator rejects as callees ("Unsupported function referenced"). The twin is the same
    code object with a copy of its globals (and closure cells) where every InterpretedFunction
    is replaced by its own twin; the candidate's module is not touched."""
    while isinstance(kernel, (Autotuner, Heuristics)):
        kernel = kernel.fn
    if isinstance(kernel, JITFunction) and not knobs.runtime.interpret:
        return kernel
    raw = _raw_fn(kernel)
    if raw in _TWINS:
        return _TWINS[raw]
    scope = dict(raw.__globals__)
    cells = tuple(_copy_cell(c) for c in (raw.__closure__ or ()))
    fn = types.FunctionType(raw.__code__, scope, raw.__name__, raw.__defaults__, cells or None)
    fn.__qualname__, fn.__kwdefaults__, fn.__annotations__ = raw.__qualname__, raw.__kwdefaults__, raw.__annotations__
    twin = JITFunction(fn, **_jit_kwargs(kernel))
    _TWINS[raw] = twin  # before recursing: a kernel may reach itself through its globals
    for name in raw.__code__.co_names:
        if name in scope:
            scope[name] = _swap(scope[name])
    for cell in cells:
        with contextlib.suppress(ValueError):
            cell.cell_contents = _swap(cell.cell_contents)
    return twin


def _lang_objects() -> list[Any]:
    import triton.language as tl
    mods = [m for n, m in list(sys.modules.items()) if n == "triton.language" or n.startswith("triton.language.")]
    return mods + [tl.core.tensor, tl.core.dtype, tl.core.condition, tl.core.tensor_descriptor_base]


def _interpreter_made(value: Any) -> bool:
    from triton.runtime.interpreter import InterpretedFunction
    if isinstance(value, InterpretedFunction):
        return False  # a jit function of triton.language itself under TRITON_INTERPRET=1
    inner = getattr(value, "fget", None) or getattr(value, "func", None) or value
    return getattr(inner, "__module__", None) == "triton.runtime.interpreter"


def _pristine(value: Any) -> Any:
    """Undo one interpreter patch of a builtin when the snapshot itself was taken too late."""
    member = (getattr(value, "__kwdefaults__", None) or {}).get("member")
    return member if member is not None and not _interpreter_made(member) else value


# triton.language as imported, before any kernel ran: the interpreter patches it while a grid
# runs, and a jit function called from a kernel (tl.max, tl.sum... are jit functions) patches
# tl.core again without ever restoring it, so after one interpreted launch `tensor.to` and
# friends still build interpreter tensors and the compiler fails on them.
_LANG_SNAPSHOT: dict[tuple[int, str], tuple[Any, str, Any]] = {
    (id(obj), name): (obj, name, _pristine(value))
    for obj in _lang_objects() for name, value in list(vars(obj).items())}


@contextlib.contextmanager
def _compile_mode() -> Iterator[None]:
    """triton.language and every module attribute as the compiler needs them, restored on exit:
    the snapshot's values back, InterpretedFunction attributes swapped for their twins."""
    from triton.runtime.interpreter import InterpretedFunction
    tainted = [f"{getattr(o, '__name__', o)}.{n}" for o, n, v in _LANG_SNAPSHOT.values() if _interpreter_made(v)]
    if tainted:
        raise RuntimeError(f"kernel_trace was imported after an interpreted launch ({tainted[:3]}...); "
                           "import it first, or compile in a process without TRITON_INTERPRET")
    changes: list[tuple[Any, str, Any]] = []
    try:
        for obj, name, value in _LANG_SNAPSHOT.values():
            current = vars(obj).get(name, _LANG_SNAPSHOT)
            if current is not value:
                changes.append((obj, name, current))
                setattr(obj, name, value)
        for module in list(sys.modules.values()):  # also reaches `helpers.kernel` in a candidate
            for name, value in list(getattr(module, "__dict__", {}).items()):
                if type(value) is InterpretedFunction:  # type(): isinstance wakes deprecation proxies
                    changes.append((module, name, value))
                    setattr(module, name, _twin(value))
        for obj in _lang_objects()[-4:]:
            for name, value in list(vars(obj).items()):
                # tensor.max & co: with jit functions Triton sets the function itself as the
                # method; under the interpreter a plain wrapper closing over it.
                cells = getattr(value, "__closure__", None) or ()
                inner = next((c.cell_contents for c in cells if type(c.cell_contents) is InterpretedFunction), None)
                if type(value) is InterpretedFunction or (inner is not None and "_tensor_member_fn" in value.__qualname__):
                    changes.append((obj, name, value))
                    setattr(obj, name, _twin(inner if inner is not None else value))
        with knobs.runtime.scope():
            knobs.runtime.interpret = False  # ConstexprFunction returns raw values when it is set
            yield
    finally:
        for obj, name, value in reversed(changes):
            if value is _LANG_SNAPSHOT:
                delattr(obj, name)
            else:
                setattr(obj, name, value)


def _specialise(twin: JITFunction, args: tuple, kwargs: dict) -> tuple[Any, dict, dict, dict]:
    """(options, signature, constexprs, attrs) exactly as JITFunction.run computes them for a
    GPU launch with these arguments (types, 16-byte alignment, ints equal to 1 made constexpr)."""
    backend = make_backend(SM90)
    binder = create_function_from_signature(twin.signature, twin.params, backend)
    kwargs = {k: v for k, v in kwargs.items() if k not in ("grid", "warmup")}
    bound, specialization, _ = binder(*args, **kwargs)
    return twin._pack_args(backend, kwargs, bound, specialization, None)


# ----------------------------------------------------------------------------- tracing

def _jsonable(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return str(value)


def _path(twin: JITFunction, path: tuple) -> str:
    return ".".join([twin.arg_names[path[0]], *map(str, path[1:])])


def _distinct(a: np.ndarray) -> np.ndarray:
    """np.unique for uint64, by sort + diff: numpy 2's hash-based unique is ~10x slower on
    millions of sector ids, and most tiles arrive already ascending (no sort needed)."""
    if a.size < 2:
        return a
    if not (a[1:] >= a[:-1]).all():
        a = np.sort(a)
    return a[np.concatenate(([True], a[1:] != a[:-1]))]


class _Tracer:
    """The hooks' shared state: the launch being interpreted and the records so far."""

    def __init__(self, sectors: bool) -> None:
        self.sectors = sectors
        self.records: list[dict] = []
        self.current: dict | None = None
        self.atomic = 0          # >0 inside create_atomic_load/store, which reuse masked load/store
        self.autotune: list[dict] = []
        self.sample: int | None = None  # programs run per launch (None: all of them)
        self.weight = 1.0               # programs of the grid the running (sampled) program stands for
        self.explained_cpu_s = 0.0      # CPU time inside recorded launches and PyTorch ops

    def begin(self, kernel: Any, args: tuple, kwargs: dict) -> dict:
        twin = _twin(kernel)
        try:
            with warnings.catch_warnings():  # knobs' FP-fusion default notice, not the candidate's
                warnings.simplefilter("ignore")
                options, signature, constexprs, attrs = _specialise(twin, args, kwargs)
            error = None
        except Exception as exc:  # the interpreter is laxer than a GPU launch (unknown kwargs)
            options, signature, constexprs, attrs = make_backend(SM90).parse_options({}), {}, {}, {}
            error = f"{type(exc).__name__}: {exc}"
        key = twin.cache_key
        _BY_KEY[key] = twin
        named = {_path(twin, p): v for p, v in constexprs.items()}
        _RAW_CONSTS[(key, repr({k: _jsonable(v) for k, v in named.items()}))] = named  # dtypes stay dtypes
        record: dict = {
            "kind": "triton", "name": twin.__name__,
            "qualname": f"{twin.__module__}.{twin.__qualname__}",
            "src_sha256": hashlib.sha256(twin.src.encode()).hexdigest(),
            "cache_key": key,  # also covers the jit functions it calls
            "grid": [1, 1, 1], "n_programs": 1,
            "num_warps": options.num_warps, "num_stages": options.num_stages, "num_ctas": options.num_ctas,
            "maxnreg": options.maxnreg,
            "constexprs": {k: _jsonable(v) for k, v in named.items()},
            "signature": {k: v for k, v in signature.items() if v != "constexpr"},
            "aligned16": sorted(_path(twin, p) for p, a in attrs.items() if ["tt.divisibility", 16] in a),
            "autotuned": bool(self.autotune),
            "autotune_configs": self.autotune[-1]["configs"] if self.autotune else None,
            "bytes_loaded": 0, "bytes_stored": 0, "bytes_atomic": 0,
            "lanes_loaded": 0, "lanes_stored": 0, "lanes_atomic": 0,
            "n_load_ops": 0, "n_store_ops": 0, "n_atomic_ops": 0,
            "by_arg": {},
            "interp_s": 0.0,
            "max_tile": 0, "sampled_programs": None,
            "specialise_error": error,
        }
        # Address ranges of the tensor arguments, to attribute each memory op to one of them.
        ranges = []
        for name, value in zip(twin.arg_names, args):
            if isinstance(value, torch.Tensor) and value.numel() > 0:
                start = value.untyped_storage().data_ptr()
                ranges.append((start, start + value.untyped_storage().nbytes(), name))
        for name, value in kwargs.items():
            if isinstance(value, torch.Tensor) and value.numel() > 0 and name in twin.arg_names:
                start = value.untyped_storage().data_ptr()
                ranges.append((start, start + value.untyped_storage().nbytes(), name))
        ranges.sort()
        record["_ranges"] = ranges
        record["_sectors"] = {}
        return record

    def account(self, kind: str, ptrs: Any, mask: Any) -> None:
        rec = self.current
        if rec is None:
            return
        if self.atomic and kind != "atomic":
            kind = "atomic"
        addr = np.asarray(ptrs.data, dtype=np.uint64)
        rec["max_tile"] = max(rec["max_tile"], int(addr.size))  # lanes of one op: the tile a thread block holds
        if mask is not None:
            addr = addr[np.broadcast_to(np.asarray(mask.data, dtype=bool), addr.shape)]
        addr = addr.ravel()
        elem = max(1, ptrs.get_element_ty().primitive_bitwidth // 8)  # i1 is a byte in memory
        verb = {"load": "loaded", "store": "stored", "atomic": "atomic"}[kind]
        w = self.weight  # counts are floats while the launch runs, rounded in finish()
        rec[f"n_{kind}_ops"] += w
        if addr.size == 0:
            return
        rec[f"lanes_{verb}"] += addr.size * w
        rec[f"bytes_{verb}"] += addr.size * elem * w
        first = int(addr[0])
        arg = next((n for lo, hi, n in rec["_ranges"] if lo <= first < hi), "?")  # "?": not an argument
        slot = rec["by_arg"].setdefault(arg, {"bytes_loaded": 0, "bytes_stored": 0, "bytes_atomic": 0})
        slot[f"bytes_{verb}"] += addr.size * elem * w
        if self.sectors:
            sec = _distinct(addr // SECTOR)
            slot[f"sector_bytes_{verb}"] = slot.get(f"sector_bytes_{verb}", 0) + sec.size * SECTOR * w
            rec["_sectors"].setdefault((arg, verb), []).append(sec)

    def finish(self, rec: dict) -> None:
        rec.pop("_ranges")
        sectors = rec.pop("_sectors")
        if self.sectors:
            self._finish_sectors(rec, sectors)
        sampled = rec.get("sampled_programs")
        scale = rec["n_programs"] / sampled if sampled else 1.0  # distinct sectors: no weights, scaled
        counted = ("bytes_", "lanes_", "n_load", "n_store", "n_atomic", "sector_bytes_")
        for key in [k for k in rec if k.startswith(counted + ("unique_bytes_",))]:
            rec[key] = int(round(rec[key] * (scale if key.startswith("unique_bytes_") else 1.0)))
        for slot in rec["by_arg"].values():
            for key in slot:
                slot[key] = int(round(slot[key] * (scale if key.startswith("unique_bytes_") else 1.0)))

    def _finish_sectors(self, rec: dict, sectors: dict) -> None:
        for verb in ("loaded", "stored", "atomic"):
            rec[f"sector_bytes_{verb}"] = sum(s.get(f"sector_bytes_{verb}", 0) for s in rec["by_arg"].values())
            rec[f"unique_bytes_{verb}"] = 0
        for (arg, verb), parts in sectors.items():
            unique = int(_distinct(np.concatenate(parts)).size) * SECTOR
            rec["by_arg"][arg][f"unique_bytes_{verb}"] = unique
            rec[f"unique_bytes_{verb}"] += unique


@contextlib.contextmanager
def _hooks(tracer: _Tracer) -> Iterator[None]:
    """Wrap the interpreter's launch and memory entry points; everything is restored on exit."""
    from triton.runtime import interpreter as interp

    builder = interp.interpreter_builder
    originals: list[tuple[Any, str, Any, bool]] = []

    def patch(obj: Any, name: str, make: Callable[[Any], Any]) -> None:
        had = name in vars(obj)
        old = vars(obj)[name] if had else getattr(obj, name)
        originals.append((obj, name, old, had))
        setattr(obj, name, make(getattr(obj, name)))

    def masked(kind: str) -> Callable:
        def make(orig: Callable) -> Callable:
            if kind == "load":
                return lambda ptrs, mask, *a, **k: (tracer.account("load", ptrs, mask), orig(ptrs, mask, *a, **k))[1]
            return lambda ptrs, value, mask, *a, **k: (tracer.account("store", ptrs, mask),
                                                       orig(ptrs, value, mask, *a, **k))[1]
        return make

    def as_atomic(orig: Callable) -> Callable:
        def wrapper(*a: Any, **k: Any) -> Any:
            tracer.atomic += 1
            try:
                return orig(*a, **k)
            finally:
                tracer.atomic -= 1
        return wrapper

    def rmw(orig: Callable) -> Callable:
        return lambda op, ptr, val, mask, *a, **k: (tracer.account("atomic", ptr, mask),
                                                    orig(op, ptr, val, mask, *a, **k))[1]

    def cas(orig: Callable) -> Callable:
        return lambda ptr, cmp, val, *a, **k: (tracer.account("atomic", ptr, None), orig(ptr, cmp, val, *a, **k))[1]

    def grid_dim(orig: Callable) -> Callable:
        def wrapper(nx: int, ny: int, nz: int) -> Any:
            if tracer.current is not None:
                tracer.current["grid"] = [int(nx), int(ny), int(nz)]
                tracer.current["n_programs"] = int(nx) * int(ny) * int(nz)
            return orig(nx, ny, nz)
        return wrapper

    def run(orig: Callable) -> Callable:
        def wrapper(self: Any, *args: Any, grid: Any, warmup: bool, **kwargs: Any) -> Any:
            if warmup or tracer.current is not None:
                return orig(self, *args, grid=grid, warmup=warmup, **kwargs)
            cpu0 = _cpu_clock()
            rec = tracer.begin(self, args, kwargs)
            tracer.current = rec
            t0 = _perf_counter()
            try:
                return orig(self, *args, grid=grid, warmup=warmup, **kwargs)
            finally:
                rec["interp_s"] = _perf_counter() - t0
                tracer.current = None
                tracer.finish(rec)
                tracer.records.append(rec)
                tracer.explained_cpu_s += _cpu_clock() - cpu0
        return wrapper

    def autotune_run(orig: Callable) -> Callable:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            configs = [{**{k: _jsonable(v) for k, v in c.kwargs.items()},
                        "num_warps": c.num_warps, "num_stages": c.num_stages} for c in self.configs]
            tracer.autotune.append({"configs": configs})
            try:
                return orig(self, *args, **kwargs)
            finally:
                tracer.autotune.pop()
        return wrapper

    def bench(orig: Callable) -> Callable:
        # The interpreter has no benchmarker (do_bench needs a GPU driver), so a multi-config
        # autotune cannot run on a CPU at all; under the trace it keeps the first config.
        def wrapper(self: Any, *args: Any, config: Any, **meta: Any) -> list[float]:
            return [0.0, 0.0, 0.0] if config is self.configs[0] else [float("inf")] * 3
        return wrapper

    def sampled_call(orig: Callable) -> Callable:
        # GridExecutor.__call__ of triton 3.9 with the program loop over a sample of the grid.
        def wrapper(self: Any, *args_dev: Any, **kwargs: Any) -> Any:
            if tracer.sample is None or tracer.current is None:
                return orig(self, *args_dev, **kwargs)
            spec = inspect.getfullargspec(self.fn)
            kwargs = {k: v for k, v in kwargs.items() if k in spec.args or k in spec.kwonlyargs}
            args_hst, kwargs_hst = self._init_args_hst(args_dev, kwargs)
            for hook in self.pre_run_hooks:
                hook(*args_hst, **kwargs_hst)
            scope = interp._patch_lang(self.fn)
            try:
                args = inspect.getcallargs(self.fn, *args_hst, **kwargs_hst)
                args = {n: a if n in self.constexprs else interp._implicit_cvt(a) for n, a in args.items()}
                grid = self.grid(args) if callable(self.grid) else self.grid
                grid = tuple(grid) + (1,) * (3 - len(grid))
                interp.interpreter_builder.set_grid_dim(*grid)
                programs = sample_grid(grid, tracer.sample)
                tracer.current["sampled_programs"] = len(programs)
                try:
                    for (x, y, z), weight in programs:
                        interp.interpreter_builder.set_grid_idx(x, y, z)
                        tracer.weight = weight
                        self.fn(**args)
                except Exception as exc:
                    raise interp.InterpreterError(repr(exc)) from exc
            finally:
                tracer.weight = 1.0
                scope.restore()
            self._restore_args_dev(args_dev, args_hst, kwargs, kwargs_hst)
        return wrapper

    try:
        patch(interp.GridExecutor, "__call__", sampled_call)
        patch(builder, "create_masked_load", masked("load"))
        patch(builder, "create_masked_store", masked("store"))
        patch(builder, "create_atomic_rmw", rmw)
        patch(builder, "create_atomic_cas", cas)
        patch(builder, "create_atomic_load", as_atomic)
        patch(builder, "create_atomic_store", as_atomic)
        patch(builder, "set_grid_dim", grid_dim)
        patch(interp.InterpretedFunction, "run", run)
        patch(Autotuner, "run", autotune_run)
        patch(Autotuner, "_bench", bench)
        yield
    finally:
        for obj, name, old, had in reversed(originals):
            if had:
                setattr(obj, name, old)
            else:
                delattr(obj, name)


def _spread(n: int, k: int) -> list[tuple[int, float]]:
    """(index, weight) pairs: k indices of range(n), the last one on its own (weight 1: the masked
    tail lives there) and k - 1 evenly spread over the rest, each standing for an equal share."""
    if n <= k:
        return [(i, 1.0) for i in range(n)]
    share = (n - 1) / (k - 1)
    return [(int(i * share), share) for i in range(k - 1)] + [(n - 1, 1.0)]


def sample_grid(grid: tuple, budget: int) -> list[tuple[tuple[int, int, int], float]]:
    """((x, y, z), weight) of the programs to run: about `budget` of them, spread along each axis
    with the last index of every axis included; the weights add up to the grid's size."""
    nx, ny, nz = (int(g) for g in grid)
    kz = min(nz, 2)
    ky = min(ny, max(2, budget // (4 * kz)))
    kx = max(2, budget // (ky * kz))
    return [((x, y, z), wx * wy * wz) for x, wx in _spread(nx, kx) for y, wy in _spread(ny, ky)
            for z, wz in _spread(nz, kz)]


class _TorchOps(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the aten ops run between kernels (work done in PyTorch rather than in Triton)."""

    def __init__(self, tracer: _Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        cpu0 = _cpu_clock()
        out = func(*args, **(kwargs or {}))
        if self.tracer.current is None:
            self.tracer.explained_cpu_s += _cpu_clock() - cpu0
        returns = func._schema.returns
        view = any(r.alias_info is not None and not r.alias_info.is_write for r in returns)
        if self.tracer.current is None and not view:  # inside a launch: the interpreter's own copies
            def nbytes(tree: Any) -> int:
                leaves = torch.utils._pytree.tree_leaves(tree)
                return sum(t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor))
            factory = func._schema.name.startswith(("aten::empty", "aten::new_empty"))  # no traffic
            self.tracer.records.append({"kind": "torch", "name": str(func),
                                        "bytes_read": 0 if factory else nbytes((args, kwargs)),
                                        "bytes_written": 0 if factory else nbytes(out)})
        return out


def trace_launches(fn: Callable, inputs: dict, *, sectors: bool = True, torch_ops: bool = False,
                   sample_programs: int | None = None) -> list[dict]:
    """Call fn(**inputs) under the Triton interpreter; one dict per kernel launch, in order.

    Keys: name, qualname, src_sha256 (the kernel's own source), cache_key (Triton's hash of
    it and the jit functions it calls), grid [x, y, z], n_programs, num_warps, num_stages,
    num_ctas, maxnreg, constexprs {name: value}, signature {arg: "*fp32" | "*bf16" | "i32" |
    "fp32" ...} (non-constexpr args), aligned16 [args a GPU launch specialises as 16-byte
    aligned / divisible by 16], autotuned, autotune_configs (all configs of an autotuned
    kernel: the trace keeps the first, see `_hooks`), specialise_error, interp_s (wall time
    of the launch under the interpreter, hooks included);
    over all programs: bytes_{loaded,stored,atomic} and lanes_* (active lanes x element
    size), n_{load,store,atomic}_ops (op executions), and with sectors=True
    sector_bytes_* (32-byte sectors touched, per op: coalescing-aware traffic) and
    unique_bytes_* (distinct sectors over the whole launch: traffic with a perfect cache);
    by_arg {arg name or "?": the same byte counts for that argument's storage}; kind "triton".

    torch_ops=True also records, in order, every non-view aten op run outside the kernels:
    {"kind": "torch", "name", "bytes_read", "bytes_written"} (tensor argument / result sizes,
    a rough traffic figure: in-place ops count their target as read and written).

    sample_programs=N runs only about N programs of each launch (`sample_grid`) and scales the
    counts to the whole grid: for a cost estimate, not for outputs (the rest stays unwritten).
    max_tile: the most lanes of one memory op (the tile a program holds); sampled_programs.
    The last record is {"kind": "call", "cpu_s", "explained_cpu_s"}: the process CPU time of the
    whole call and the part spent inside recorded launches and (with torch_ops) PyTorch ops.
    """
    if not knobs.runtime.interpret:
        raise RuntimeError("trace_launches needs TRITON_INTERPRET=1 set before triton is imported")
    tracer = _Tracer(sectors)
    tracer.sample = sample_programs
    cpu0 = _cpu_clock()
    with _hooks(tracer), (_TorchOps(tracer) if torch_ops else contextlib.nullcontext()):
        fn(**inputs)
    # CPU time of the call that no recorded launch or op explains: work the trace cannot see
    # (NumPy, a C extension, Python arithmetic) shows here.
    tracer.records.append({"kind": "call", "cpu_s": _cpu_clock() - cpu0, "explained_cpu_s": tracer.explained_cpu_s})
    return tracer.records


# ---------------------------------------------------------------------------- compiling

_PTXAS = re.compile(r"Used (\d+) registers")
_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_SMEM = re.compile(r"(\d+) bytes smem")
_GLOBAL = re.compile(r"^\s*(?:@!?%p\d+\s+)?(ld|st|atom|red)\.global((?:\.[\w:]+)*)", re.M)
_LOCAL = re.compile(r"^\s*(?:@!?%p\d+\s+)?(ld|st)\.local\b", re.M)
_LABEL = re.compile(r"^(\$L\w+):", re.M)
_BRANCH = re.compile(r"\bbra(?:\.uni)?\s+(\$L\w+);")


def _ptx_stats(ptx: str) -> dict:
    """Global memory instructions by vector width and type, local (spill) ops, loops."""
    by_kind: dict[str, int] = {}
    for op, suffix in _GLOBAL.findall(ptx):
        parts = [p for p in suffix.split(".") if p and "::" not in p]  # drop cache hints
        vec = next((p for p in parts if re.fullmatch(r"v\d", p)), "v1")
        ty = parts[-1] if parts else "?"
        key = f"{op}.global.{vec}.{ty}"
        by_kind[key] = by_kind.get(key, 0) + 1
    labels = {m.group(1): m.start() for m in _LABEL.finditer(ptx)}
    loops = sum(1 for m in _BRANCH.finditer(ptx) if labels.get(m.group(1), 1 << 60) < m.start())
    body = ptx[ptx.find("{"):] if "{" in ptx else ptx
    n_instr = sum(1 for line in body.splitlines()
                  if line.strip() and not line.strip().startswith(("//", ".", "$", "{", "}", "(", ")")))
    return {
        "global_ops": dict(sorted(by_kind.items())),
        "global_loads": sum(v for k, v in by_kind.items() if k.startswith("ld.")),
        "global_stores": sum(v for k, v in by_kind.items() if k.startswith("st.")),
        "local_loads": sum(1 for op in _LOCAL.findall(ptx) if op == "ld"),
        "local_stores": sum(1 for op in _LOCAL.findall(ptx) if op == "st"),
        "has_loops": loops > 0, "n_back_branches": loops,
        "ptx_instructions": n_instr,
    }


def _to_ptx(src: ASTSource, num_warps: int, num_stages: int) -> tuple[str, dict, Any]:
    """triton.compile's pipeline up to PTX (ttir -> ttgir -> llir -> ptx). ptxas runs apart:
    CompiledKernel learns n_regs / n_spills only from a GPU driver, and Triton discards the
    ptxas -v report; run by us it also gets a timeout and no Triton cache is touched."""
    from triton._C.libtriton import ir
    backend = make_backend(SM90)
    options = backend.parse_options({"num_warps": num_warps, "num_stages": num_stages})
    stages: dict[str, Callable] = {}
    backend.add_stages(stages, options, src.language)
    context = ir.context()
    ir.load_dialects(context)
    backend.load_dialects(context)
    module = src.make_ir(SM90, options, backend.get_codegen_implementation(options), backend.get_module_map(),
                         context)
    metadata: dict = {"hash": src.hash(), "target": SM90, **options.__dict__}
    for ext, stage in stages.items():
        if ext == "cubin":
            break
        module = stage(module, metadata)
    return str(module), metadata, options


def _ptxas(ptx: str, options: Any, timeout_s: float) -> tuple[str, float, bool]:
    """(ptxas -v output, seconds, timed out), with the flags Triton's make_cubin uses."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability
    workdir = tempfile.mkdtemp(prefix="kernel_trace_")
    try:
        path = f"{workdir}/k.ptx"
        with open(path, "w") as f:
            f.write(ptx)
        cmd = [get_ptxas(SM90.arch).path, "-lineinfo", *([] if options.enable_fp_fusion else ["--fmad=false"]),
               "-v", "--regAllocOptLevel=2", f"--gpu-name={sm_arch_from_capability(SM90.arch)}", path,
               "-o", f"{workdir}/k.cubin"]
        t0 = _perf_counter()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
            return done.stdout + done.stderr, _perf_counter() - t0, False
        except subprocess.TimeoutExpired:
            return "", _perf_counter() - t0, True
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def compile_for_sm90(record_or_kernel: dict | Any, *, signature: dict | None = None,
                     constexprs: dict | None = None, aligned16: list | None = None,
                     num_warps: int | None = None, num_stages: int | None = None,
                     keep_ptx: bool = False, ptxas_timeout_s: float = 300.0) -> dict:
    """Compile one launched configuration for sm_90 (no GPU needed) and describe the binary.

    `record_or_kernel`: a record from trace_launches (same process), or a kernel (jit /
    interpreted / autotuned function) with `signature` ({arg: type}) and `constexprs`
    ({arg: value}); `aligned16` lists args to specialise as 16-byte aligned. Keyword values
    override the record's. Works with TRITON_INTERPRET=1 set (see `_twin`, `_compile_mode`).

    Returns: name, num_warps, num_stages, n_regs (per thread), n_spills (Triton's meaning:
    local memory bytes per thread / 4), stack_bytes, spill_store_bytes, spill_load_bytes,
    shared_bytes (Triton's allocation), ptxas_smem_bytes, global_ops {"ld.global.v4.b32": n,
    ...}, global_loads, global_stores, local_loads, local_stores (ld/st.local in the PTX;
    ptxas spills show in spill_*_bytes instead), has_loops, n_back_branches,
    ptx_instructions, compile_s = frontend_s (python -> PTX) + ptxas_s (always cold: no
    Triton cache is read or written), ptxas_timed_out (the ptxas fields are None when it
    timed out or failed: see ptxas_log),
    cached (memo hit in this process), ptxas_log, and ptx when keep_ptx.
    """
    if isinstance(record_or_kernel, dict):
        rec = record_or_kernel
        twin = _BY_KEY.get(rec["cache_key"])
        if twin is None:
            raise KeyError(f"{rec['name']}: not traced in this process; pass the kernel instead")
        signature = signature or rec["signature"]
        if constexprs is None:
            constexprs = _RAW_CONSTS.get((rec["cache_key"], repr(rec["constexprs"])), rec["constexprs"])
        aligned16 = rec["aligned16"] if aligned16 is None else aligned16
        num_warps = num_warps or rec["num_warps"]
        num_stages = num_stages or rec["num_stages"]
    else:
        twin = _twin(record_or_kernel)
        if signature is None:
            raise ValueError("a kernel needs signature= ({arg: type}) and constexprs=")
        constexprs, aligned16 = constexprs or {}, aligned16 or []
    num_warps, num_stages = num_warps or 4, num_stages or 3

    def path(name: str) -> tuple:
        head, *rest = name.split(".")
        return (twin.arg_names.index(head), *map(int, rest))

    full_sig = {name: "constexpr" for name in constexprs if "." not in name}
    full_sig.update(signature)
    full_sig = {n: full_sig[n] for n in twin.arg_names if n in full_sig}
    consts = {path(k): v for k, v in constexprs.items()}
    attrs = {path(k): [["tt.divisibility", 16]] for k in aligned16}
    memo = (twin.cache_key, tuple(full_sig.items()), tuple(sorted((k, str(v)) for k, v in consts.items())),
            tuple(sorted(attrs)), num_warps, num_stages)
    if memo in _COMPILED:
        return {**_COMPILED[memo], "cached": True}

    src = ASTSource(fn=twin, signature=full_sig, constexprs=consts, attrs=attrs)
    t0 = _perf_counter()
    with _compile_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # knobs' FP-fusion default notice
        ptx, metadata, options = _to_ptx(src, num_warps, num_stages)
    frontend_s = _perf_counter() - t0
    text, ptxas_s, timed_out = _ptxas(ptx, options, ptxas_timeout_s)
    regs, stack, smem = _PTXAS.search(text), _STACK.search(text), _SMEM.search(text)
    stack_b, spill_st, spill_ld = (int(g) for g in stack.groups()) if stack else (0, 0, 0)
    out = {
        "name": twin.__name__, "num_warps": num_warps, "num_stages": num_stages,
        "n_regs": int(regs.group(1)) if regs else None,
        "n_spills": stack_b // 4 if regs else None, "stack_bytes": stack_b if regs else None,
        "spill_store_bytes": spill_st if regs else None, "spill_load_bytes": spill_ld if regs else None,
        "shared_bytes": int(metadata["shared"]), "ptxas_smem_bytes": int(smem.group(1)) if smem else 0,
        **_ptx_stats(ptx),
        "compile_s": frontend_s + ptxas_s, "frontend_s": frontend_s, "ptxas_s": ptxas_s,
        "ptxas_timed_out": timed_out, "cached": False,
        "ptxas_log": text.strip(),
    }
    if keep_ptx:
        out["ptx"] = ptx
    _COMPILED[memo] = out
    return out
