"""`mlgrade batch` end to end: real gradings of the toy fixture exercise (tests/fixtures/home) on
bwrap (or the process backend where bwrap cannot run), the CLI run as a subprocess, the ledger read
back with sqlite3. Docker tests need an engine and the sandbox image (required under CI=true).

No fixed sleeps: a kill waits on the ledger showing a running row and on the workers existing;
"gone" is polled with a generous deadline that only a real leak would exhaust.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from contextlib import closing
from pathlib import Path

import pytest

from grader.batch.layout import read_round
from grader.batch.ledger import Ledger
from grader.similarity import SIMILARITY_FILE, load_similarity
from sandbox import available_backends
from tests.conftest import PROJECT, TOY_HOME, TOY_SUBMISSIONS, refused

BACKENDS = available_backends()
BACKEND = "bwrap" if BACKENDS.get("bwrap") is None or os.environ.get("CI") == "true" else "process"
TOY = TOY_HOME / "exercises" / "toy"
WORKER = "grader.batch.engine_local"
GONE_DEADLINE_S = 120.0  # a leak keeps a process forever; a loaded machine only makes clean-up slower


def mlgrade(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full = {**os.environ, "MLGRADE_HOME": str(TOY_HOME), "MLGRADE_RETRY_DELAY": "0.05", **(env or {})}
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True, env=full,
                          cwd=PROJECT, timeout=timeout)


def start_batch(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    full = {**os.environ, "MLGRADE_HOME": str(TOY_HOME), "MLGRADE_RETRY_DELAY": "0.05", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "grader", "batch", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=full, cwd=PROJECT)


def query(folder: Path, sql: str, *params: object) -> list[tuple]:
    with closing(sqlite3.connect(f"file:{folder / 'ledger.sqlite3'}?mode=ro", uri=True, timeout=30)) as db:
        return db.execute(sql, params).fetchall()


def running_rows(folder: Path) -> list[tuple]:
    """Rows in state running; none while the batch has not made its ledger yet."""
    try:
        return query(folder, "SELECT candidate FROM submissions WHERE state = 'running'")
    except sqlite3.OperationalError:  # no file yet, or no tables in it yet
        return []


def states(folder: Path) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in query(folder, "SELECT candidate, state, reason, percent, gradings FROM submissions")}


def completed(folder: Path) -> dict[str, int]:
    return dict(query(folder, "SELECT candidate, COUNT(*) FROM attempts WHERE result IN "
                              "('graded', 'candidate_failure') GROUP BY candidate"))


def make_submissions(root: Path, names: tuple[str, ...] = ("ref", "no-edge", "bad", "crash")) -> Path:
    """A SOURCE folder: the reference as a folder, the calibration as a .zip, a broken .zip, and a
    submission whose runner dies mid-run (kill-runner)."""
    root.mkdir(parents=True)
    if "ref" in names:
        shutil.copytree(TOY_HOME / "reference" / "toy", root / "ref")
    if "no-edge" in names:
        with zipfile.ZipFile(root / "no-edge.zip", "w") as archive:
            archive.write(TOY / "calibration" / "no-edge" / "calc.py", "calc.py")
    if "bad" in names:
        (root / "bad.zip").write_bytes(b"this is not a zip archive\n")
    if "crash" in names:
        shutil.copytree(TOY_SUBMISSIONS / "kill-runner", root / "crash")
    (root / ".DS_Store").write_text("skipped: dotfiles are not candidates\n")
    return root


# -- processes --------------------------------------------------------------------------------

def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process, None when it is gone (or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return (None if fields[0] == "Z" else (int(fields[1]), fields[19]))  # type: ignore[return-value]


def descendants(root: int) -> dict[int, str]:
    """pid -> start time of every live process under root."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := _stat(int(entry))) is not None:
            parents.setdefault(info[0], []).append(int(entry))
            starts[int(entry)] = info[1]
    found, todo = {}, [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def workers_of(pid: int) -> dict[int, str]:
    found = {}
    for child, start in descendants(pid).items():
        try:
            if WORKER in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace"):
                found[child] = start
        except OSError:
            pass
    return found


def alive(processes: dict[int, str]) -> list[int]:
    return [pid for pid, start in processes.items() if (info := _stat(pid)) is not None and info[1] == start]


def wait_until(what: str, condition, deadline_s: float = GONE_DEADLINE_S, batch: subprocess.Popen | None = None):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        if batch is not None and batch.poll() is not None:
            pytest.fail(f"the batch ended (exit {batch.returncode}) before {what}")
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what} after {deadline_s:g} s")


