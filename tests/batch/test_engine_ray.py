"""The Ray engine (grader/batch/engine_ray.py) on real local Ray instances: real gradings of the toy
fixture exercise (tests/fixtures/home) on bwrap, Ray's own failure paths (a worker killed, a node
of a two-node local cluster removed), the local instance's clean-up (close, kill -9 of the batch,
kill -9 of the batch and its sitter), and `mlgrade batch --engine ray` stopped twice and resumed.

Ray takes seconds to start, so one instance serves the engine-level tests of this module; the
tests about ending an instance run their batch in a child process. No fixed sleeps: kills wait for
the grading's sandbox to exist (or the ledger's running row); "gone" is polled with a generous
deadline that only a real leak exhausts.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import closing
from pathlib import Path

import pytest

pytest.importorskip("ray")

from grader.batch import engine_ray  # noqa: E402
from grader.batch.engine_ray import RayEngine  # noqa: E402
from grader.batch.ray_local import descendants, sweep_stale  # noqa: E402
from sandbox.docker_backend import process_start  # noqa: E402
from grader.batch.tasks import GradeOutcome, GradeTask  # noqa: E402
from grader.intake import intake  # noqa: E402
from sandbox import available_backends  # noqa: E402
from tests.conftest import PROJECT, TOY_HOME, TOY_SUBMISSIONS  # noqa: E402

if available_backends().get("bwrap") is not None and os.environ.get("CI") != "true":
    pytest.skip("needs bubblewrap (required under CI=true)", allow_module_level=True)

pytestmark = pytest.mark.slow

TOY = TOY_HOME / "exercises" / "toy"
GONE_DEADLINE_S = 120.0  # a leak keeps a process forever; a loaded machine only makes clean-up slower
SLOW_CALC = "import time\ntime.sleep(2)  # a grading that lasts: the test sees it running\n\n"


# -- helpers ----------------------------------------------------------------------------------

def wait_until(what: str, condition, deadline_s: float = GONE_DEADLINE_S, proc: subprocess.Popen | None = None):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended (exit {proc.returncode}) before {what}")
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what} after {deadline_s:g} s")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def snapshot(pids) -> dict[int, str | None]:
    return {pid: process_start(pid) for pid in pids}


def alive(processes: dict[int, str | None]) -> list[int]:
    """Those of processes still running (a zombie has exited: /proc/PID/stat says Z)."""
    left = []
    for pid, start in processes.items():
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and process_start(pid) == start:
            left.append(pid)
    return left


def task(candidate: str, submission: Path, out: Path, **changes) -> GradeTask:
    fields = dict(candidate=candidate, submission=str(submission), exercise="toy", exercise_home=str(TOY_HOME),
                  backend="bwrap", device="cpu", seed=0, out_dir=str(out / candidate), key=f"key-{candidate}",
                  attempt=1, needs_gpu=False, exclusive=False)
    fields.update(changes)
    return GradeTask(**fields)


def run_all(engine: RayEngine, tasks: list[GradeTask]) -> dict[str, GradeOutcome]:
    for t in tasks:
        engine.start(t)
    got: dict[str, GradeOutcome] = {}
    end = time.monotonic() + 300
    while len(got) < len(tasks) and time.monotonic() < end:
        for outcome in engine.finished(1.0):
            assert outcome.candidate not in got, outcome  # one outcome per task
            got[outcome.candidate] = outcome
    assert set(got) == {t.candidate for t in tasks}
    return got


def slow_submission(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "calc.py").write_text(SLOW_CALC + (TOY_HOME / "reference" / "toy" / "calc.py").read_text())
    return folder


def zipped(source: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(source.rglob("*.py")):
            z.write(path, path.relative_to(source).as_posix())
    return archive


# -- one instance for the engine-level tests ----------------------------------------------------

@pytest.fixture(scope="module")
def engine():
    engine = RayEngine(slots=2, address=None, exercise_home=str(TOY_HOME))
    processes = snapshot(engine.local_pids)
    folder = engine.local_folder
    assert processes and folder is not None and folder.is_dir()
    try:
        yield engine
    finally:
        engine.close()
    assert not alive(processes) and not folder.exists()  # close() waited for the sitter's clean-up


def test_grades_folders_and_archives_and_refuses_like_grade_one(engine: RayEngine, tmp_path: Path) -> None:
    ref = TOY_HOME / "reference" / "toy"
    archive = zipped(TOY / "calibration" / "no-edge", tmp_path / "no-edge.zip")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"this is not a zip archive\n")
    out = tmp_path / "out"
    got = run_all(engine, [task("ref", ref, out), task("no-edge", archive, out),
                           task("missing", TOY_SUBMISSIONS / "missing-file", out), task("bad", bad, out)])

    assert (got["ref"].result, got["ref"].percent, got["ref"].reason) == ("graded", 100.0, "")
    assert (got["no-edge"].result, got["no-edge"].percent) == ("graded", 80.0)
    assert got["ref"].key == "key-ref" and got["ref"].attempt == 1
    # refused by intake on the batch's side, with intake's line, and nothing started or written
    assert got["missing"].result == "candidate_failure" and got["missing"].percent is None
    assert got["missing"].reason.endswith("missing required file: calc.py")
    assert got["bad"].result == "candidate_failure" and "not a readable zip file" in got["bad"].reason
    assert not (out / "missing").exists() and not (out / "bad").exists()

    # the reports name the batch's path and hash the content as a local grading would
    (tmp_path / "check").mkdir()
    expected_sha = {"ref": intake(ref, tmp_path / "check", ["calc.py"]).sha256,
                    "no-edge": hashlib.sha256(archive.read_bytes()).hexdigest()}
    for name, given in (("ref", ref), ("no-edge", archive)):
        folder = out / name
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        assert files == ["candidate/report.json", "candidate/report.md", "report.json", "report.md"]
        for view in ("report.json", "candidate/report.json"):
            report = json.loads((folder / view).read_text())
            assert report["submission"]["source"] == str(given)
            assert report["submission"]["sha256"] == expected_sha[name]
            assert report["score"]["percent"] == got[name].percent
        assert f"`{given}`" in (folder / "report.md").read_text()
        assert all("mlgrade-ray-task" not in p.read_text() for p in folder.rglob("*") if p.is_file())
    assert not list(out.glob(".*"))  # no temporary folders of the atomic write left


def test_a_timed_grading_never_shares_its_node(engine: RayEngine, tmp_path: Path) -> None:
    """Three at once with 2 CPUs: the exclusive one runs alone (the shared ones may run together)."""
    slow = slow_submission(tmp_path / "slow")
    out = tmp_path / "out"
    got = run_all(engine, [task("shared-1", slow, out), task("timed", TOY / "calibration" / "no-edge", out, exclusive=True),
                           task("shared-2", slow, out)])
    assert {o.result for o in got.values()} == {"graded"}
    timing = {name: json.loads((out / name / "report.json").read_text())["timing"] for name in got}
    timed = timing.pop("timed")
    for other in timing.values():  # whole seconds, so ordering is exact; an overlap lasts over a second
        assert other["finished_at"] <= timed["started_at"] or timed["finished_at"] <= other["started_at"], timing


def test_a_killed_worker_is_an_infra_failure_and_its_files_go(engine: RayEngine, tmp_path: Path) -> None:
    out = tmp_path / "out"
    engine.start(task("hang", TOY_SUBMISSIONS / "hang", out))
    worker = wait_until("the grading's worker", lambda: [p for p in engine.local_pids
                                                         if cmdline(p).startswith("ray::mlgrade:hang")])[0]
    wait_until("its sandbox", lambda: [p for p in descendants(worker) if cmdline(p).startswith("/usr/bin/bwrap")])
    below = snapshot([worker, *descendants(worker)])
    scratch = wait_until("its scratch folder", lambda: list((engine.local_folder / "tasks").iterdir()))
    os.kill(worker, signal.SIGKILL)
    outcomes = wait_until("its outcome", lambda: engine.finished(1.0))
    assert [(o.candidate, o.result, o.reason) for o in outcomes] == [
        ("hang", "infra_failure", "the Ray worker running the grading died")]
    wait_until("the sandbox to die with its worker", lambda: not alive(below))
    assert scratch[0].exists()  # the killed task could not remove its files ...
    assert run_all(engine, [task("ref", TOY_HOME / "reference" / "toy", out)])["ref"].result == "graded"
    assert not scratch[0].exists() and not list((engine.local_folder / "tasks").iterdir())  # ... the next task did
    assert not (out / "hang").exists()


def test_a_node_with_another_version_of_the_exercise_refuses_to_grade(engine: RayEngine, tmp_path: Path) -> None:
    home = tmp_path / "home"  # the batch's copy of the exercise differs from the node's (TOY_HOME)
    shutil.copytree(TOY_HOME, home)
    test = home / "exercises" / "toy" / "tests" / "hidden" / "test_mean.py"
    test.write_text(test.read_text() + "\n# changed\n")
    got = run_all(engine, [task("ref", TOY_HOME / "reference" / "toy", tmp_path / "out", exercise_home=str(home))])
    assert got["ref"].result == "infra_failure" and got["ref"].percent is None
    assert "install the same mlgrade and exercises on every node" in got["ref"].reason


def test_a_gpu_grading_without_a_gpu_node_fails_at_once(engine: RayEngine, tmp_path: Path) -> None:
    """This machine has no GPU, so the cluster has none: Ray would keep the task pending forever."""
    got = run_all(engine, [task("gpu", TOY_HOME / "reference" / "toy", tmp_path / "out", needs_gpu=True)])
    assert got["gpu"].result == "infra_failure" and "has a GPU" in got["gpu"].reason


def test_a_task_that_raises_is_an_infra_failure(engine: RayEngine, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch never sends a corrupt payload; this one does, so the node's side raises for real."""
    monkeypatch.setattr(engine_ray, "_payload", lambda t, e: ("tree", "", b"not a tar.gz"))
    got = run_all(engine, [task("corrupt", TOY_HOME / "reference" / "toy", tmp_path / "out")])
    assert got["corrupt"].result == "infra_failure"
    assert got["corrupt"].reason.startswith("the grading task raised ReadError")
    assert "\n" not in got["corrupt"].reason


