"""The inference-latency exercise's trusted spec: its tolerance accepts correct code and rejects wrong code.

- The reference solution's CPU path passes `compare` on every CPU case with a >= 10x
  margin on the tolerance; its Triton kernel does the same under TRITON_INTERPRET=1 (in a
  subprocess: triton reads the variable when it is imported); the baseline matches too.
- Wrong outputs fail: zeros, a constant, the logits, another row's result, wrong dtype,
  shape or type, NaN / inf / nonzero mass in the wrong place, an output aliasing an input,
  and a set of subtly wrong implementations (penalty per occurrence, wrong order, sign
  branch, padding id -1 wrapping to the last token, bf16 arithmetic, ...).
- Inputs are deterministic, and the case lists cover what the brief promises.
- The calibration submissions behave as their flaws say (on the CPU).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
EXERCISE = ROOT / "exercises" / "inference-latency"
SPEC_PATH = EXERCISE / "tests" / "spec.py"
REFERENCE_PATH = ROOT / "reference" / "inference-latency" / "logits.py"
BASELINE_PATH = EXERCISE / "starter" / "baseline.py"
CALIBRATION = EXERCISE / "calibration"


def _load(name: str, path: Path):
    if name not in sys.modules:
        loader = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[name] = module  # before exec: dataclasses look their module up there
        loader.loader.exec_module(module)
    return sys.modules[name]


spec = _load("_il_spec", SPEC_PATH)
reference_solution = _load("_il_reference", REFERENCE_PATH)
baseline = _load("_il_baseline", BASELINE_PATH)

CPU_CASES = spec.correctness_cases("cpu")
IDS = [c.name for c in CPU_CASES]


@pytest.fixture(scope="module")
def prepared():
    """name -> (case, inputs, float64 reference), computed once."""
    out = {}
    for case in CPU_CASES:
        inputs = spec.make_inputs(case)
        out[case.name] = (case, inputs, spec.reference(inputs))
    return out


def _fails(case, inputs, output, ref) -> bool:
    return bool(spec.compare(case, inputs, output, ref))


# ------------------------------------------------------------------ the cases themselves

def test_case_names_are_unique_and_cases_are_frozen():
    for mode in ("cpu", "interpret", "cuda"):
        names = [c.name for c in spec.correctness_cases(mode)]
        assert len(names) == len(set(names)), mode
    for device in ("cpu", "cuda"):
        names = [c.name for c in spec.bench_cases(device)]
        assert len(names) == len(set(names)), device
    with pytest.raises(dataclasses.FrozenInstanceError):
        CPU_CASES[0].batch = 2


def test_cpu_cases_cover_the_brief():
    assert any(c.batch == 1 for c in CPU_CASES)
    assert {"float32", "bfloat16"} <= {c.dtype for c in CPU_CASES}
    assert {1000, 4099, 50257} <= {c.vocab for c in CPU_CASES}
    assert any(c.history == 0 for c in CPU_CASES)
    assert any(c.history > c.vocab for c in CPU_CASES)
    assert any(c.dead_rows for c in CPU_CASES) and any(c.all_banned for c in CPU_CASES)
    assert any(c.neginf_frac > 0 for c in CPU_CASES)
    assert not any(c.batch > 16 and c.vocab == 128256 for c in CPU_CASES)


def test_interpret_cases_have_tails_and_cuda_cases_the_full_grid():
    interpret = spec.correctness_cases("interpret")
    assert {c.batch for c in interpret} >= {1, 3}
    assert any(c.vocab % spec.BLOCK_HINT for c in interpret) and {1000, 4099} <= {c.vocab for c in interpret}
    grid = {(c.batch, c.vocab, c.dtype) for c in spec.correctness_cases("cuda")}
    for b in (1, 8, 64, 257):
        for v in (32000, 50257, 128256):
            for dt in ("float32", "bfloat16"):
                assert (b, v, dt) in grid
    bench = {(c.batch, c.vocab, c.dtype) for c in spec.bench_cases("cuda")}
    assert bench == {(b, v, dt) for b in (64, 257) for v in (50257, 128256) for dt in ("float32", "bfloat16")}


def test_inputs_are_deterministic_and_follow_the_contract(prepared):
    for case, inputs, ref in prepared.values():
        again = spec.make_inputs(case)
        assert spec.inputs_equal(inputs, again), case.name
        other = spec.make_inputs(dataclasses.replace(case, seed=case.seed + 7919))
        assert not spec.inputs_equal(inputs, other), case.name
        # The grader copies a case's inputs into buffers made for another seed: same shapes.
        assert {k: getattr(v, "shape", None) for k, v in inputs.items()} == \
               {k: getattr(v, "shape", None) for k, v in other.items()}
        logits, history = inputs["logits"], inputs["history"]
        assert logits.dtype == getattr(torch, case.dtype) and logits.shape == (case.batch, case.vocab)
        assert history.dtype == torch.int64 and history.shape == (case.batch, case.history)
        assert not torch.isnan(logits).any() and not torch.isposinf(logits).any()
        assert ((history == -1) | ((history >= 0) & (history < case.vocab))).all()
        # Right-padded: once a row is padding, it stays padding.
        pad = (history < 0).to(torch.int8)
        assert (pad[:, 1:] >= pad[:, :-1]).all(), case.name
        assert (inputs["temperature"] > 0).all() and inputs["temperature"].dtype == torch.float32
        assert inputs["banned"].dtype == torch.bool and inputs["banned"].shape == (case.vocab,)
        dead = np.isnan(ref).all(axis=1)
        assert dead.sum() == (case.batch if case.all_banned else case.dead_rows), case.name
        assert not np.isnan(ref[~dead]).any()
        np.testing.assert_allclose(ref[~dead].sum(axis=1), 1.0, rtol=1e-12)


def test_inputs_equal_sees_any_change(prepared):
    case, inputs, _ = prepared[IDS[0]]
    for key in ("logits", "history", "temperature", "banned"):
        changed = spec.clone_inputs(inputs)
        flat = changed[key].view(-1)
        flat[0] = ~flat[0] if flat.dtype == torch.bool else flat[0] + 1
        assert not spec.inputs_equal(inputs, changed), key
    assert not spec.inputs_equal(inputs, dict(spec.clone_inputs(inputs), presence_penalty=0.5))
    negzero = spec.clone_inputs(inputs)
    negzero["logits"][0, 0] = 0.0
    negzero2 = spec.clone_inputs(negzero)
    negzero2["logits"][0, 0] = -0.0
    assert not spec.inputs_equal(negzero, negzero2)  # bitwise
    assert spec.inputs_equal(inputs, spec.clone_inputs(inputs))


def test_bytes_moved():
    case = spec.Case("x", 2, 10, 3, "bfloat16", 0)
    assert spec.bytes_moved(case) == 2 * 10 * 2 + 2 * 3 * 8 + 2 * 4 + 10 + 2 * 10 * 4


# ------------------------------------------------------------------- correct code passes

@pytest.mark.parametrize("name", IDS)
def test_reference_solution_passes_with_margin(prepared, name):
    case, inputs, ref = prepared[name]
    before = spec.clone_inputs(inputs)
    output = spec.call(reference_solution.process_logits, inputs)
    assert spec.inputs_equal(inputs, before)
    assert spec.compare(case, inputs, output, ref) == []
    _, max_rel = spec.max_errors(output, ref)
    atol, rtol = spec.tolerance(case)
    assert max_rel * 10 <= rtol, f"{name}: worst relative error {max_rel:.2e} leaves < 10x margin"


def test_baseline_matches_reference(prepared):
    small = [n for n in IDS if prepared[n][0].batch * prepared[n][0].vocab <= 60000]
    assert len(small) >= 3
    for name in small:
        case, inputs, ref = prepared[name]
        assert spec.compare(case, inputs, spec.call(baseline.process_logits_baseline, inputs), ref) == []


# ----------------------------------------------------------------------- wrong outputs fail

@pytest.mark.parametrize("name", IDS)
def test_garbage_fails(prepared, name):
    case, inputs, ref = prepared[name]
    B, V = case.batch, case.vocab
    good = torch.from_numpy(ref).to(torch.float32)
    assert not _fails(case, inputs, good, ref)
    assert _fails(case, inputs, torch.zeros(B, V), ref)
    assert _fails(case, inputs, torch.full((B, V), 1.0 / V), ref)
    assert _fails(case, inputs, inputs["logits"].to(torch.float32, copy=True), ref)
    if B > 1 and not np.array_equal(np.roll(ref, 1, axis=0), ref, equal_nan=True):
        assert _fails(case, inputs, torch.from_numpy(np.roll(ref, 1, axis=0)).to(torch.float32), ref)
    # Type, dtype, shape, device.
    assert _fails(case, inputs, good.double(), ref)
    assert _fails(case, inputs, good.to(torch.bfloat16), ref)
    assert _fails(case, inputs, good[:, :-1].contiguous(), ref)
    assert _fails(case, inputs, good.reshape(1, B * V) if B > 1 else good.reshape(V, 1), ref)
    assert _fails(case, inputs, ref.astype(np.float32), ref)  # a numpy array, not a tensor
    assert _fails(case, inputs, torch.nn.Parameter(good, requires_grad=False), ref)
    # NaN, inf and probability mass where they do not belong.
    live = np.flatnonzero(~np.isnan(ref).all(axis=1))
    if live.size:
        b = int(live[0])
        v = int(np.argmax(ref[b]))
        for value in (float("nan"), float("inf")):
            bad = good.clone()
            bad[b, v] = value
            assert _fails(case, inputs, bad, ref), value
        zeros = np.flatnonzero(ref[b] == 0.0)
        if zeros.size:
            bad = good.clone()
            bad[b, int(zeros[0])] = 1e-30  # a banned / -inf token must be exactly 0
            assert _fails(case, inputs, bad, ref)
        bad = good.clone()
        bad[b, v] *= 1 + 3 * spec.RTOL
        assert _fails(case, inputs, bad, ref)
    dead = np.flatnonzero(np.isnan(ref).all(axis=1))
    if dead.size:  # a dead row must stay NaN, not become zeros or uniform
        for fill in (0.0, 1.0 / V):
            bad = good.clone()
            bad[int(dead[0])] = fill
            assert _fails(case, inputs, bad, ref)


def test_an_output_aliasing_an_input_fails(prepared):
    case, inputs, ref = next(p for p in prepared.values() if p[0].dtype == "float32" and not np.isnan(p[2]).any())
    # Inputs whose logits tensor holds exactly the right answer: only the aliasing is wrong.
    aliased = {**inputs, "logits": torch.from_numpy(ref).to(torch.float32)}
    problems = spec.compare(case, aliased, aliased["logits"], ref)
    assert len(problems) == 1 and "shares memory" in problems[0]
    assert spec.compare(case, aliased, aliased["logits"].clone(), ref) == []


# Subtly wrong implementations (each a plausible bug); every one must fail some CPU case.

def _penalised(x, history, rp, pp, *, per_occurrence=False, order="spec", negative="mul", wrap_padding=False):
    B, V = x.shape
    x = x.clone()
    for b in range(B):
        tokens = history[b].tolist()
        if wrap_padding:
            tokens = [t % V for t in tokens]  # -1 indexes the last token
        tokens = [t for t in tokens if t >= 0]
        for t in (tokens if per_occurrence else list(dict.fromkeys(tokens))):
            v = x[b, t]
            if order == "presence-first":
                v = v - pp
                v = v / rp if v > 0 else v * rp
            else:
                v = v / rp if v > 0 else (v / rp if negative == "div" else v * rp)
                v = v - pp
            x[b, t] = v
    return x


def _mutant(kind):
    def fn(logits, history, temperature, repetition_penalty, presence_penalty, banned):
        rp, pp = repetition_penalty, presence_penalty
        x = logits.to(torch.float32)
        t = temperature[:, None]
        if kind == "temperature-first":
            x = _penalised(x / t, history, rp, pp)
            return torch.softmax(x.masked_fill(banned, float("-inf")), dim=-1)
        if kind == "bf16-arithmetic":
            x = _penalised(logits.to(torch.bfloat16).to(torch.float32), history, rp, pp).to(torch.bfloat16)
            x = (x.masked_fill(banned, float("-inf")) / t.to(torch.bfloat16)).to(torch.float32)
            return torch.softmax(x, dim=-1)
        options = {"per-occurrence": dict(per_occurrence=True), "presence-first": dict(order="presence-first"),
                   "negative-divides": dict(negative="div"), "padding-wraps": dict(wrap_padding=True)}
        if kind == "no-presence":
            x = _penalised(x, history, rp, 0.0)
        elif kind == "no-repetition":
            x = _penalised(x, history, 1.0, pp)
        else:
            x = _penalised(x, history, rp, pp, **options.get(kind, {}))
        if kind == "ban-after-softmax":
            p = torch.softmax(x / t, dim=-1)
            return p.masked_fill(banned, 0.0)
        if kind == "ban-with-big-negative":  # finite instead of -inf: dead rows become uniform
            return torch.softmax(x.masked_fill(banned, -1e30) / t, dim=-1)
        if kind == "dead-rows-zero":
            p = torch.softmax(x.masked_fill(banned, float("-inf")) / t, dim=-1)
            return torch.nan_to_num(p, nan=0.0)
        if kind == "mul-temperature":
            return torch.softmax(x.masked_fill(banned, float("-inf")) * t, dim=-1)
        return torch.softmax(x.masked_fill(banned, float("-inf")) / t, dim=-1)
    return fn


MUTANTS = ["per-occurrence", "presence-first", "negative-divides", "padding-wraps", "temperature-first",
           "bf16-arithmetic", "no-presence", "no-repetition", "ban-after-softmax", "ban-with-big-negative",
           "dead-rows-zero", "mul-temperature"]


def test_the_mutant_harness_itself_is_correct(prepared):
    for name in IDS[:3]:
        case, inputs, ref = prepared[name]
        assert spec.compare(case, inputs, spec.call(_mutant("none"), inputs), ref) == []


# The mutants loop in Python: run them on the cases with few history entries.
MUTANT_CASES = [name for name, case in zip(IDS, CPU_CASES) if case.batch * case.history <= 4096]


@pytest.mark.parametrize("kind", MUTANTS)
def test_subtly_wrong_implementations_fail(prepared, kind):
    failed = [name for name in MUTANT_CASES
              if _fails(*prepared[name][:2], spec.call(_mutant(kind), prepared[name][1]), prepared[name][2])]
    assert failed, f"mutant {kind} passes every CPU case"


# --------------------------------------------------------- the Triton kernel, interpreted

INTERPRET_SCRIPT = textwrap.dedent("""
    import importlib.util, json, sys, warnings
    import numpy as np
    def load(name, path):
        loader = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[name] = module
        loader.loader.exec_module(module)
        return module
    spec = load("_il_spec", sys.argv[1])
    results = {}
    for label, path in (("reference", sys.argv[2]), ("tail-bug", sys.argv[3])):
        module = load("_il_" + label.replace("-", "_"), path)
        for case in spec.correctness_cases("interpret"):
            inputs = spec.make_inputs(case)
            before = spec.clone_inputs(inputs)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                output = spec.call(module.process_logits_triton, inputs)
            ref = spec.reference(inputs)
            problems = spec.compare(case, inputs, output, ref)
            if not spec.inputs_equal(inputs, before):
                problems.append("inputs modified")
            results[label + "/" + case.name] = {"problems": problems, "max_rel": spec.max_errors(output, ref)[1],
                                                "vocab": case.vocab}
    print(json.dumps(results))
