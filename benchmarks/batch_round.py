"""The issue's "done when" for batch grading: a round of 20 data-loader submissions graded with
`mlgrade batch --jobs 2`, killed with `kill -9` twice along the way and restarted, ends with 20 rows
in the CSV export, each candidate graded once (the ledger shows it), and no container left.

    .venv/bin/python benchmarks/batch_round.py [--engine local|ray|both] [--backend docker] [--count 20] [--keep DIR]

The submissions are the reference, every calibration and variants of them with the same behaviour
and other bytes (benchmarks/round_submissions.py: comments, blank lines, renamed locals). Per
engine: start the batch, kill -9 it once at least 3 candidates are final and a grading is running,
start it again, kill -9 it once at least 10 are final and a grading is running, then run it to the
end. Checks: 20 rows, all graded; one completed grading per candidate and the interrupted attempts
in the ledger; the CSV export (`mlgrade export DIR --format csv`, or the ledger where that command
is missing) has 20 rows; every sandbox container seen during the round is gone and no process of
the killed batches is left. Prints a verdict (exit 0 when every check passes).
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from importlib import util
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from round_submissions import make_round  # noqa: E402

from grader.exercises import load_exercise  # noqa: E402
from sandbox.docker_backend import OWNER_PID  # noqa: E402

PROJECT = Path(__file__).resolve().parent.parent
GONE_DEADLINE_S = 180.0
KILL_AT = (3, 10)  # final rows before the first and the second kill


def query(folder: Path, sql: str) -> list[tuple]:
    try:
        with closing(sqlite3.connect(f"file:{folder / 'ledger.sqlite3'}?mode=ro", uri=True, timeout=30)) as db:
            return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not made yet
        return []


def final_and_running(folder: Path) -> tuple[int, int]:
    rows = query(folder, "SELECT state FROM submissions")
    return (sum(s in ("graded", "candidate_failure", "infra_failure") for s, in rows),
            sum(s == "running" for s, in rows))


def descendants(root: int) -> dict[int, str]:
    """pid -> start time of every live process under root (from /proc)."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        parents.setdefault(int(fields[1]), []).append(int(entry))
        starts[int(entry)] = fields[19]
    found, todo = {}, [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def alive(processes: dict[int, str]) -> list[int]:
    left = []
    for pid, start in processes.items():
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        if fields[0] != "Z" and fields[19] == start:
            left.append(pid)
    return left


class ContainerWatch:
    """Every mlgrade sandbox container that exists while the round runs (polled from the engine)."""

    def __init__(self) -> None:
        from sandbox.docker_backend import LABEL, connect
        self.client, self.label = connect(), LABEL
        self.owners: dict[str, str] = {}  # container id -> owner pid label
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.25):
            for c in self.client.api.containers(all=True, filters={"label": f"{self.label}=1"}):
                self.owners.setdefault(c["Id"], c["Labels"].get(OWNER_PID, ""))

    def __enter__(self) -> "ContainerWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def owned_by(self, processes: dict[int, str]) -> set[str]:
        """The containers seen whose owner (the grader process in their labels) ran under the batches."""
        pids = {str(p) for p in processes}
        return {cid for cid, owner in self.owners.items() if owner in pids}

    def left(self, ids: set[str]) -> list[str]:
        now = {c["Id"] for c in self.client.api.containers(all=True, filters={"label": f"{self.label}=1"})}
        return sorted(ids & now)


def batch_command(engine: str, backend: str, source: Path, out: Path, jobs: int) -> list[str]:
    return [sys.executable, "-m", "grader", "batch", "data-loader", str(source), "--out", str(out),
            "--jobs", str(jobs), "--engine", engine, "--backend", backend]


def run_batch(command: list[str], out: Path, log, kill_at: int | None = None) -> tuple[int, dict[int, str]]:
    """Run the batch, noting every process under it; with kill_at, kill -9 it once that many rows
    are final and one is running. Returns (exit status, processes seen)."""
    batch = subprocess.Popen(command, stdout=log, stderr=log, cwd=PROJECT)
    seen: dict[int, str] = {}
    try:
        while batch.poll() is None:
            seen.update(descendants(batch.pid))
            done, running = final_and_running(out)
            if kill_at is not None and done >= kill_at and running:
                batch.send_signal(signal.SIGKILL)
                print(f"  killed -9 with {done} final and {running} running", flush=True)
                break
            time.sleep(0.1)
        else:
            if kill_at is not None:
                raise SystemExit(f"the batch ended (exit {batch.returncode}) before the kill point")
    finally:
        if batch.poll() is None:
            batch.send_signal(signal.SIGKILL)
        batch.wait()
    return batch.returncode, seen