# -- ending a local instance: in a child process that plays the batch ---------------------------

DRIVER = r'''
import json, sys
from grader.batch.engine_ray import RayEngine
from grader.batch.tasks import GradeTask
home, submission, out, backend = sys.argv[1:5]
engine = RayEngine(slots=1, address=None, exercise_home=home)
engine.start(GradeTask(candidate="hang", submission=submission, exercise="toy", exercise_home=home, backend=backend,
                       device="cpu", seed=0, out_dir=out, key="k", attempt=1, needs_gpu=False, exclusive=False))
print(json.dumps({"sitter": engine.local_pids[0], "folder": str(engine.local_folder)}), flush=True)
if sys.stdin.readline().strip() == "close":
    engine.close()
    print("closed", flush=True)
'''


def _driver(tmp_path: Path, backend: str = "bwrap",
            sandbox=lambda pids: [p for p in pids if cmdline(p).startswith("/usr/bin/bwrap")]
            ) -> tuple[subprocess.Popen, dict, dict[int, str | None]]:
    """A batch-like process with one grading running in its sandbox (`sandbox(pids under the
    sitter)` says when); returns it, what it said, and a snapshot of every process of its instance
    (the sitter, Ray's daemons and workers, the sandbox)."""
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(TOY_HOME), str(TOY_SUBMISSIONS / "hang"),
                             str(tmp_path / "out"), backend], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=PROJECT)
    info = json.loads(proc.stdout.readline() or "{}")
    assert info, f"the driver failed (exit {proc.wait()})"
    sitter = info["sitter"]
    wait_until("the sandbox", lambda: sandbox(descendants(sitter)), proc=proc)
    return proc, info, snapshot([sitter, *descendants(sitter)])