def kill_mid_grading(out: Path, args: list[str], env: dict[str, str] | None = None,
                     ready=lambda under, workers: True) -> tuple[dict[int, str], dict[int, str]]:
    """Start the batch, wait for a running row, its workers and ready(processes under it, workers),
    then kill -9 it at once; returns its workers and the processes under it that ready saw, once
    all of them are gone."""
    batch = start_batch(*args, env=env)
    try:
        wait_until("a running row", lambda: running_rows(out), batch=batch)
        workers = wait_until("its workers", lambda: workers_of(batch.pid), batch=batch)

        def moment() -> dict[int, str] | None:
            snapshot = descendants(batch.pid)
            return snapshot if ready(snapshot, workers) else None

        under = wait_until("the moment to kill", moment, batch=batch)
    finally:
        batch.send_signal(signal.SIGKILL)
        batch.wait()
    assert running_rows(out)  # the kill left the ledger mid-grading
    wait_until("the processes of the killed batch to end", lambda: not alive(under))
    return workers, under


# -- a round ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("round")
    source = make_submissions(base / "subs")
    out = base / "round"
    run = mlgrade("batch", "toy", str(source), "--out", str(out), "--jobs", "2", "--backend", BACKEND)
    return source, out, run


def test_round_lands_with_states_reasons_and_files(landed) -> None:
    _, out, run = landed
    assert run.returncode == 0, run.stderr
    got = states(out)
    assert set(got) == {"ref", "no-edge", "bad", "crash"}  # .DS_Store skipped
    assert got["ref"] == ("graded", "", 100.0, 1)
    assert got["no-edge"] == ("graded", "", 80.0, 1)
    state, reason, percent, gradings = got["bad"]
    assert (state, percent, gradings) == ("candidate_failure", None, 1) and "not a readable zip file" in reason
    state, reason, percent, gradings = got["crash"]
    assert (state, percent, gradings) == ("candidate_failure", 0.0, 1) and reason.startswith("crashed:")
    assert completed(out) == {"ref": 1, "no-edge": 1, "bad": 1, "crash": 1}
    assert query(out, "SELECT COUNT(*) FROM attempts")[0][0] == 4  # no retries: none was infrastructure

    round_ = read_round(out)
    assert round_.exercise == "toy" and round_.info["backend"] == BACKEND and round_.info["seed"] == "0"
    entries = {e.candidate: e for e in round_.entries}
    assert entries["bad"].report() is None and not entries["bad"].folder.exists()
    for name in ("ref", "no-edge", "crash"):  # the crash keeps its report
        grader_view, candidate = entries[name].report("grader"), entries[name].report("candidate")
        assert grader_view["view"] == "grader" and candidate["view"] == "candidate"
        assert grader_view["score"]["percent"] == entries[name].percent
        assert (entries[name].folder / "report.md").is_file() and (entries[name].folder / "candidate/report.md").is_file()
        assert "test_mean" not in json.dumps(candidate) and "stdout_tail" not in json.dumps(candidate)
    assert not [p for p in (out / "candidates").iterdir() if p.name.startswith(".")]  # no temporary folders
    # the end of the round: every page, the summary and the similarity table (finish_round)
    for name in ("ref", "no-edge", "crash"):
        assert (entries[name].folder / "report.html").is_file()
        assert (entries[name].folder / "candidate" / "report.html").is_file()
        assert "test_mean" not in (entries[name].folder / "candidate" / "report.html").read_text()
    assert "ref" in (out / "summary.html").read_text()
    similarity = load_similarity(out / SIMILARITY_FILE)
    assert sorted(similarity.compared) == ["crash", "no-edge", "ref"] and "bad" in similarity.notes
    assert "similarity.json" in run.stderr and "summary.html" in run.stderr

    table = run.stdout
    assert "graded" in table and "candidate failure" in table and "not a readable zip file" in table
    assert f"{out}/candidates" in table.replace("\n", "")
    assert "4 candidates, 4 to grade" in run.stderr