def csv_rows(out: Path) -> tuple[int, str]:
    target = out / "exports" / "round.csv"
    run = subprocess.run([sys.executable, "-m", "grader", "export", str(out), "--format", "csv", "--out", str(target)],
                         capture_output=True, text=True, cwd=PROJECT)
    if run.returncode != 0 and "invalid choice: 'export'" in run.stderr:
        return len(query(out, "SELECT candidate FROM submissions")), "ledger (no mlgrade export here)"
    if run.returncode != 0:
        raise SystemExit(f"mlgrade export failed: {run.stderr.strip()}")
    with open(target, newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.DictReader(handle)), "mlgrade export --format csv"


def one_engine(engine: str, backend: str, source: Path, out: Path, count: int, jobs: int) -> list[tuple[str, bool, str]]:
    command = batch_command(engine, backend, source, out, jobs)
    watch = ContainerWatch() if backend == "docker" else None
    checks: list[tuple[str, bool, str]] = []
    start = time.monotonic()
    with open(out.parent / f"{out.name}.log", "w") as log, (watch or _Nothing()):
        processes: dict[int, str] = {}
        for at in KILL_AT:
            processes.update(run_batch(command, out, log, kill_at=at)[1])
        killed = dict(processes)
        code, seen = run_batch(command, out, log)
        processes.update(seen)
    wall = time.monotonic() - start
    print(f"  ran to the end: exit {code}; {wall:.0f} s in all", flush=True)
    deadline = time.monotonic() + GONE_DEADLINE_S
    while alive(killed) and time.monotonic() < deadline:
        time.sleep(0.2)
    rows = query(out, "SELECT candidate, state, gradings FROM submissions")
    graded_once = dict(query(out, "SELECT candidate, COUNT(*) FROM attempts WHERE result IN "
                                  "('graded', 'candidate_failure') GROUP BY candidate"))
    interrupted = query(out, "SELECT COUNT(*) FROM attempts WHERE result = 'interrupted'")[0][0]
    states = sorted({s for _, s, _ in rows})
    checks.append(("exit 0 after the restarts", code == 0, f"exit {code}"))
    checks.append((f"{count} rows in the ledger, all graded", len(rows) == count and states == ["graded"],
                   f"{len(rows)} rows, states {states}"))
    checks.append(("each candidate graded once (ledger attempts)",
                   len(graded_once) == count and set(graded_once.values()) == {1}
                   and all(g == 1 for _, _, g in rows),
                   f"completed gradings per candidate: {sorted(set(graded_once.values()))}; "
                   f"{interrupted} interrupted attempts"))
    checks.append(("the kills interrupted gradings", interrupted >= len(KILL_AT), f"{interrupted} interrupted"))
    exported, how = csv_rows(out)
    checks.append((f"{count} rows in the CSV", exported == count, f"{exported} rows ({how})"))
    left = alive(killed)
    checks.append(("no process of the killed batches left", not left, f"left: {left}" if left else
                   f"{len(killed)} processes seen under them, all gone"))
    if watch is not None:
        ours = watch.owned_by(processes)
        left_over = watch.left(ours)
        checks.append(("no sandbox container left", not left_over,
                       f"{len(ours)} containers of this round seen, {len(left_over)} left"))
    return checks


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["local", "ray", "both"], default="both")
    parser.add_argument("--backend", choices=["docker", "bwrap"], default="docker")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="folder to keep the submissions and round folders in")
    args = parser.parse_args()
    engines = ["local", "ray"] if args.engine == "both" else [args.engine]
    if "ray" in engines and (util.find_spec("ray") is None or util.find_spec("grader.batch.engine_ray") is None):
        print("--engine ray: not available here (ray or grader/batch/engine_ray.py missing); local only")
        engines.remove("ray")
    exercise = load_exercise("data-loader")
    work = Path(tempfile.mkdtemp(prefix="mlgrade-round-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    source = work / "subs"
    if source.exists():
        shutil.rmtree(source)
    source.mkdir()
    names = make_round(exercise, source, args.count)
    print(f"{len(names)} submissions in {source}: {', '.join(names)}", flush=True)
    ok = True
    for engine in engines:
        out = work / f"round-{engine}"
        if out.exists():
            shutil.rmtree(out)
        print(f"engine {engine}, backend {args.backend}, --jobs {args.jobs}: round folder {out}", flush=True)
        for name, passed, detail in one_engine(engine, args.backend, source, out, len(names), args.jobs):
            print(f"  {'PASS' if passed else 'FAIL'}  {name}: {detail}")
            ok &= passed
    print(f"verdict: {'PASS' if ok else 'FAIL'} ({', '.join(engines)})")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
