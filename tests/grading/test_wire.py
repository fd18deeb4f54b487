"""harness/wire.py is the one definition of the host/sandbox wire format: signing, caps, event names."""
from __future__ import annotations

import ast
import hashlib
import hmac
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grader.harness import wire
from grader.harness.runner import _result
from grader.results import parse_results

KEY = b"k" * 64
GRADER = Path(__file__).resolve().parents[2] / "grader"
HARNESS = GRADER / "harness"
WRITERS = {"runner.py": HARNESS / "runner.py", "mlgrade_plugin.py": HARNESS / "mlgrade_plugin.py",
           "probe.py": HARNESS / "probe.py"}
READERS = {"results.py": GRADER / "results.py", "probe_output.py": GRADER / "checks" / "probe_output.py"}
EVENTS = set(wire.PLUGIN_EVENTS) | set(wire.RESULTS_EVENTS) | set(wire.PROBE_EVENTS)
FIELDS = {"event": "result", "nodeid": "tests/test_x.py::test_y[1.5-é]", "outcome": "failed", "duration": 0.25,
          "message": "assert 1 == 2\n\"quoted\" \u2028 [{"}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _wire_imports(tree: ast.Module) -> set[str]:
    """Names imported from wire: `from wire import` (harness) or `from .wire` / `from ..harness.wire` (host)."""
    return {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and node.module is not None and node.module.split(".")[-1] == "wire" for alias in node.names}


# -- sign / verify ------------------------------------------------------------------------------

def test_sign_verify_round_trip() -> None:
    line = wire.sign(KEY, FIELDS)
    assert wire.verify(KEY, line) == FIELDS
    assert wire.verify(KEY, line.encode()) == FIELDS
    assert wire.verify(KEY, line + "\n") == FIELDS
    assert line.isascii() and "\n" not in line


def test_sign_makes_the_same_bytes_as_before() -> None:
    """Canonical JSON (sorted keys, no spaces) with the HMAC-SHA256 of the JSON without "mac" added."""
    body = json.dumps(FIELDS, sort_keys=True, separators=(",", ":"))
    mac = hmac.new(KEY, body.encode(), hashlib.sha256).hexdigest()
    assert wire.sign(KEY, FIELDS) == json.dumps({**FIELDS, "mac": mac}, sort_keys=True, separators=(",", ":"))


def _variants(line: str) -> dict[str, str]:
    fields = json.loads(line)
    missing = {k: v for k, v in fields.items() if k != "message"}
    extra = {**fields, "extra": 1}
    return {
        "changed byte": line.replace('"failed"', '"passed"'),
        "changed digit of the mac": line.replace(fields["mac"], fields["mac"][:-1] + ("0" if fields["mac"][-1] != "0"
                                                                                      else "1")),
        "missing field": json.dumps(missing, sort_keys=True, separators=(",", ":")),
        "extra field": json.dumps(extra, sort_keys=True, separators=(",", ":")),
        "spaces": json.dumps(fields, sort_keys=True),
        "key order": json.dumps(dict(reversed(list(fields.items()))), separators=(",", ":")),
        "not ASCII-escaped": json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        "leading space": " " + line,
        "trailing space": line + " ",
        "no mac": json.dumps(FIELDS, sort_keys=True, separators=(",", ":")),
    }


@pytest.mark.parametrize("name", list(_variants(wire.sign(KEY, FIELDS))))
def test_anything_but_the_signed_bytes_fails(name: str) -> None:
    line = wire.sign(KEY, FIELDS)
    variant = _variants(line)[name]
    assert variant != line
    assert wire.verify(KEY, variant) is None


def test_a_wrong_key_fails() -> None:
    assert wire.verify(b"x" * 64, wire.sign(KEY, FIELDS)) is None
    assert wire.verify(KEY, wire.sign(b"x" * 64, FIELDS)) is None


@pytest.mark.parametrize("raw", [
    "", "not json", "[1, 2]", "null", '"text"', '{"event":"done","mac":"\\u00e9"}', '{"event":"done","mac":"\\ud800"}',
    '{"event":"done","mac":7}', '{"event":"done","mac":null}', "[" * 100_000 + "]" * 100_000,
    '{"a":' * 40 + "1" + "}" * 40, "1" * 5000, b"\xff\xfe{}", b'{"event":"done","mac":"\xe9"}',
])
def test_verify_never_raises_on_what_candidate_code_could_write(raw: str | bytes) -> None:
    assert wire.verify(KEY, raw) is None