def test_rerun_grades_nothing_and_a_changed_submission_alone(landed, tmp_path: Path) -> None:
    source, out, first = landed
    assert first.returncode == 0, first.stderr
    source2, out2 = tmp_path / "subs", tmp_path / "round"
    shutil.copytree(source, source2)  # moved: same content, so same keys
    shutil.copytree(out, out2)
    before = query(out2, "SELECT COUNT(*) FROM attempts")[0][0]
    again = mlgrade("batch", "toy", str(source2), "--out", str(out2), "--jobs", "2", "--backend", BACKEND)
    assert again.returncode == 0, again.stderr
    assert "0 to grade, 4 already final" in again.stderr
    assert query(out2, "SELECT COUNT(*) FROM attempts")[0][0] == before

    calc = source2 / "ref" / "calc.py"
    calc.write_text(calc.read_text() + "\n# a comment: new content, new key\n")
    changed = mlgrade("batch", "toy", str(source2), "--out", str(out2), "--jobs", "2", "--backend", BACKEND)
    assert changed.returncode == 0, changed.stderr
    assert "1 to grade, 3 already final" in changed.stderr
    new = query(out2, "SELECT candidate, result FROM attempts ORDER BY id")[before:]
    assert new == [("ref", "graded")]
    assert states(out2)["ref"] == ("graded", "", 100.0, 1)
    assert query(out2, "SELECT source FROM submissions WHERE candidate = 'ref'") == [("ref",)]

    forced = mlgrade("batch", "toy", str(source2), "--out", str(out2), "--backend", BACKEND, "--regrade", "no-edge")
    assert forced.returncode == 0, forced.stderr
    assert query(out2, "SELECT candidate FROM attempts ORDER BY id")[-1] == ("no-edge",)
    assert completed(out2)["no-edge"] == 2 and states(out2)["no-edge"][3] == 1  # one for its current key

    shutil.rmtree(source2 / "crash")  # left SOURCE: kept in the ledger, not compared with anything
    left = mlgrade("batch", "toy", str(source2), "--out", str(out2), "--backend", BACKEND)
    assert left.returncode == 0, left.stderr
    assert load_similarity(out2 / SIMILARITY_FILE).notes["crash"] == "not compared: no longer in SOURCE"


def test_kill_9_then_the_same_command_grades_each_candidate_once(tmp_path: Path) -> None:
    source = make_submissions(tmp_path / "subs")
    out = tmp_path / "round"
    args = ["toy", str(source), "--out", str(out), "--jobs", "2", "--backend", BACKEND]
    sandboxing = lambda under, workers: len(under) > len(workers)  # noqa: E731
    workers, under = kill_mid_grading(out, args, ready=sandboxing)  # killed while a sandbox runs
    assert workers and not alive(workers) and not alive(under)
    assert len(under) > len(workers)  # the sandboxes that ran under the workers went too
    assert query(out, "SELECT COUNT(*) FROM submissions WHERE state = 'running'")[0][0] >= 1  # left by the kill

    rerun = mlgrade("batch", *args)
    assert rerun.returncode == 0, rerun.stderr
    assert "left running by a stopped batch will run again" in rerun.stderr
    assert {s for s, *_ in states(out).values()} <= {"graded", "candidate_failure"}
    assert completed(out) == {"ref": 1, "no-edge": 1, "bad": 1, "crash": 1}
    interrupted = query(out, "SELECT candidate FROM attempts WHERE result = 'interrupted'")
    assert interrupted and query(out, "SELECT COUNT(*) FROM attempts WHERE ended_at IS NULL") == [(0,)]
    assert not [p for p in (out / "candidates").iterdir() if p.name.startswith(".")]


