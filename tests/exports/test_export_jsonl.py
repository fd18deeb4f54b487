"""mlgrade export --format jsonl: one JSON object per line, the report as written."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from export_testlib import export, reports


@pytest.mark.parametrize("view", ["grader", "candidate"])
def test_one_object_per_candidate_with_its_report(round_dir: Path, tmp_path: Path, view: str) -> None:
    out = tmp_path / "reports.jsonl"
    export(round_dir, "--format", "jsonl", "--view", view, "--out", out)
    text = out.read_text(encoding="ascii")  # ASCII only: no character in a report can split a line
    assert text.splitlines() == text.split("\n")[:-1]
    lines = [json.loads(line) for line in text.splitlines()]
    with sqlite3.connect(round_dir / "ledger.sqlite3") as db:
        ledger = {c: (s, r) for c, s, r in db.execute("SELECT candidate, state, reason FROM submissions")}
    assert [line["candidate"] for line in lines] == sorted(ledger)
    expected = reports(round_dir, view)
    for line in lines:
        assert set(line) == {"candidate", "state", "reason", "percent", "view", "report"}
        state, reason = ledger[line["candidate"]]
        assert line["state"] == state
        if view == "grader":
            assert line["reason"] == reason  # control characters and all
        else:  # scrubbed: cleaned, and checked against the exercise's hidden material
            assert "\x1b" not in line["reason"] and "\x00" not in line["reason"] and bool(line["reason"]) == bool(reason)
        assert line["view"] == view
        assert line["report"] == expected.get(line["candidate"])
        report = line["report"]
        assert line["percent"] == (report["score"]["percent"] if report else None)
        if report is not None:
            assert report["view"] == view
    hostile = next(line["report"] for line in lines if line["candidate"] == "carol_hostile")
    messages = " ".join(t["message"] for c in hostile["checks"] for t in c["tests"])
    if view == "grader":
        # The grader view keeps what the test said; a lone surrogate as its visible escape (report.encodable)
        assert "\x1b[31m" in messages and "\\ud800" in messages and "\ud800" not in messages
    else:
        assert messages == "" or "\x1b" not in messages
