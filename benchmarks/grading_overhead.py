"""Grading overhead: bare pytest vs a grading on each backend, same submission, same tests.

    .venv/bin/python benchmarks/grading_overhead.py [--exercise data-loader] [--repeat 5]

Prints a Markdown table (median and min of --repeat runs, wall seconds) for docs/benchmarks.md:
- bare pytest: the exercise's public+hidden tests on the reference, no sandbox, no harness,
  with the harness's settings (the baseline for overheads) and with pytest's defaults;
- grade (warm): Grader.grade with the test list already collected (what each grading of a
  batch costs);
- grade (cold CLI): a whole `mlgrade grade` process, collection and interpreter start included.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grader.exercises import load_exercise
from grader.pipeline import Grader
from sandbox import available_backends


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bare_pytest(exercise, submission: Path, same_settings: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work, tests = Path(tmp, "work"), Path(tmp, "tests")
        shutil.copytree(exercise.starter, work)
        shutil.copytree(submission, work, dirs_exist_ok=True)
        shutil.copytree(exercise.tests, tests)
        env = dict(os.environ, PYTHONPATH=str(work), PYTHONDONTWRITEBYTECODE="1")
        if same_settings:  # what the harness sets: no plugin autoload, thread count = limits.cpus
            cpus = str(exercise.manifest.limits.cpus)
            env.update(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", OMP_NUM_THREADS=cpus, MKL_NUM_THREADS=cpus)
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "public", "hidden"],
                             cwd=tests, env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout[-2000:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exercise", default="data-loader")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    exercise = load_exercise(args.exercise)
    submission = exercise.reference
    rows: list[tuple[str, list[float]]] = []

    rows.append(("bare pytest, harness settings (no plugin autoload, threads = limits.cpus)",
                 [timed(lambda: bare_pytest(exercise, submission, True)) for _ in range(args.repeat)]))
    rows.append(("bare pytest, default settings",
                 [timed(lambda: bare_pytest(exercise, submission, False)) for _ in range(args.repeat)]))
    for name, reason in available_backends().items():
        if reason is not None:
            print(f"skipping {name}: {reason}", file=sys.stderr)
            continue
        grader = Grader(name)
        grader.collect(exercise)
        warm = [timed(lambda: grader.grade(exercise, submission)) for _ in range(args.repeat)]
        rows.append((f"grade, {name} backend (warm: tests already collected)", warm))
        cli = [sys.executable, "-m", "grader", "grade", exercise.id, str(submission), "--backend", name, "--json"]
        cold = [timed(lambda: subprocess.run(cli, check=True, capture_output=True)) for _ in range(args.repeat)]
        rows.append((f"grade, {name} backend (cold CLI: collection + interpreter start)", cold))

    base = statistics.median(rows[0][1])
    print(f"`{exercise.id}` reference, {args.repeat} runs each; {platform.node()} "
          f"({os.cpu_count()} CPUs), Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}\n")
    print("| what | median s | min s | overhead over bare pytest (median) |")
    print("| --- | --- | --- | --- |")
    for label, samples in rows:
        med = statistics.median(samples)
        print(f"| {label} | {med:.2f} | {min(samples):.2f} | {med - base:+.2f} s ({med / base:.2f}×) |")


if __name__ == "__main__":
    main()