def test_a_wall_clock_timeout_is_a_candidate_failure_with_its_report(tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(TOY_HOME, home, ignore=shutil.ignore_patterns("toy-latency"))
    manifest = home / "exercises" / "toy" / "exercise.toml"
    text = manifest.read_text().replace("wall_s = 60", "wall_s = 15").replace("test_timeout_s = 4", "test_timeout_s = 60")
    assert "wall_s = 15" in text and "test_timeout_s = 60" in text
    manifest.write_text(text)
    source = tmp_path / "subs"
    (source / "spin").mkdir(parents=True)
    (source / "spin" / "calc.py").write_text("def add(a, b):\n    while True:\n        pass\n\n\n"
                                             "def mean(xs):\n    return sum(xs) / len(xs)\n")
    out = tmp_path / "round"
    run = mlgrade("batch", "toy", str(source), "--out", str(out), "--backend", BACKEND, env={"MLGRADE_HOME": str(home)})
    assert run.returncode == 0, run.stderr
    state, reason, percent, gradings = states(out)["spin"]
    assert state == "candidate_failure" and reason.startswith("timed out") and gradings == 1
    report = json.loads((out / "candidates" / "spin" / "report.json").read_text())
    assert report["run"]["timed_out"] and percent == report["score"]["percent"]


def test_timed_exercise_runs_its_gradings_alone(tmp_path: Path) -> None:
    """toy-latency has a latency check: its gradings never overlap, even with --jobs 2 (bad archives
    keep it fast: they are refused at intake, inside the grading)."""
    source = tmp_path / "subs"
    source.mkdir()
    for name in ("a", "b", "c"):
        (source / f"{name}.zip").write_bytes(b"not a zip\n")
    out = tmp_path / "round"
    run = mlgrade("batch", "toy-latency", str(source), "--out", str(out), "--jobs", "2", "--backend", BACKEND)
    assert run.returncode == 0, run.stderr
    if "--jobs 2 lowered to 1" in run.stderr:  # one core or little memory: nothing could overlap anyway
        pytest.skip(f"this machine runs one grading at a time: {run.stderr.splitlines()[0]}")
    assert "has timed checks (latency): each grading runs alone" in run.stderr
    spans = query(out, "SELECT started_at, ended_at FROM attempts ORDER BY started_at")
    assert len(spans) == 3
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1)), spans


def test_roster_csv_and_the_jobs_clamp(tmp_path: Path) -> None:
    subs = make_submissions(tmp_path / "files", names=("ref", "no-edge"))
    roster = tmp_path / "lists" / "roster.csv"
    roster.parent.mkdir()
    roster.write_text(f"candidate,path,email\nalice,../files/ref,a@example.com\n\nbob,{subs / 'no-edge.zip'},b@x\n")
    out = tmp_path / "round"
    run = mlgrade("batch", "toy", str(roster), "--out", str(out), "--jobs", "4096", "--backend", BACKEND)
    assert run.returncode == 0, run.stderr
    clamp = [line for line in run.stderr.splitlines() if line.startswith("--jobs 4096 lowered to")]
    assert len(clamp) == 1 and "this machine has" in clamp[0], run.stderr  # cores, and 4 TiB of memory limits
    assert {c: (s, p) for c, (s, _, p, _) in states(out).items()} == {"alice": ("graded", 100.0),
                                                                      "bob": ("graded", 80.0)}
    assert query(out, "SELECT source FROM submissions ORDER BY candidate") == [("../files/ref",),
                                                                             (str(subs / "no-edge.zip"),)]


# -- refused ----------------------------------------------------------------------------------

def _other_round(folder: Path, exercise: str) -> None:
    ledger = Ledger(folder)
    ledger.set_info({"exercise": exercise, "seed": "0", "device": "cpu"})
    ledger.close()


def _duplicate(t: Path) -> str:
    source = make_submissions(t / "dup", names=("ref",))
    shutil.make_archive(str(source / "ref"), "zip", source / "ref")  # ref/ and ref.zip: one id twice
    return str(source)


def _folder_with(t: Path, name: str, folder: bool) -> str:
    source = t / "s"
    source.mkdir()
    if folder:
        (source / name).mkdir()
    else:
        (source / name).write_text("x\n")
    return str(source)


def _csv(t: Path, text: str) -> str:
    (t / "r.csv").write_text(text)
    return str(t / "r.csv")


BAD = [
    ("missing source", lambda t: (str(t / "nope"), []), ["SOURCE", "no such file or folder"]),
    ("duplicate ids", lambda t: (_duplicate(t), []), ["candidate ref appears twice"]),
    ("bad id", lambda t: (_folder_with(t, "two words", True), []), ["is not usable as a folder name"]),
    ("stray file", lambda t: (_folder_with(t, "notes.txt", False), []), ["notes.txt is not a folder, a .zip or a .tar.gz"]),
    ("empty source", lambda t: (_folder_with(t, ".hidden", False), []), ["no submissions in it"]),
    ("csv without header", lambda t: (_csv(t, "alice,sub\n"), []),
     ["line 1: the header must name the columns candidate and path"]),
    ("csv missing path", lambda t: (_csv(t, "candidate,path\nalice,gone\n"), []), ["line 2", "no such file or folder"]),
    ("csv short row", lambda t: (_csv(t, "candidate,path\nalice\n"), []), ["line 2: 1 column, expected 2"]),
    ("jobs 0", lambda t: (str(make_submissions(t / "j", names=("ref",))), ["--jobs", "0"]),
     ["--jobs 0: must be at least 1"]),
    ("regrade unknown", lambda t: (str(make_submissions(t / "g", names=("ref",))), ["--regrade", "zed"]),
     ["--regrade zed: no such candidate"]),
]


