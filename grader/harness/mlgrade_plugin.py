"""pytest plugin that runs inside the sandbox and streams one JSON line per test event.

Loaded by `runner.py` with `-p mlgrade_plugin` while plugin autoloading is disabled. It
writes to the file named by MLGRADE_EVENTS, flushing after every line, so that a crash
mid-run keeps every result reported so far. Event names and caps come from wire.py.
Standard library and pytest only.
"""
from __future__ import annotations

import json
import os
import random
import sys

import pytest

try:  # harness module
    from wire import EVENT_COLLECT_ERROR, EVENT_COLLECTED, EVENT_RESULT, EVENT_START, MESSAGE_CAP
    # Names bound: forget the module, so a submission's own wire.py still imports as its own here.
    del sys.modules["wire"]
except ModuleNotFoundError:  # imported on the host, as part of the grader package
    from .wire import (EVENT_COLLECT_ERROR, EVENT_COLLECTED, EVENT_RESULT,  # type: ignore[no-redef]
                       EVENT_START, MESSAGE_CAP)

_events = None
_phases: dict[str, dict] = {}


def _emit(**event) -> None:
    _events.write(json.dumps(event) + "\n")
    _events.flush()


def _message(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        text = crash.message
    elif isinstance(report.longrepr, tuple):  # skip: (file, line, reason)
        text = str(report.longrepr[2])
    else:
        text = str(report.longrepr or "")
    return text[-MESSAGE_CAP:]


def pytest_configure(config) -> None:
    global _events
    _events = open(os.environ["MLGRADE_EVENTS"], "a", encoding="utf-8")
    # The submission joins sys.path only now, after pytest and this plugin are imported,
    # so a candidate file named pytest.py or mlgrade_plugin.py cannot replace them.
    submission = os.environ.get("MLGRADE_SUBMISSION")
    if submission:
        sys.path.insert(0, submission)


def pytest_collectreport(report) -> None:
    if report.failed:
        _emit(event=EVENT_COLLECT_ERROR, nodeid=report.nodeid, message=str(report.longrepr)[-MESSAGE_CAP:])


def pytest_collection_finish(session) -> None:
    if session.config.getoption("collectonly"):
        for item in session.items:
            _emit(event=EVENT_COLLECTED, nodeid=item.nodeid)


def pytest_runtest_logstart(nodeid, location) -> None:
    _phases[nodeid] = {"outcome": "passed", "message": "", "duration": 0.0}
    _emit(event=EVENT_START, nodeid=nodeid)


def pytest_runtest_setup(item) -> None:
    # Same seed before every test, so a test's randomness does not depend on test order.
    seed = int(os.environ.get("MLGRADE_SEED", "0"))
    random.seed(seed)
    for name, seeder in (("numpy", lambda m: m.random.seed(seed)), ("torch", lambda m: m.manual_seed(seed))):
        if name in sys.modules:
            seeder(sys.modules[name])


def pytest_runtest_logreport(report) -> None:
    state = _phases.setdefault(report.nodeid, {"outcome": "passed", "message": "", "duration": 0.0})
    state["duration"] += report.duration
    if state["outcome"] != "passed":
        return  # keep the first non-pass verdict
    if report.failed:
        state["outcome"] = "failed" if report.when == "call" else "error"
        state["message"] = (f"[{report.when}] " if report.when != "call" else "") + _message(report)
    elif report.skipped:
        state["outcome"] = "skipped"
        state["message"] = _message(report)


def pytest_runtest_logfinish(nodeid, location) -> None:
    state = _phases.pop(nodeid, None) or {"outcome": "error", "message": "no report", "duration": 0.0}
    _emit(event=EVENT_RESULT, nodeid=nodeid, outcome=state["outcome"],
          duration=round(state["duration"], 4), message=state["message"])


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    if _events is not None:
        _events.close()
