"""A real round folder for the export tests: toy submissions graded once on bwrap, ledger written directly.

`mlgrade batch` (grader/batch/command.py) is written in parallel; until it lands the fixture writes what
it would: DIR/ledger.sqlite3 (layout.LEDGER_SCHEMA) and each candidate's reports in both views.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from export_testlib import HOSTILE_CALC, candidates, write_ledger
from grader.batch import layout
from tests.conftest import load_fixture_exercise


@pytest.fixture(scope="session")
def round_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A round of the toy exercise: three graded candidates (one with hostile failure messages), a crash
    graded as a candidate failure, a bad archive without a report, an infrastructure failure and one
    still pending. Read-only for the tests: copy it (copy_round) to change it."""
    from sandbox import available_backends
    from grader.pipeline import Grader
    from grader.report import candidate_view, to_markdown, validate_report
    from grader.scrub import HiddenText
    if available_backends().get("bwrap") is not None and os.environ.get("CI") != "true":
        pytest.skip("bubblewrap is not available here")
    base = tmp_path_factory.mktemp("round")
    hostile = base / "hostile-submission"
    hostile.mkdir()
    (hostile / "calc.py").write_text(HOSTILE_CALC)
    folder = base / "round"
    folder.mkdir()
    toy = load_fixture_exercise("toy")
    grader, hidden = Grader("bwrap"), HiddenText.from_exercise(toy)
    rows = []
    for candidate in candidates(hostile):
        percent = None
        if candidate.submission is not None:
            report = grader.grade(toy, candidate.submission)
            view = candidate_view(report, hidden)
            validate_report(view)
            out = folder / layout.CANDIDATES / candidate.name
            (out / layout.CANDIDATE_VIEW).mkdir(parents=True)
            for where, doc in ((out, report), (out / layout.CANDIDATE_VIEW, view)):
                (where / "report.json").write_text(json.dumps(doc, indent=2) + "\n")
                (where / "report.md").write_text(to_markdown(doc))
            percent = report["score"]["percent"]
        rows.append((candidate.name, candidate.state, candidate.reason, percent))
    write_ledger(folder, rows)
    return folder
