"""In-sandbox test runner: runs pytest on the exercise's tests and writes one JSON line per test.

    python runner.py CONFIG.json

Paths come from the environment (MLGRADE_TESTS, MLGRADE_SUBMISSION, MLGRADE_OUT) so that a
backend which cannot remap paths can rewrite them. The config (written by the grader,
mounted read-only) says which mode to run:
- "collect": list the node ids the tests define (run against trusted starter code);
- "run": run the given node ids against the submission, each under a per-test timeout.

pytest runs in a child process with its own process group. This runner watches the
child's event stream; when a test exceeds its timeout, or the child dies (os._exit, a
segfault, sys.exit from candidate code), it records that test and starts a new child on
the tests still to run. Every verdict is appended and flushed to the results file at
once, so a sandbox killed mid-run still leaves the results so far. Standard library only.

Each results line carries an HMAC made with a key the grader sends on stdin (`wire.sign`;
wire.py defines the line format). The key is read before any candidate code starts, and the
runner then makes itself non-dumpable so that candidate processes (same uid, no capabilities)
cannot read it from /proc. Lines that candidate code writes into the results file therefore
fail the grader's check.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import shutil
import sys
import tempfile
import time
from pathlib import Path

try:  # harness module
    from wire import (ANOMALY_CAP, COLLECTION_HUNG, EVENT_ANOMALY, EVENT_COLLECT_ERROR, EVENT_COLLECTED, EVENT_DONE,
                      EVENT_ENV, EVENT_RESULT, EVENT_START, EVENT_STARTED, MAX_ANOMALIES, MESSAGE_CAP, RESULTS_FILE,
                      STARTED, nodeid_matches, sign)
    from wire import PLUGIN_OUTCOMES as OUTCOMES
except ModuleNotFoundError:  # imported on the host, as part of the grader package
    from .wire import (ANOMALY_CAP, COLLECTION_HUNG, EVENT_ANOMALY, EVENT_COLLECT_ERROR,  # type: ignore[no-redef]
                       EVENT_COLLECTED, EVENT_DONE, EVENT_ENV, EVENT_RESULT, EVENT_START, EVENT_STARTED,
                       MAX_ANOMALIES, MESSAGE_CAP, RESULTS_FILE, STARTED, nodeid_matches, sign)
    from .wire import PLUGIN_OUTCOMES as OUTCOMES  # type: ignore[no-redef]

HARNESS = Path(__file__).resolve().parent
POLL_S = 0.05


def _parse(line: str) -> dict | None:
    """One event line, or None when it is not what the plugin writes (the file is in reach of
    candidate code, so a garbled line must not stop the runner)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return None
    if event["event"] in (EVENT_START, EVENT_RESULT, EVENT_COLLECTED) and not isinstance(event.get("nodeid"), str):
        return None
    return event


def _result(event: dict) -> dict:
    """The result line to sign for the test in flight, with the plugin's field types enforced."""
    outcome = event.get("outcome") if event.get("outcome") in OUTCOMES else "error"
    duration = event.get("duration")
    duration = float(duration) if isinstance(duration, (int, float)) and 0 <= duration < 1e9 else 0.0
    message = event.get("message") if isinstance(event.get("message"), str) else ""
    return {"event": EVENT_RESULT, "nodeid": event["nodeid"], "outcome": outcome, "duration": duration,
            "message": message[-MESSAGE_CAP:]}


def _read_key() -> bytes:
    key = sys.stdin.buffer.read(4096).strip()
    sys.stdin.close()
    try:  # PR_SET_DUMPABLE = 4: /proc/<pid>/mem and ptrace need CAP_SYS_PTRACE from now on
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    return key



def _failed_collector(nodeid: str, errors: list[tuple[str, str]]) -> str | None:
    """The message of the failed collector (module, folder or root) nodeid lies under, if any."""
    for collector, message in errors:
        if collector == "" or collector in (".", "/") or nodeid_matches(collector, nodeid) \
                or nodeid.startswith(collector.rstrip("/") + "/"):
            return message
    return None


