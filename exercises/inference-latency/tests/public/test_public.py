"""Public self-check: your process_logits against the float64 reference of tests/spec.py on the CPU.

The hidden checks use the same comparison (tests/spec.py: compare) on more and larger cases,
on the GPU too, and time your code against the baseline.
"""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from logits import process_logits


def _load_spec():
    name = "_inference_latency_spec"
    if name not in sys.modules:
        path = Path(__file__).resolve().parent.parent / "spec.py"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the exercise's spec module (the float64 reference) is missing")
        loader = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[name] = module  # before exec: dataclasses look their module up there
        loader.loader.exec_module(module)
    return sys.modules[name]


spec = _load_spec()
Case = spec.Case

CASES = [
    Case("b1-v1000-f32-h16", 1, 1000, 16, "float32", seed=11),
    Case("b4-v4099-bf16-h32", 4, 4099, 32, "bfloat16", seed=12),
    Case("b3-v2048-f32-h0", 3, 2048, 0, "float32", seed=13),
    Case("b5-v1000-f32-h64-neginf-dead", 5, 1000, 64, "float32", seed=14, neginf_frac=0.05, dead_rows=1),
    Case("b2-v1000-bf16-h8-allbanned", 2, 1000, 8, "bfloat16", seed=15, all_banned=True),
    Case("b4-v32000-f32-h128-rp2", 4, 32000, 128, "float32", seed=16, repetition_penalty=2.0,
         presence_penalty=1.0),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_matches_reference(case):
    inputs = spec.make_inputs(case)
    before = spec.clone_inputs(inputs)
    output = spec.call(process_logits, inputs)
    assert spec.inputs_equal(inputs, before), "process_logits modified its inputs"
    problems = spec.compare(case, inputs, output, spec.reference(inputs))
    assert not problems, "\n".join(problems)


def test_penalises_each_distinct_token_once():
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0]])
    inputs = {"logits": logits, "history": torch.tensor([[0, 1, 0, 0, -1, -1]]),
              "temperature": torch.tensor([0.5]), "repetition_penalty": 2.0, "presence_penalty": 0.25,
              "banned": torch.tensor([False, False, False, True])}
    x = torch.tensor([2.0 / 2.0 - 0.25, -1.0 * 2.0 - 0.25, 0.5, float("-inf")]) / 0.5
    expected = torch.softmax(x, dim=0)[None]
    output = spec.call(process_logits, inputs)
    assert output.dtype == torch.float32 and output.shape == (1, 4)
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-7)
    assert output[0, 3].item() == 0.0