def test_a_forged_non_ascii_mac_is_counted_not_a_crash() -> None:
    """hmac.compare_digest raises on str with non-ASCII characters: the host compares bytes."""
    results = parse_results(b'{"event":"done","mac":"\\u00e9"}\n' + wire.sign(KEY, {"event": "done"}).encode(), KEY)
    assert results.done and results.unauthenticated_lines == 1


def test_the_host_refuses_a_reformatted_signed_line() -> None:
    line = wire.sign(KEY, {"event": "result", "nodeid": "t::a", "outcome": "passed", "duration": 0.1,
                           "message": ""})
    results = parse_results("\n".join([line, json.dumps(json.loads(line))]).encode(), KEY)
    assert set(results.tests) == {"t::a"} and results.unauthenticated_lines == 1


# -- caps -----------------------------------------------------------------------------------------

def test_the_host_cuts_texts_to_the_harness_caps() -> None:
    long = "".join(chr(ord("a") + i % 26) for i in range(wire.MESSAGE_CAP + 123))
    signed = _result({"event": "result", "nodeid": "t::a", "outcome": "failed", "duration": 0.1, "message": long})
    assert signed["message"] == long[-wire.MESSAGE_CAP:]
    lines = [wire.sign(KEY, {**signed, "message": long}),  # a runner that did not cut: the host cuts the same
             wire.sign(KEY, {"event": "collect_error", "nodeid": "t", "message": long}),
             wire.sign(KEY, {"event": "anomaly", "message": long})]
    results = parse_results("\n".join(lines).encode(), KEY)
    assert results.tests["t::a"].message == long[-wire.MESSAGE_CAP:]
    assert results.collect_errors == [f"t: {long[-wire.MESSAGE_CAP:]}"]
    assert results.anomalies == [long[:wire.ANOMALY_CAP]]


def test_node_ids_longer_than_the_cap_are_malformed() -> None:
    def result(nodeid: str) -> str:
        return wire.sign(KEY, {"event": "result", "nodeid": nodeid, "outcome": "passed", "duration": 0.0,
                               "message": ""})
    ok, too_long = "t::" + "a" * (wire.NODEID_CAP - 3), "t::" + "a" * (wire.NODEID_CAP - 2)
    results = parse_results("\n".join([result(ok), result(too_long)]).encode(), KEY)
    assert set(results.tests) == {ok} and results.malformed_lines == 1


# -- node ids and file names ---------------------------------------------------------------------

@pytest.mark.parametrize("pattern, nodeid, expected", [
    ("hidden/test_a.py", "hidden/test_a.py", True),
    ("hidden/test_a.py", "hidden/test_a.py::test_x", True),
    ("hidden/test_a.py::test_x", "hidden/test_a.py::test_x[1-2]", True),
    ("hidden/test_a.py::test_x", "hidden/test_a.py::test_x_more", False),
    ("hidden/test_a", "hidden/test_a.py::test_x", False),
    ("hidden/test_a.py::test_x[1", "hidden/test_a.py::test_x[1-2]", False),
])
def test_nodeid_matches(pattern: str, nodeid: str, expected: bool) -> None:
    assert wire.nodeid_matches(pattern, nodeid) is expected


def test_output_file_names_are_the_ones_the_host_opens() -> None:
    for index in (0, 7, 10000 * 3 + 12, 999_999_999):
        assert wire.OUTPUT_FILE.match(wire.output_file(index))
    for name in ("output-.safetensors", "../output-1.safetensors", "output-1.safetensors.tmp", "output-1234567890"
                 ".safetensors"):
        assert not wire.OUTPUT_FILE.match(name)


# -- one definition, imported by both sides ------------------------------------------------------

def test_wire_imports_only_the_standard_library() -> None:
    tree = _tree(HARNESS / "wire.py")
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "wire.py imports nothing relative (no grader, no harness sibling)"
            imported.append(node.module)
    assert imported
    outside = [name for name in imported if name.split(".")[0] not in sys.stdlib_module_names | {"__future__"}]
    assert outside == []


@pytest.mark.parametrize("name", ["runner.py", "mlgrade_plugin.py", "results.py", "probe_output.py"])
def test_no_event_name_is_spelled_outside_wire(name: str) -> None:
    path = {**WRITERS, **READERS}[name]
    literals = sorted({node.value for node in ast.walk(_tree(path))
                       if isinstance(node, ast.Constant) and node.value in EVENTS})
    assert literals == [], f"{name} spells event names itself: {literals}"