""")


@pytest.fixture(scope="module")
def interpreted():
    env = dict(os.environ, TRITON_INTERPRET="1")
    run = subprocess.run([sys.executable, "-c", INTERPRET_SCRIPT, str(SPEC_PATH), str(REFERENCE_PATH),
                          str(CALIBRATION / "triton-tail-bug" / "logits.py")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_reference_kernel_passes_under_the_interpreter(interpreted):
    ref_results = {k: v for k, v in interpreted.items() if k.startswith("reference/")}
    assert len(ref_results) == len(spec.correctness_cases("interpret"))
    for name, result in ref_results.items():
        assert result["problems"] == [], name
        assert result["max_rel"] * 10 <= spec.RTOL, name


def test_tail_bug_kernel_fails_on_tails_only(interpreted):
    for name, result in interpreted.items():
        if name.startswith("tail-bug/"):
            assert bool(result["problems"]) == bool(result["vocab"] % 1024), name


# ------------------------------------------------------------------ calibration behaviour

CALIBRATION_SCRIPT = textwrap.dedent("""
    import dataclasses, importlib.util, json, sys, time
    sys.path.insert(0, sys.argv[2])  # the starter: baseline.py
    def load(name, path):
        loader = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[name] = module
        loader.loader.exec_module(module)
        return module
    spec = load("_il_spec", sys.argv[1])
    perf_counter = time.perf_counter
    module = load("logits", sys.argv[3])
    result = {"timers_patched": time.perf_counter is not perf_counter, "has_triton_entry":
              hasattr(module, "process_logits_triton"), "failed": [], "reuse_failed": False}
    for case in spec.correctness_cases("cpu"):
        inputs = spec.make_inputs(case)
        if spec.compare(case, inputs, spec.call(module.process_logits, inputs), spec.reference(inputs)):
            result["failed"].append(case.name)
    # Buffer reuse, as the grader does it: a decoy call, then new contents in the same buffers.
    case = spec.correctness_cases("cpu")[2]
    buffers = spec.make_inputs(dataclasses.replace(case, seed=case.seed + 7919))
    spec.call(module.process_logits, buffers)
    for key, value in spec.make_inputs(case).items():
        if hasattr(value, "copy_"):
            buffers[key].copy_(value)
    result["reuse_failed"] = bool(spec.compare(case, buffers, spec.call(module.process_logits, buffers),
                                               spec.reference(buffers)))
    print(json.dumps(result))
