"""The host reads the runner's results file without trusting it: caps, schema, HMAC, no links."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from grader.harness.wire import sign
from grader.results import parse_results, read_capped, read_results

KEY = b"k" * 64


def _line(**fields) -> str:
    return sign(KEY, fields)


def _result(nodeid: str, outcome: str) -> str:
    return _line(event="result", nodeid=nodeid, outcome=outcome, duration=0.1, message="")


def test_signed_lines_are_read() -> None:
    data = "\n".join([_line(event="started"), _result("t::a", "passed"), _result("t::b", "failed"),
                      _line(event="done")]).encode()
    results = parse_results(data, KEY)
    assert results.started and results.done
    assert {n: r.outcome for n, r in results.tests.items()} == {"t::a": "passed", "t::b": "failed"}
    assert results.malformed_lines == results.unauthenticated_lines == 0


def test_unsigned_or_wrongly_signed_lines_are_ignored() -> None:
    forged = json.dumps({"event": "result", "nodeid": "t::b", "outcome": "passed", "duration": 0, "message": ""})
    other_key = sign(b"x" * 64, {"event": "result", "nodeid": "t::c", "outcome": "passed", "duration": 0,
                                 "message": ""})
    tampered = _result("t::d", "failed").replace('"failed"', '"passed"')
    results = parse_results("\n".join([forged, other_key, tampered]).encode(), KEY)
    assert results.tests == {}
    assert results.unauthenticated_lines == 3


def test_malformed_lines_are_counted() -> None:
    bad_schema = _line(event="result", nodeid="t::a", outcome="victory", duration=0, message="")
    results = parse_results(b"not json\n[1, 2]\n" + bad_schema.encode(), KEY)
    assert results.tests == {}
    assert results.malformed_lines == 3


def test_a_later_pass_never_overrides_a_failure() -> None:
    data = "\n".join([_result("t::a", "failed"), _result("t::a", "passed")]).encode()
    results = parse_results(data, KEY)
    assert results.tests["t::a"].outcome == "failed"
    assert results.conflicting == ["t::a"]


def test_symlinked_results_file_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(_result("t::a", "passed"))
    os.symlink(secret, tmp_path / "results.jsonl")
    assert read_results(tmp_path / "results.jsonl", KEY).tests == {}


def test_fifo_does_not_block(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "results.jsonl")
    done = threading.Event()
    threading.Thread(target=lambda: (read_capped(tmp_path / "results.jsonl", 100), done.set()), daemon=True).start()
    assert done.wait(5), "reading a FIFO blocked"


def test_size_cap_truncates(tmp_path: Path) -> None:
    (tmp_path / "r").write_bytes(b"x" * 1000)
    data, truncated = read_capped(tmp_path / "r", 100)
    assert len(data) == 100 and truncated
    assert read_capped(tmp_path / "missing", 100) == (b"", False)


def test_deeply_nested_lines_are_malformed_not_a_crash(tmp_path: Path) -> None:
    """json.loads, the schema check and json.dumps all recurse: a line nested 100000 deep (or 40 deep,
    inside a signed-looking object) is refused before parsing, and the rest of the file still counts."""
    deep_array = "[" * 100_000 + "]" * 100_000
    deep_object = '{"event": "result", "x": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}"
    bracket_text = _line(event="result", nodeid="t::c", outcome="passed", duration=0.1, message="[{" * 100)
    assert "[{[{" in bracket_text
    data = "\n".join([_line(event="started"), deep_array, deep_object, _result("t::a", "passed"),
                      bracket_text, _line(event="done")]).encode()
    results = parse_results(data, KEY)
    assert results.malformed_lines == 2
    assert set(results.tests) == {"t::a", "t::c"}  # brackets inside a string are text, not nesting
    assert results.started and results.done
    (tmp_path / "probe.jsonl").write_bytes(data)
    from grader.checks.probe_output import read_probe
    assert read_probe(tmp_path).malformed == 2  # the probe's reader shares the guard