def test_close_mid_grading_leaves_nothing(tmp_path: Path) -> None:
    proc, info, processes = _driver(tmp_path)
    proc.stdin.write("close\n")
    proc.stdin.close()
    assert proc.stdout.readline() == "closed\n" and proc.wait() == 0
    assert not alive(processes)  # close() returns after the sitter killed and reaped it all
    assert not Path(info["folder"]).exists() and not (tmp_path / "out").exists()


def test_kill_9_of_the_batch_leaves_nothing(tmp_path: Path) -> None:
    proc, info, processes = _driver(tmp_path)
    proc.kill()
    proc.wait()
    wait_until("the instance to end", lambda: not alive(processes))
    wait_until("its folder to go", lambda: not Path(info["folder"]).exists())


def test_kill_9_of_batch_and_sitter_is_cleaned_up_by_the_next_start(tmp_path: Path) -> None:
    proc, info, processes = _driver(tmp_path)
    os.kill(info["sitter"], signal.SIGKILL)
    proc.kill()
    proc.wait()
    folder = Path(info["folder"])
    assert folder.exists()  # nobody was left to remove it
    assert folder in sweep_stale()  # what LocalRay.start does first
    assert not alive(processes) and not folder.exists()


def test_kill_9_mid_docker_grading_leaves_no_container(tmp_path: Path) -> None:
    from sandbox.docker_backend import LABEL, OWNER_PID, connect, default_image
    try:
        client = connect()
        client.api.inspect_image(default_image())
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI") == "true":
            pytest.fail(f"docker and the sandbox image must be available in CI: {exc}")
        pytest.skip(f"docker or the sandbox image unavailable: {exc}")

    def containers_of(pids) -> list[dict]:
        return [c for c in client.api.containers(all=True, filters={"label": f"{LABEL}=1"})
                if c["Labels"].get(OWNER_PID) in {str(p) for p in pids}]

    proc, info, processes = _driver(tmp_path, "docker", containers_of)
    assert containers_of(processes)
    proc.kill()
    proc.wait()
    wait_until("the instance to end", lambda: not alive(processes))
    assert not containers_of(processes)  # the sitter swept them before it ended
    assert not Path(info["folder"]).exists()


