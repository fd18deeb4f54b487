"""Grading overhead: bare pytest vs a grading on each backend, same submission, same tests.

    .venv/bin/python benchmarks/grading_overhead.py [--exercise data-loader] [--repeat 5]

Prints a Markdown table (median and min of --repeat runs, wall seconds) for docs/benchmarks.md,
timing the rows round-robin so that a change of machine load during the run hits them alike:
- bare pytest: the exercise's public+hidden tests on the reference, no sandbox, no harness,
  with the harness's settings (the baseline for overheads) and with pytest's defaults;
- grade (warm): Grader.grade with the test list already collected (what each grading of a
  batch costs);
- grade (cold CLI): a whole `mlgrade grade` process, collection and interpreter start included;
- empty run: one `Backend.run(["true"])` (the sandbox's own cost: for docker a container
  created, attached, started, waited for and removed).
Then, for each isolating backend, what it adds per grading over bwrap (warm and cold).
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
from sandbox import Limits, available_backends


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
    load = os.getloadavg()[0]
    usable = []
    for name, reason in available_backends().items():
        if reason is not None:
            print(f"skipping {name}: {reason}", file=sys.stderr)
        else:
            usable.append(name)
    same, default = ("bare pytest, harness settings (no plugin autoload, threads = limits.cpus)",
                     "bare pytest, default settings")
    warm, cold, empty = ("grade, {} backend (warm: tests already collected)",
                         "grade, {} backend (cold CLI: collection + interpreter start)", "empty run (`true`), {} backend")
    order = [same, default] + [label.format(name) for name in usable for label in (warm, cold, empty)]
    samples: dict[str, list[float]] = {label: [] for label in order}
    graders = {name: Grader(name) for name in usable}
    for grader in graders.values():
        grader.collect(exercise)
    # Round-robin: each round times every row once, so a change of machine load hits all rows alike.
    for _ in range(args.repeat):
        samples[same].append(timed(lambda: bare_pytest(exercise, submission, True)))
        samples[default].append(timed(lambda: bare_pytest(exercise, submission, False)))
        for name, grader in graders.items():
            samples[warm.format(name)].append(timed(lambda: grader.grade(exercise, submission)))
            cli = [sys.executable, "-m", "grader", "grade", exercise.id, str(submission), "--backend", name, "--json"]
            samples[cold.format(name)].append(timed(lambda: subprocess.run(cli, check=True, capture_output=True)))
            backend = grader.backend
            samples[empty.format(name)] += [timed(lambda: backend.run(["true"], limits=Limits(wall_s=30)))
                                            for _ in range(2)]
    rows = [(label, samples[label]) for label in order]

    base = statistics.median(rows[0][1])
    print(f"`{exercise.id}` reference, {args.repeat} runs each (empty runs: {2 * args.repeat}), round-robin; "
          f"load average before: {load:.2f}; {platform.node()} "
          f"({os.cpu_count()} CPUs), Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}\n")
    print("| what | median s | min s | overhead over bare pytest (median) |")
    print("| --- | --- | --- | --- |")
    for label, times in rows:
        med = statistics.median(times)
        if label.startswith("empty run"):
            print(f"| {label} | {med:.3f} | {min(times):.3f} | (sandbox cost alone) |")
        else:
            print(f"| {label} | {med:.2f} | {min(times):.2f} | {med - base:+.2f} s ({med / base:.2f}×) |")
    medians = {label: statistics.median(times) for label, times in rows}
    for kind in ("warm: tests already collected", "cold CLI: collection + interpreter start"):
        ref = medians.get(f"grade, bwrap backend ({kind})")
        other = medians.get(f"grade, docker backend ({kind})")
        if ref is not None and other is not None:
            print(f"\ndocker vs bwrap ({kind.split(':')[0]}): {other - ref:+.2f} s per grading ({other / ref:.2f}×)", end="")
    print()


if __name__ == "__main__":
    main()