@pytest.mark.parametrize("case", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path: Path) -> None:
    _, make, needles = case
    source, extra = make(tmp_path)
    out = tmp_path / "round"
    refused(mlgrade("batch", "toy", source, "--out", str(out), "--backend", BACKEND, *extra), *needles)
    assert not out.exists()


def test_refused_round_folders(tmp_path: Path) -> None:
    source = make_submissions(tmp_path / "subs", names=("ref",))
    other = tmp_path / "other"
    other.mkdir()
    _other_round(other, "toy-latency")
    before = sorted(p.name for p in other.iterdir())
    refused(mlgrade("batch", "toy", str(source), "--out", str(other)), "holds a round of exercise toy-latency")
    assert sorted(p.name for p in other.iterdir()) == before

    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine\n")
    refused(mlgrade("batch", "toy", str(source), "--out", str(junk)), "not a round folder")
    refused(mlgrade("batch", "toy", str(source), "--out", str(source / "round")), "SOURCE")

    mine = tmp_path / "mine"
    mine.mkdir()
    _other_round(mine, "toy")
    with open(mine / ".lock", "w") as held:  # as a running batch holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        refused(mlgrade("batch", "toy", str(source), "--out", str(mine), "--backend", BACKEND),
                "another mlgrade batch", "is grading this round")
    refused(mlgrade("batch", "toy", str(source), "--out", str(mine), "--seed", "7"), "graded with --seed 0")


# -- docker -----------------------------------------------------------------------------------

def _docker():
    from sandbox.docker_backend import connect
    try:
        return connect()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI") == "true":
            pytest.fail(f"docker must be available in CI: {exc}")
        pytest.skip(f"docker unavailable: {exc}")


def test_missing_image_is_retried_with_backoff_then_an_infra_failure(tmp_path: Path) -> None:
    _docker()
    source = make_submissions(tmp_path / "subs", names=("ref",))
    out = tmp_path / "round"
    run = mlgrade("batch", "toy", str(source), "--out", str(out), "--backend", "docker", "--retries", "2",
                  "--retry-delay", "0.3", env={"MLGRADE_IMAGE": "mlgrade-test-missing:none"})
    assert run.returncode == 3, (run.stdout, run.stderr)
    assert "not graded for infrastructure reasons" in run.stderr
    state, reason, percent, gradings = states(out)["ref"]
    assert state == "infra_failure" and "mlgrade-test-missing:none" in reason and percent is None and gradings == 0
    tries = query(out, "SELECT started_at, ended_at, result FROM attempts ORDER BY id")
    assert [r[2] for r in tries] == ["infra_failure"] * 3  # the first try and --retries 2
    from datetime import datetime
    at = [(datetime.fromisoformat(s), datetime.fromisoformat(e)) for s, e, _ in tries]
    gaps = [(at[i + 1][0] - at[i][1]).total_seconds() for i in range(2)]
    slack = 0.002  # the ledger's times are cut to milliseconds
    assert gaps[0] >= 0.3 - slack and gaps[1] >= 0.6 - slack, gaps  # exponential backoff (lower bounds only)


def test_a_damaged_report_stops_the_pages_with_one_line(landed, tmp_path: Path) -> None:
    source, out, first = landed
    assert first.returncode == 0, first.stderr
    round_ = tmp_path / "round"
    shutil.copytree(out, round_)
    (round_ / "candidates" / "ref" / "report.json").write_text('{"schema": "mlgrade.report/1"')
    run = mlgrade("batch", "toy", str(source), "--out", str(round_), "--backend", BACKEND)
    assert run.returncode == 3, (run.stdout, run.stderr)
    assert run.stderr.strip().splitlines()[-1].startswith("mlgrade: infrastructure error: the gradings are "
                                                          "recorded, but the round's pages were not written")
    assert "Traceback" not in run.stderr


