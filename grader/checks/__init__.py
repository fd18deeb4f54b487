"""Check kinds: one module each, registered here in grading order (as sandbox.BACKENDS registers backends).

A kind's checks may `require` checks of kinds graded before it (latency requires outputs). Adding a
kind is a new module defining a `Kind` (grader/checks/base.py) and one line below.
"""
from __future__ import annotations

from .base import Kind
from .kernel_model import KIND as MODEL
from .latency import KIND as LATENCY
from .outputs import KIND as OUTPUTS
from .pytest_check import KIND as PYTEST
from .review import KIND as REVIEW

KINDS: dict[str, Kind] = {kind.name: kind for kind in (PYTEST, OUTPUTS, MODEL, LATENCY, REVIEW)}
