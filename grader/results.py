"""Reading what the in-sandbox runner wrote: size-capped, schema-checked, never trusted further.

The results file lives in a folder the sandbox could write, so it is opened without
following links, must be a regular file, and is read up to a cap. Each line must be
exactly what the runner signed with the per-run key (`verify` in harness/wire.py, which
defines the format) and pass a small schema; lines that fail either are counted and ignored.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from jsonschema import Draft202012Validator

from .harness.wire import (ANOMALY_CAP, ENV_VALUE_CAP, EVENT_ANOMALY, EVENT_COLLECT_ERROR, EVENT_COLLECTED, EVENT_DONE,
                           EVENT_ENV, EVENT_RESULT, EVENT_STARTED, MESSAGE_CAP, NODEID_CAP, OUTCOMES, RESULTS_EVENTS,
                           loads_object, verify)

MAX_RESULTS_BYTES = 4 * 1024 * 1024

_LINE = Draft202012Validator({
    "type": "object",
    "required": ["event"],
    "properties": {
        "event": {"enum": list(RESULTS_EVENTS)},
        "nodeid": {"type": "string", "maxLength": NODEID_CAP},
        "outcome": {"enum": list(OUTCOMES)},
        "duration": {"type": "number", "minimum": 0},
        "message": {"type": "string"},
        "python": {"type": "string", "maxLength": ENV_VALUE_CAP},
        "torch": {"type": ["string", "null"], "maxLength": ENV_VALUE_CAP},
        "triton": {"type": ["string", "null"], "maxLength": ENV_VALUE_CAP},
    },
    "allOf": [
        {"if": {"properties": {"event": {"const": EVENT_RESULT}}},
         "then": {"required": ["nodeid", "outcome", "duration", "message"]}},
        {"if": {"properties": {"event": {"const": EVENT_ANOMALY}}}, "then": {"required": ["message"]}},
        {"if": {"properties": {"event": {"enum": [EVENT_COLLECTED, EVENT_COLLECT_ERROR]}}},
         "then": {"required": ["nodeid"]}},
    ],
})


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest test class, despite the name
    nodeid: str
    outcome: str  # one of OUTCOMES, or "missing" when nothing was reported
    duration_s: float
    message: str


@dataclass
class RunResults:
    tests: dict[str, TestResult] = field(default_factory=dict)
    collected: list[str] = field(default_factory=list)
    collect_errors: list[str] = field(default_factory=list)
    env: dict[str, str | None] = field(default_factory=dict)
    started: bool = False
    done: bool = False
    malformed_lines: int = 0
    unauthenticated_lines: int = 0  # JSON objects that are not a line the runner signed: written by someone else
    conflicting: list[str] = field(default_factory=list)  # node ids reported more than once, differently
    truncated: bool = False
    anomalies: list[str] = field(default_factory=list)  # events out of the plugin's order (harness/runner.py)


def read_capped(path: Path, cap: int) -> tuple[bytes, bool]:
    """Read a regular file without following links; (data, truncated). Missing -> (b"", False)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return b"", False
    except OSError:  # a link or something stranger: treat as nothing reported
        return b"", False
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return b"", False
        data = handle.read(cap + 1)
    return data[:cap], len(data) > cap


def _lines(data: bytes) -> list[str]:
    return data.decode("utf-8", errors="replace").splitlines()


def json_objects(data: bytes) -> Iterator[dict | None]:
    """Each line of data as a JSON object, or None for a line that is not one (or nests too deep)."""
    for raw in _lines(data):
        yield loads_object(raw)


def parse_results(data: bytes, key: bytes, truncated: bool = False) -> RunResults:
    """Parse runner output lines; malformed or unauthenticated ones are counted, never trusted."""
    out = RunResults(truncated=truncated)
    for raw in _lines(data):
        line = verify(key, raw)
        if line is None:  # a JSON object the runner did not sign as it stands, or not even that
            if loads_object(raw) is None:
                out.malformed_lines += 1
            else:
                out.unauthenticated_lines += 1
            continue
        if not _LINE.is_valid(line):
            out.malformed_lines += 1
            continue
        event = line["event"]
        if event == EVENT_STARTED:
            out.started = True
        elif event == EVENT_DONE:
            out.done = True
        elif event == EVENT_ENV:
            out.env = {k: line.get(k) for k in ("python", "torch", "triton")}
        elif event == EVENT_ANOMALY:
            out.anomalies.append(line["message"][:ANOMALY_CAP])
        elif event == EVENT_COLLECTED:
            out.collected.append(line["nodeid"])
        elif event == EVENT_COLLECT_ERROR:
            out.collect_errors.append(f"{line['nodeid']}: {line.get('message', '')[-MESSAGE_CAP:]}")
        else:
            result = TestResult(line["nodeid"], line["outcome"], float(line["duration"]), line["message"][-MESSAGE_CAP:])
            previous = out.tests.get(result.nodeid)
            if previous is not None and previous.outcome != result.outcome:
                out.conflicting.append(result.nodeid)
                if previous.outcome != "passed":
                    continue  # a second, kinder verdict never overrides a failure
            out.tests[result.nodeid] = result
    return out


def read_results(path: Path, key: bytes) -> RunResults:
    data, truncated = read_capped(path, MAX_RESULTS_BYTES)
    return parse_results(data, key, truncated)