@pytest.mark.parametrize("name", list(WRITERS))
def test_every_event_written_is_a_wire_constant(name: str) -> None:
    """probe.py uses "latency" and "case" as a mode and a field too, so here only what is written as an event counts:
    `event=` arguments and "event" entries of dicts."""
    tree = _tree(WRITERS[name])
    written = [kw.value for node in ast.walk(tree) if isinstance(node, ast.Call) for kw in node.keywords
               if kw.arg == "event"]
    written += [value for node in ast.walk(tree) if isinstance(node, ast.Dict)
                for key, value in zip(node.keys, node.values) if isinstance(key, ast.Constant) and key.value == "event"]
    assert written
    spelled = [ast.unparse(value) for value in written
               if not (isinstance(value, ast.Name) and value.id.startswith("EVENT_"))]
    assert spelled == [], f"{name} writes events that are not wire.EVENT_* names: {spelled}"
    imported = _wire_imports(tree)
    used = {value.id for value in written if isinstance(value, ast.Name)}
    assert used <= imported


CAPS = {"runner.py": {"MESSAGE_CAP", "ANOMALY_CAP", "MAX_ANOMALIES"}, "mlgrade_plugin.py": {"MESSAGE_CAP"},
        "probe.py": {"PROBE_MESSAGE_CAP"}, "results.py": {"MESSAGE_CAP", "ANOMALY_CAP", "NODEID_CAP", "ENV_VALUE_CAP"},
        "probe_output.py": set()}


@pytest.mark.parametrize("name", list(CAPS))
def test_caps_and_signing_come_from_wire(name: str) -> None:
    tree = _tree({**WRITERS, **READERS}[name])
    assert CAPS[name] <= _wire_imports(tree)
    own = [target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets
           if isinstance(target, ast.Name) and (target.id.endswith("CAP") or target.id in ("MAX_MESSAGE", "OUTCOMES"))]
    assert own == [], f"{name} defines its own caps: {own}"
    numbers = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and type(node.value) is int}
    assert not numbers & {wire.MESSAGE_CAP, wire.PROBE_MESSAGE_CAP}
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not modules & {"hmac", "hashlib"} or name == "probe.py"  # probe.py hashes inputs, it signs nothing
    assert not any(isinstance(node, ast.FunctionDef) and node.name in ("sign", "verify", "_authentic")
                   for node in ast.walk(tree))


def test_the_harness_imports_wire_as_a_sibling(tmp_path: Path) -> None:
    """As in the sandbox: the harness folder on PYTHONPATH, its modules imported by their own names. The plugin
    forgets `wire` once its names are bound, so a submission's own wire.py still imports as its own."""
    code = ("import sys, wire, runner, probe\n"
            "assert runner.sign is wire.sign and runner.nodeid_matches is wire.nodeid_matches\n"
            "assert probe.PROBE_MESSAGE_CAP == wire.PROBE_MESSAGE_CAP and probe.IMPORT_HUNG is wire.IMPORT_HUNG\n"
            "del sys.modules['wire']\n"
            "import mlgrade_plugin\n"
            f"assert mlgrade_plugin.MESSAGE_CAP == {wire.MESSAGE_CAP} and 'wire' not in sys.modules\n")
    env = {**os.environ, "PYTHONPATH": str(HARNESS)}
    run = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr


def test_the_probe_reader_takes_its_file_names_from_wire() -> None:
    tree = _tree(READERS["probe_output.py"])
    assert {"PROBE_FILE", "OUTPUT_FILE"} <= _wire_imports(tree)
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert not any(wire.PROBE_FILE in s or "safetensors$" in s for s in strings)


@pytest.mark.parametrize("path", [GRADER / "pipeline.py", *sorted((GRADER / "checks").glob("*.py"))],
                         ids=lambda p: p.name)
def test_host_code_reads_probe_events_by_their_wire_names(path: Path) -> None:
    """`probe.first(...)` / `probe.events(...)` take a wire constant, never a spelled-out event name."""
    spelled = sorted({node.args[0].value for node in ast.walk(_tree(path))
                      if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                      and node.func.attr in ("first", "events") and node.args
                      and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)})
    assert spelled == [], f"{path.name} spells probe event names itself: {spelled}"
