"""The wire format between the in-sandbox harness and the host: the one definition both sides import.

Standard library only, and nothing from `grader`: the harness (runner.py, mlgrade_plugin.py,
probe.py) imports it as a sibling module next to candidate code, the host as
`grader.harness.wire`.

Three files cross the boundary, each one JSON object per line, flushed line by line:
- the events file (runner's scratch folder; MLGRADE_EVENTS): mlgrade_plugin.py -> runner.py,
  PLUGIN_EVENTS, `json.dumps(event)`, unsigned (candidate code shares the plugin's process);
- RESULTS_FILE (out folder): runner.py -> host, RESULTS_EVENTS, each line signed: the canonical
  JSON of the fields (`sort_keys=True`, separators "," and ":", ASCII only) with "mac" added,
  the HMAC-SHA256 hex digest under the per-run key of that JSON without "mac" (`sign`). The host
  accepts a line only when it is byte for byte what `sign` makes (`verify`);
- PROBE_FILE (out folder): probe.py -> host, PROBE_EVENTS, `json.dumps(event)`, unsigned (the
  probe runs in the candidate's process: its lines are evidence, not verdicts), with the tensors
  it names in files called `output_file(index)`.

Every line has a string "event". Texts are capped the same on both sides (MESSAGE_CAP,
ANOMALY_CAP, PROBE_MESSAGE_CAP); node ids are matched by `nodeid_matches`.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re

STARTED = "mlgrade-harness: started"  # printed first by runner.py and probe.py: candidate code cannot un-print it
COLLECTION_HUNG = "not run: collecting the tests (which imports the submission) did not finish"
IMPORT_HUNG = "importing the submission did not finish within"  # probe.py: import_error message, with "hung"

RESULTS_FILE = "results.jsonl"
PROBE_FILE = "probe.jsonl"

# -- event names ("event" of every line) ------------------------------------------------------
EVENT_START = "start"                  # plugin: a test begins (nodeid)
EVENT_RESULT = "result"                # plugin, runner: a test's verdict (nodeid, outcome, duration, message)
EVENT_COLLECTED = "collected"          # plugin, runner: a node id collection found (nodeid)
EVENT_COLLECT_ERROR = "collect_error"  # plugin, runner: a collector that failed (nodeid, message)
EVENT_STARTED = "started"              # runner, probe: the harness is up (probe: mode)
EVENT_ENV = "env"                      # runner, probe: python, torch, triton versions
EVENT_ANOMALY = "anomaly"              # runner: an event out of the plugin's order (message)
EVENT_DONE = "done"                    # runner, probe: the harness finished (runner collect: exit_code)
EVENT_IMPORT_ERROR = "import_error"    # probe: the submission did not import (message; hung: true on a timeout)
EVENT_MISSING_ENTRY = "missing_entry"  # probe: the entry function is not defined (message)
EVENT_TAMPER = "tamper"                # probe: fingerprinted functions replaced (stage, changed)
EVENT_CASE = "case"                    # probe, outputs mode: one case's output
EVENT_LATENCY = "latency"              # probe, latency mode: one case's timings
EVENT_BANDWIDTH = "bandwidth"          # probe, latency mode: measured copy bandwidth
EVENT_MODEL_CASE = "model_case"        # probe, model mode: one case's kernel trace

PLUGIN_EVENTS = (EVENT_START, EVENT_RESULT, EVENT_COLLECTED, EVENT_COLLECT_ERROR)
RESULTS_EVENTS = (EVENT_STARTED, EVENT_ENV, EVENT_COLLECTED, EVENT_COLLECT_ERROR, EVENT_RESULT, EVENT_ANOMALY,
                  EVENT_DONE)
PROBE_EVENTS = (EVENT_STARTED, EVENT_ENV, EVENT_IMPORT_ERROR, EVENT_MISSING_ENTRY, EVENT_TAMPER, EVENT_CASE,
                EVENT_LATENCY, EVENT_BANDWIDTH, EVENT_MODEL_CASE, EVENT_DONE)

PLUGIN_OUTCOMES = ("passed", "failed", "error", "skipped")   # what the plugin reports
OUTCOMES = (*PLUGIN_OUTCOMES, "timeout", "crashed")          # what the runner signs (it adds these two)

# -- caps (the harness cuts, the host cuts again to the same number) ---------------------------
MESSAGE_CAP = 2000        # failure text of a test or a collection error: its last characters
ANOMALY_CAP = 500         # text of one anomaly: its first characters
MAX_ANOMALIES = 20        # anomaly lines the runner writes per run (the count goes on)
PROBE_MESSAGE_CAP = 1500  # an exception's text in probe.jsonl: its last characters
NODEID_CAP = 1000         # characters of a node id in a results line (longer: the line is malformed)
ENV_VALUE_CAP = 100       # characters of a version in an env line
MAX_DEPTH = 32            # nesting of arrays/objects in one line: ours need 3; deeper lines are refused unparsed

OUTPUT_FILE = re.compile(r"^output-\d{1,9}\.safetensors$")  # the only tensor file names the host opens


def output_file(index: int) -> str:
    """The name of the probe's tensor file number index (matches OUTPUT_FILE for 0 <= index < 1e9)."""
    return f"output-{index}.safetensors"


# -- node ids ---------------------------------------------------------------------------------

def nodeid_matches(pattern: str, nodeid: str) -> bool:
    """Node-id prefix match: a file, file::test, or file::test[param], never a partial name."""
    return nodeid == pattern or nodeid.startswith(pattern + "::") or nodeid.startswith(pattern + "[")


# -- lines ------------------------------------------------------------------------------------

def too_deep(raw: str, limit: int = MAX_DEPTH) -> bool:
    """True when the line nests arrays/objects deeper than limit (brackets inside strings do not count),
    which json.loads, a schema check and json.dumps would meet with RecursionError."""
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


def loads_object(raw: str) -> dict | None:
    """One line as a JSON object, or None when it is not one (or nests deeper than MAX_DEPTH)."""
    try:
        line = None if too_deep(raw) else json.loads(raw)
    except (ValueError, RecursionError):
        line = None
    return line if isinstance(line, dict) else None


def _canonical(fields: dict) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def _mac(key: bytes, fields: dict) -> str:
    return hmac.new(key, _canonical(fields).encode(), hashlib.sha256).hexdigest()


def sign(key: bytes, line: dict) -> str:
    """The canonical JSON of line with its HMAC-SHA256 under key added as "mac" (no newline)."""
    return _canonical({**line, "mac": _mac(key, line)})


def verify(key: bytes, raw: bytes | str) -> dict | None:
    """The fields of a signed line (without "mac") when raw is exactly what `sign(key, fields)` returns,
    with or without its newline; None otherwise: not JSON, not canonical, no or a wrong MAC. Never raises
    on what candidate code could write."""
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if raw.endswith("\n"):
        raw = raw[:-1]
    fields = loads_object(raw)
    if fields is None:
        return None
    mac = fields.pop("mac", None)
    if not isinstance(mac, str) or _canonical({**fields, "mac": mac}) != raw:
        return None
    # bytes: compare_digest refuses str with non-ASCII characters, which a forged "mac" may hold
    if not hmac.compare_digest(_mac(key, fields).encode(), mac.encode("utf-8", "surrogatepass")):
        return None
    return fields
