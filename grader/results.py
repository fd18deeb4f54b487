"""Reading what the in-sandbox runner wrote: size-capped, schema-checked, never trusted further.

The results file lives in a folder the sandbox could write, so it is opened without
following links, must be a regular file, and is read up to a cap. Each line is checked
against a small schema and must carry the HMAC the runner makes with the per-run key
(see harness/runner.py); lines that fail either are counted and ignored.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from jsonschema import Draft202012Validator

MAX_RESULTS_BYTES = 4 * 1024 * 1024
MAX_MESSAGE = 2000
OUTCOMES = ("passed", "failed", "error", "skipped", "timeout", "crashed")

_LINE = Draft202012Validator({
    "type": "object",
    "required": ["event"],
    "properties": {
        "event": {"enum": ["started", "env", "collected", "collect_error", "result", "anomaly", "done"]},
        "nodeid": {"type": "string", "maxLength": 1000},
        "outcome": {"enum": list(OUTCOMES)},
        "duration": {"type": "number", "minimum": 0},
        "message": {"type": "string"},
        "python": {"type": "string", "maxLength": 100},
        "torch": {"type": ["string", "null"], "maxLength": 100},
        "triton": {"type": ["string", "null"], "maxLength": 100},
    },
    "allOf": [
        {"if": {"properties": {"event": {"const": "result"}}},
         "then": {"required": ["nodeid", "outcome", "duration", "message"]}},
        {"if": {"properties": {"event": {"const": "anomaly"}}}, "then": {"required": ["message"]}},
        {"if": {"properties": {"event": {"enum": ["collected", "collect_error"]}}},
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
    unauthenticated_lines: int = 0  # well-formed lines without a valid MAC: written by someone else
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


def _authentic(line: dict, key: bytes) -> bool:
    mac = line.pop("mac", None)
    body = json.dumps(line, sort_keys=True, separators=(",", ":")).encode()
    return isinstance(mac, str) and hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).hexdigest())


MAX_DEPTH = 32  # nesting of arrays/objects in one line: ours need 3; deeper ones are refused unparsed


def _too_deep(raw: str, limit: int = MAX_DEPTH) -> bool:
    """True when the line nests arrays/objects deeper than limit (brackets inside strings do not count),
    which json.loads, the schema check and json.dumps would meet with RecursionError."""
    if raw.count("[") + raw.count("{") <= limit:  # the common case, at C speed
        return False
    depth, in_string, escaped = 0, False, False
    for char in raw:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def json_objects(data: bytes) -> Iterator[dict | None]:
    """Each line of data as a JSON object, or None for a line that is not one (or nests too deep)."""
    for raw in data.decode("utf-8", errors="replace").splitlines():
        try:
            line = None if _too_deep(raw) else json.loads(raw)
        except (ValueError, RecursionError):
            line = None
        yield line if isinstance(line, dict) else None


def parse_results(data: bytes, key: bytes, truncated: bool = False) -> RunResults:
    """Parse runner output lines; malformed or unauthenticated ones are counted, never trusted."""
    out = RunResults(truncated=truncated)
    for line in json_objects(data):
        if line is None:
            out.malformed_lines += 1
            continue
        if not _authentic(line, key):
            out.unauthenticated_lines += 1
            continue
        if not _LINE.is_valid(line):
            out.malformed_lines += 1
            continue
        event = line["event"]
        if event == "started":
            out.started = True
        elif event == "done":
            out.done = True
        elif event == "env":
            out.env = {k: line.get(k) for k in ("python", "torch", "triton")}
        elif event == "anomaly":
            out.anomalies.append(line["message"][:500])
        elif event == "collected":
            out.collected.append(line["nodeid"])
        elif event == "collect_error":
            out.collect_errors.append(f"{line['nodeid']}: {line.get('message', '')[-MAX_MESSAGE:]}")
        else:
            result = TestResult(line["nodeid"], line["outcome"], float(line["duration"]), line["message"][-MAX_MESSAGE:])
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