# -- a cluster of two nodes: a lost node --------------------------------------------------------

CLUSTER = r'''
import json, os, sys, time
os.environ["RAY_AUTH_MODE"] = "disabled"  # a throwaway cluster on this machine
from ray.cluster_utils import Cluster
from grader.batch.engine_ray import RayEngine
from grader.batch.tasks import GradeTask
home, ref, hang, out = sys.argv[1:5]
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                         "object_store_memory": 80 << 20})
node = cluster.add_node(num_cpus=1, resources={"mlgrade_node": 1}, object_store_memory=80 << 20)
def task(name, submission):
    return GradeTask(candidate=name, submission=submission, exercise="toy", exercise_home=home, backend="bwrap",
                     device="cpu", seed=0, out_dir=f"{out}/{name}", key="k", attempt=1, needs_gpu=False,
                     exclusive=False)
def one(engine):
    while True:
        got = engine.finished(1.0)
        if got:
            return [[o.candidate, o.result, o.reason] for o in got]
try:
    engine = RayEngine(slots=1, address=cluster.address, exercise_home=home)
    result = {"local": engine.local_pids}
    engine.start(task("ref", ref))
    result["ref"] = one(engine)
    engine.start(task("hang", hang))
    while not any(p.startswith("ray::mlgrade:hang") for p in
                  (open(f"/proc/{d}/cmdline", "rb").read().decode(errors="replace") for d in os.listdir("/proc")
                   if d.isdigit() and os.path.exists(f"/proc/{d}/cmdline"))):
        time.sleep(0.05)
    cluster.remove_node(node, allow_graceful=False)
    result["hang"] = one(engine)
    engine.close()
    print(json.dumps(result), flush=True)
finally:
    cluster.shutdown()
'''


def test_a_lost_node_is_an_infra_failure_and_the_batch_goes_on(tmp_path: Path) -> None:
    """Connects by address (no local instance); the head has no mlgrade_node, so gradings run on
    the other node, whose removal (its raylet killed) loses the grading there."""
    temp = tempfile.mkdtemp(prefix="mlgrade-rt-")  # Ray's files; short, as its socket paths are under it
    try:
        run = subprocess.run([sys.executable, "-c", CLUSTER, str(TOY_HOME), str(TOY_HOME / "reference" / "toy"),
                              str(TOY_SUBMISSIONS / "hang"), str(tmp_path / "out")], capture_output=True, text=True,
                             cwd=PROJECT, timeout=300, env={**os.environ, "RAY_TMPDIR": temp})
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["local"] == []  # connected to the cluster: no instance of its own
    assert result["ref"] == [["ref", "graded", ""]]
    assert result["hang"] == [["hang", "infra_failure", "the Ray node running the grading was lost"]]


# -- mlgrade batch --engine ray, stopped twice ------------------------------------------------

def _query(folder: Path, sql: str) -> list[tuple]:
    try:
        with closing(sqlite3.connect(f"file:{folder / 'ledger.sqlite3'}?mode=ro", uri=True, timeout=30)) as db:
            return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # no ledger yet, or no tables in it yet
        return []