def test_an_exercise_that_cannot_be_graded_is_an_infrastructure_failure(tmp_path: Path) -> None:
    """A spec module that fails to import is the exercise's problem, not the candidate's: retried, then
    recorded as an infrastructure failure (never a candidate failure, which would be final)."""
    home = tmp_path / "home"
    shutil.copytree(TOY_HOME, home)
    (home / "exercises" / "toy-latency" / "tests" / "spec.py").write_text("raise RuntimeError('broken spec')\n")
    source = tmp_path / "subs"
    source.mkdir()
    shutil.copytree(TOY_HOME / "reference" / "toy-latency", source / "ref")
    out = tmp_path / "round"
    run = mlgrade("batch", "toy-latency", str(source), "--out", str(out), "--backend", BACKEND, "--retries", "1",
                  env={"MLGRADE_HOME": str(home)})
    assert run.returncode == 3, (run.stdout, run.stderr)
    state, reason, percent, gradings = states(out)["ref"]
    assert state == "infra_failure" and "broken spec" in reason and percent is None, reason
    assert [r[0] for r in query(out, "SELECT result FROM attempts")] == ["infra_failure"] * 2  # retried once


def test_a_resumed_round_keeps_its_backend_and_waits_for_its_image(landed, tmp_path: Path) -> None:
    """Resuming with another backend, or while the round's image cannot be inspected, would change every
    key and discard every report: refused, and the round is left byte for byte."""
    source, out, first = landed
    assert first.returncode == 0, first.stderr
    round_ = tmp_path / "round"
    shutil.copytree(out, round_)
    before = {p: p.read_bytes() for p in round_.rglob("*") if p.is_file()}
    other = "process" if BACKEND != "process" else "bwrap"
    switched = mlgrade("batch", "toy", str(source), "--out", str(round_), "--backend", other)
    assert switched.returncode == 2 and len(switched.stderr.strip().splitlines()) == 1, switched.stderr
    assert f"graded on the {BACKEND} backend" in switched.stderr
    _docker()
    docker_round = tmp_path / "docker-round"
    shutil.copytree(out, docker_round)
    with closing(sqlite3.connect(docker_round / "ledger.sqlite3")) as db, db:
        db.execute("UPDATE round SET value = 'docker' WHERE name = 'backend'")
    before_docker = {p: p.read_bytes() for p in docker_round.rglob("*") if p.is_file()}
    gone = mlgrade("batch", "toy", str(source), "--out", str(docker_round), "--backend", "docker",
                   env={"MLGRADE_IMAGE": "mlgrade-test-missing:none"})
    assert gone.returncode == 3 and "cannot be inspected" in gone.stderr, gone.stderr
    assert {p: p.read_bytes() for p in round_.rglob("*") if p.is_file()} == before
    assert {p: p.read_bytes() for p in docker_round.rglob("*") if p.is_file()} == before_docker


@pytest.mark.slow
def test_docker_kill_9_leaves_no_container_and_resumes(tmp_path: Path) -> None:
    client = _docker()
    from sandbox.docker_backend import LABEL, OWNER_PID, default_image
    try:
        client.api.inspect_image(default_image())
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI") == "true":
            pytest.fail(f"the sandbox image must be there in CI: {exc}")
        pytest.skip(f"no sandbox image: {exc}")
    source = make_submissions(tmp_path / "subs", names=("ref", "no-edge", "crash"))
    out = tmp_path / "round"
    args = ["toy", str(source), "--out", str(out), "--jobs", "2", "--backend", "docker"]

    def containers_of(pids) -> list[dict]:
        return [c for c in client.api.containers(all=True, filters={"label": f"{LABEL}=1"})
                if c["Labels"].get(OWNER_PID) in {str(p) for p in pids}]

    workers, _ = kill_mid_grading(out, args, ready=lambda _, w: containers_of(w))  # killed while a container runs
    wait_until("the killed batch's containers to go", lambda: not containers_of(workers))

    rerun = mlgrade("batch", *args)
    assert rerun.returncode == 0, rerun.stderr
    assert completed(out) == {"ref": 1, "no-edge": 1, "crash": 1}
    assert states(out)["ref"][:3] == ("graded", "", 100.0)
    assert not containers_of(workers)
