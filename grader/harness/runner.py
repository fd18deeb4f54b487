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

Each results line carries an HMAC made with a key the grader sends on stdin. The key is
read before any candidate code starts, and the runner then makes itself non-dumpable so
that candidate processes (same uid, no capabilities) cannot read it from /proc. Lines
that candidate code writes into the results file therefore fail the grader's check.
"""
from __future__ import annotations

import ctypes
import hashlib
import hmac
import json
import os
import signal
import subprocess
import shutil
import sys
import tempfile
import time
from pathlib import Path

HARNESS = Path(__file__).resolve().parent
POLL_S = 0.05


def _matches(pattern: str, nodeid: str) -> bool:
    return nodeid == pattern or nodeid.startswith(pattern + "::") or nodeid.startswith(pattern + "[")


def _parse(line: str) -> dict | None:
    """One event line, or None when it is not what the plugin writes (the file is in reach of
    candidate code, so a garbled line must not stop the runner)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return None
    if event["event"] in ("start", "result", "collected") and not isinstance(event.get("nodeid"), str):
        return None
    return event


def _read_key() -> bytes:
    key = sys.stdin.buffer.read(4096).strip()
    sys.stdin.close()
    try:  # PR_SET_DUMPABLE = 4: /proc/<pid>/mem and ptrace need CAP_SYS_PTRACE from now on
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    return key


def sign(key: bytes, line: dict) -> str:
    """The canonical JSON of line with its HMAC-SHA256 under key added as "mac"."""
    body = json.dumps(line, sort_keys=True, separators=(",", ":"))
    mac = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    return json.dumps({**line, "mac": mac}, sort_keys=True, separators=(",", ":"))


class Runner:
    def __init__(self, config: dict, key: bytes) -> None:
        self.config = config
        self.key = key
        self.tests = os.environ["MLGRADE_TESTS"]
        self.submission = os.environ["MLGRADE_SUBMISSION"]
        self.results = open(Path(os.environ["MLGRADE_OUT"]) / "results.jsonl", "a", encoding="utf-8")
        self.scratch = Path(tempfile.mkdtemp(prefix="mlgrade-events-"))
        self.events_path = self.scratch / "events.jsonl"

    def record(self, **line) -> None:
        self.results.write(sign(self.key, line) + "\n")
        self.results.flush()

    def timeout_for(self, nodeid: str) -> float:
        for pattern, seconds in self.config.get("timeouts", {}).items():
            if _matches(pattern, nodeid):
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
                if event is not None and event["event"] in ("collected", "collect_error"):
                    self.record(**event)
        self.record(event="done", exit_code=child.returncode)
        return 0

    def run(self) -> int:
        remaining = list(self.config["nodeids"])
        collect_errors: list[str] = []
        while remaining:
            child = self.spawn(remaining)
            finished, stopped_at = self.watch(child, collect_errors)
            remaining = [n for n in remaining if n not in finished]
            if stopped_at is None:
                # The child ended without a test in flight: whatever is left never started.
                reason = f"not run: pytest exited with code {child.returncode} before this test started"
                if collect_errors:
                    reason = "not run: collection error: " + collect_errors[-1].strip().splitlines()[-1][:500]
                for nodeid in remaining:
                    self.record(event="result", nodeid=nodeid, outcome="error", duration=0.0, message=reason)
                break
            remaining = [n for n in remaining if n != stopped_at]
        self.record(event="done")
        return 0

    def watch(self, child: subprocess.Popen, collect_errors: list[str]) -> tuple[set[str], str | None]:
        """Follow one pytest child; return the finished node ids and the test that was in flight
        when it died or timed out (None when it ended between tests)."""
        finished: set[str] = set()
        current, started = None, 0.0
        with open(self.events_path, encoding="utf-8") as events:
            buffer = ""
            while True:
                exited = child.poll() is not None
                chunk = events.read()
                buffer += chunk
                *lines, buffer = buffer.split("\n")
                for line in lines:
                    event = _parse(line)
                    if event is None:
                        continue
                    if event["event"] == "start":
                        current, started = event["nodeid"], time.monotonic()
                    elif event["event"] == "result":
                        finished.add(event["nodeid"])
                        current = None
                        self.record(**event)
                    elif event["event"] == "collect_error":
                        collect_errors.append(event["message"])
                if current is not None and time.monotonic() - started > self.timeout_for(current):
                    self.kill(child)
                    self.record(event="result", nodeid=current, outcome="timeout",
                                duration=round(time.monotonic() - started, 3),
                                message=f"exceeded the per-test timeout of {self.timeout_for(current):g} s")
                    return finished, current
                if exited and not chunk:
                    break
                time.sleep(POLL_S)
        if current is not None:
            code = child.returncode
            how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            self.record(event="result", nodeid=current, outcome="crashed", duration=round(time.monotonic() - started, 3),
                        message=f"the test process {how} during this test")
            self.kill(child)  # reap any workers left in its group
            return finished, current
        self.kill(child)
        return finished, None


def _version(dist: str) -> str | None:
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    runner = Runner(config, _read_key())
    runner.record(event="started")
    runner.record(event="env", python=sys.version.split()[0], torch=_version("torch"), triton=_version("triton"))
    try:
        return runner.collect() if config["mode"] == "collect" else runner.run()
    finally:
        shutil.rmtree(runner.scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