def _batch(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "MLGRADE_HOME": str(TOY_HOME)}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen([sys.executable, "-m", "grader", "batch", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=PROJECT)


def _sitter_of(batch: subprocess.Popen) -> dict[int, str | None]:
    sitters = [p for p in descendants(batch.pid) if "grader.batch.ray_local" in cmdline(p)]
    return snapshot(sitters) if sitters else {}


def _stop_mid_grading(out: Path, args: list[str], sig: int) -> tuple[subprocess.Popen, dict[int, str | None]]:
    """Start the batch, wait for the slow candidate's running row and its sandbox, send sig; returns
    the batch (ended) and a snapshot of its instance's processes."""
    batch = _batch(args)
    wait_until("the slow candidate's running row",
               lambda: ("slow",) in _query(out, "SELECT candidate FROM submissions WHERE state = 'running'"), proc=batch)
    sitter = wait_until("the local instance", lambda: _sitter_of(batch), proc=batch)
    pid = next(iter(sitter))

    def slow_sandbox() -> list[int]:
        workers = [p for p in descendants(pid) if cmdline(p).startswith("ray::mlgrade:slow")]
        return [p for w in workers for p in descendants(w) if cmdline(p).startswith("/usr/bin/bwrap")]

    wait_until("the slow grading's sandbox", slow_sandbox, proc=batch)
    processes = snapshot([pid, *descendants(pid)])
    batch.send_signal(sig)
    batch.communicate(timeout=300)
    return batch, processes


def test_batch_on_ray_stopped_twice_then_resumed_grades_each_candidate_once(tmp_path: Path) -> None:
    source = tmp_path / "subs"
    shutil.copytree(TOY_HOME / "reference" / "toy", source / "ref")
    zipped(TOY / "calibration" / "no-edge", source / "no-edge.zip")
    (source / "bad.zip").write_bytes(b"not a zip\n")
    slow_submission(source / "slow")
    out = tmp_path / "round"
    args = ["toy", str(source), "--out", str(out), "--jobs", "2", "--engine", "ray", "--backend", "bwrap"]

    stopped, first = _stop_mid_grading(out, args, signal.SIGTERM)  # the CLI's clean stop
    assert stopped.returncode == 130
    assert not alive(first)  # engine.close() waited for the instance to end
    assert _query(out, "SELECT COUNT(*) FROM submissions WHERE state = 'running'") == [(0,)]

    killed, second = _stop_mid_grading(out, args, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert ("slow",) in _query(out, "SELECT candidate FROM submissions WHERE state = 'running'")  # left by the kill
    wait_until("the killed batch's instance to end", lambda: not alive(second))

    rerun = _batch(args)
    third: dict[int, str | None] = {}
    while rerun.poll() is None:  # every process its instance had, to check that they end with the batch
        for sitter in _sitter_of(rerun):
            third.update(snapshot([sitter, *descendants(sitter)]))
        time.sleep(0.05)
    stdout, stderr = rerun.communicate()
    assert rerun.returncode == 0, stderr
    assert "left running by a stopped batch will run again" in stderr
    assert third and not alive(third)

    rows = {c: (state, gradings) for c, state, gradings in _query(out, "SELECT candidate, state, gradings FROM submissions")}
    assert rows == {"ref": ("graded", 1), "no-edge": ("graded", 1), "slow": ("graded", 1),
                    "bad": ("candidate_failure", 1)}
    done = dict(_query(out, "SELECT candidate, COUNT(*) FROM attempts WHERE result IN ('graded', 'candidate_failure') "
                            "GROUP BY candidate"))
    assert done == {"ref": 1, "no-edge": 1, "slow": 1, "bad": 1}  # each graded exactly once
    assert len(_query(out, "SELECT id FROM attempts WHERE candidate = 'slow' AND result = 'interrupted'")) == 2
    assert _query(out, "SELECT COUNT(*) FROM attempts WHERE ended_at IS NULL") == [(0,)]
    report = json.loads((out / "candidates" / "slow" / "report.json").read_text())
    assert report["submission"]["source"] == str(source / "slow") and report["score"]["percent"] == 100.0
    assert not [p for p in (out / "candidates").iterdir() if p.name.startswith(".")]