def _collection_reason(message: str) -> str:
    return "not run: collection error: " + ((message.strip().splitlines() or [""])[-1][:500])

class Runner:
    def __init__(self, config: dict, key: bytes) -> None:
        self.config = config
        self.key = key
        self.tests = os.environ["MLGRADE_TESTS"]
        self.submission = os.environ["MLGRADE_SUBMISSION"]
        self.results = open(Path(os.environ["MLGRADE_OUT"]) / RESULTS_FILE, "a", encoding="utf-8")
        self.scratch = Path(tempfile.mkdtemp(prefix="mlgrade-events-"))
        self.events_path = self.scratch / "events.jsonl"
        self.anomalies = 0

    def record(self, **line) -> None:
        self.results.write(sign(self.key, line) + "\n")
        self.results.flush()

    def timeout_for(self, nodeid: str) -> float:
        for pattern, seconds in self.config.get("timeouts", {}).items():
            if nodeid_matches(pattern, nodeid):
                return float(seconds)
        return float(self.config.get("default_timeout", 30))

    def pytest_argv(self, extra: list[str]) -> list[str]:
        return [sys.executable, "-m", "pytest", "-p", "mlgrade_plugin", "-c", str(HARNESS / "pytest.ini"),
                "--rootdir", self.tests, "--continue-on-collection-errors", "-q", *extra]

    def spawn(self, extra: list[str]) -> subprocess.Popen:
        self.events_path.unlink(missing_ok=True)
        self.events_path.touch()
        env = dict(os.environ, MLGRADE_EVENTS=str(self.events_path),
                   PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
                   PYTHONPATH=str(HARNESS))
        return subprocess.Popen(self.pytest_argv(extra), cwd=self.tests, env=env,
                                start_new_session=True, stdin=subprocess.DEVNULL)

    @staticmethod
    def kill(child: subprocess.Popen) -> None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()

    def collect(self) -> int:
        child = self.spawn(["--collect-only", *self.config["paths"]])
        try:
            child.wait(timeout=self.config.get("default_timeout", 30) * 4)
        except subprocess.TimeoutExpired:
            self.kill(child)
        with open(self.events_path, encoding="utf-8") as events:
            for line in events:
                event = _parse(line)
                if event is not None and event["event"] in (EVENT_COLLECTED, EVENT_COLLECT_ERROR):
                    self.record(**event)
        self.record(event=EVENT_DONE, exit_code=child.returncode)
        return 0

    def anomaly(self, message: str) -> None:
        """An event the plugin never writes in that order: evidence that candidate code wrote it."""
        if self.anomalies < MAX_ANOMALIES:
            self.record(event=EVENT_ANOMALY, message=message[:ANOMALY_CAP])
        self.anomalies += 1

    def run(self) -> int:
        remaining = list(self.config["nodeids"])
        while remaining:
            collect_errors: list[tuple[str, str]] = []  # this child's (collector node id, message)
            child = self.spawn(remaining)
            finished, stopped_at, stalled = self.watch(child, set(remaining), collect_errors)
            remaining = [n for n in remaining if n not in finished and n != stopped_at]
            if stopped_at is None and remaining and not stalled and collect_errors:
                # pytest refuses the whole command line when a node id's module failed to import
                # ("found no collectors"): only the tests under a failed collector are lost; the
                # others are run again without them.
                lost = {n: error for n in remaining if (error := _failed_collector(n, collect_errors)) is not None}
                for nodeid, error in lost.items():
                    self.record(event=EVENT_RESULT, nodeid=nodeid, outcome="error", duration=0.0,
                                message=_collection_reason(error))
                remaining = [n for n in remaining if n not in lost]
                if lost:
                    continue
            if stopped_at is None and remaining:
                # The child ended, or stalled, without a test in flight: whatever is left never started,
                # and a new child would import the submission again and meet the same fate.
                if stalled and not finished:
                    reason = f"{COLLECTION_HUNG} within {self.collect_timeout:g} s"
                elif stalled:
                    reason = f"not run: pytest stopped for over {self.collect_timeout:g} s between tests"
                elif collect_errors:
                    reason = _collection_reason(collect_errors[-1][1])
                else:
                    reason = f"not run: pytest exited with code {child.returncode} before this test started"
                for nodeid in remaining:
                    self.record(event=EVENT_RESULT, nodeid=nodeid, outcome="error", duration=0.0, message=reason)
                break
        self.record(event=EVENT_DONE)
        return 0

    @property
    def collect_timeout(self) -> float:
        return float(self.config.get("collect_timeout", 2 * float(self.config.get("default_timeout", 30))))

    def watch(self, child: subprocess.Popen, asked: set[str],
              collect_errors: list[str]) -> tuple[set[str], str | None, bool]:
        """Follow one pytest child; return the finished node ids, the test that was in flight when it died
        or timed out (None when it ended between tests), and whether it stalled with no test in flight.

        A result counts only for the test in flight, after its start event, once: the plugin writes
        exactly that, so anything else was written by candidate code and is recorded as an anomaly."""
        finished: set[str] = set()
        current, started = None, time.monotonic()  # with no test in flight, `started` is the last event
        with open(self.events_path, encoding="utf-8") as events:
            buffer = ""
            while True:
                exited = child.poll() is not None
                chunk = events.read(1 << 20)
                buffer += chunk
                *lines, buffer = buffer.split("\n")
                for line in lines:
                    event = _parse(line)
                    if event is None:
                        continue
                    kind = event["event"]
                    if kind == EVENT_START:
                        nodeid = event["nodeid"]
                        if current is not None:
                            self.anomaly(f"{nodeid} started while {current} had not reported a result")
                        elif nodeid not in asked or nodeid in finished:
                            self.anomaly(f"a start event for {nodeid}, which was not to run")
                        else:
                            current, started = nodeid, time.monotonic()
                    elif kind == EVENT_RESULT:
                        if event["nodeid"] != current:
                            self.anomaly(f"a result for {event['nodeid']}, which was not running")
                            continue
                        finished.add(current)
                        current, started = None, time.monotonic()
                        self.record(**_result(event))
                    elif kind == EVENT_COLLECT_ERROR:
                        collect_errors.append((str(event.get("nodeid", "")), str(event.get("message", ""))))
                if current is not None and time.monotonic() - started > self.timeout_for(current):
                    self.kill(child)
                    self.record(event=EVENT_RESULT, nodeid=current, outcome="timeout",
                                duration=round(time.monotonic() - started, 3),
                                message=f"exceeded the per-test timeout of {self.timeout_for(current):g} s")
                    return finished, current, False
                if current is None and not exited and time.monotonic() - started > self.collect_timeout:
                    self.kill(child)  # collecting (importing) or between tests for too long
                    return finished, None, True
                if exited and not chunk:
                    break
                if not chunk:
                    time.sleep(POLL_S)
        if current is not None:
            code = child.returncode
            how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            self.record(event=EVENT_RESULT, nodeid=current, outcome="crashed",
                        duration=round(time.monotonic() - started, 3),
                        message=f"the test process {how} during this test")
            self.kill(child)  # reap any workers left in its group
            return finished, current, False
        self.kill(child)
        return finished, None, False


def _version(dist: str) -> str | None:
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def main() -> int:
    print(STARTED, flush=True)
    config = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    runner = Runner(config, _read_key())
    runner.record(event=EVENT_STARTED)
    runner.record(event=EVENT_ENV, python=sys.version.split()[0], torch=_version("torch"), triton=_version("triton"))
    try:
        return runner.collect() if config["mode"] == "collect" else runner.run()
    finally:
        shutil.rmtree(runner.scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