""")

EXPECTED = {  # name: (cpu cases failed: "none" | "all", reuse fails, timers patched, triton entry)
    "vectorised": ("none", False, False, False),
    "triton-tail-bug": ("none", False, False, True),
    "ptr-cache": ("none", True, False, False),
    "timer-patch": ("none", False, True, False),
    "returns-input": ("all", True, False, False),
    "calls-baseline": ("none", False, False, False),
    "tutorial-kernel": ("none", False, False, True),
    "row-online-kernel": ("none", False, False, True),
    "torch-compile": ("none", False, False, False),
    "row-loop": ("none", False, False, False),
}


def test_every_calibration_folder_is_described():
    assert {p.name for p in CALIBRATION.iterdir() if p.is_dir()} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_calibration_behaves_as_its_flaw_says(name):
    run = subprocess.run([sys.executable, "-c", CALIBRATION_SCRIPT, str(SPEC_PATH), str(EXERCISE / "starter"),
                          str(CALIBRATION / name / "logits.py")], capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"})
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    fails, reuse, timers, triton_entry = EXPECTED[name]
    n_cases = len(CPU_CASES)
    assert len(result["failed"]) == (0 if fails == "none" else n_cases), result["failed"]
    assert result["reuse_failed"] == reuse
    assert result["timers_patched"] == timers
    assert result["has_triton_entry"] == triton_entry
