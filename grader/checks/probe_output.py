"""Reading what harness/probe.py wrote: capped, schema-light, never trusted further.

The probe runs inside the candidate's process, so its lines are evidence, not verdicts:
every number the judges use is re-derived or cross-checked on the host. File names and
event names are those of harness/wire.py (PROBE_FILE, OUTPUT_FILE, PROBE_EVENTS).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..harness.wire import OUTPUT_FILE, PROBE_FILE
from ..results import json_objects, read_capped

MAX_LINES_BYTES = 8 * 1024 * 1024
MAX_TENSOR_BYTES = 512 * 1024 * 1024


@dataclass
class ProbeOutput:
    lines: list[dict[str, Any]] = field(default_factory=list)
    malformed: int = 0
    truncated: bool = False

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == kind]

    def first(self, kind: str) -> dict[str, Any] | None:
        found = self.events(kind)
        return found[0] if found else None


def read_probe(out_dir: Path) -> ProbeOutput:
    data, truncated = read_capped(out_dir / PROBE_FILE, MAX_LINES_BYTES)
    result = ProbeOutput(truncated=truncated)
    for line in json_objects(data):
        if line is not None and isinstance(line.get("event"), str):
            result.lines.append(line)
        else:
            result.malformed += 1
    return result


def load_output(out_dir: Path, name: Any):
    """The tensor in out_dir/name (a safetensors file the probe wrote), or None when absent or unsafe."""
    if not isinstance(name, str) or not OUTPUT_FILE.match(name):
        return None
    data, truncated = read_capped(out_dir / name, MAX_TENSOR_BYTES)
    if truncated or not data:
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load
    try:
        return load(data).get("output")
    except (SafetensorError, ValueError, RuntimeError):
        return None
