"""Grading overhead: bare pytest vs a grading on each backend, same submission, same tests.

    .venv/bin/python benchmarks/grading_overhead.py [--exercise data-loader] [--repeat 5]

Prints a Markdown table (median and min of --repeat runs, wall seconds) for docs/benchmarks.md:
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
from sandbox import Limits, available_backends, get_backend


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
        backend = get_backend(name)
        empty = [timed(lambda: backend.run(["true"], limits=Limits(wall_s=30))) for _ in range(max(args.repeat, 10))]
        rows.append((f"empty run (`true`), {name} backend", empty))

    base = statistics.median(rows[0][1])
    print(f"`{exercise.id}` reference, {args.repeat} runs each; {platform.node()} "
          f"({os.cpu_count()} CPUs), Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}\n")
    print("| what | median s | min s | overhead over bare pytest (median) |")
    print("| --- | --- | --- | --- |")
    for label, samples in rows:
        med = statistics.median(samples)
        if label.startswith("empty run"):
            print(f"| {label} | {med:.3f} | {min(samples):.3f} | (sandbox cost alone) |")
        else:
            print(f"| {label} | {med:.2f} | {min(samples):.2f} | {med - base:+.2f} s ({med / base:.2f}×) |")
    medians = {label: statistics.median(samples) for label, samples in rows}
    for kind in ("warm: tests already collected", "cold CLI: collection + interpreter start"):
        ref = medians.get(f"grade, bwrap backend ({kind})")
        other = medians.get(f"grade, docker backend ({kind})")
        if ref is not None and other is not None:
            print(f"\ndocker vs bwrap ({kind.split(':')[0]}): {other - ref:+.2f} s per grading ({other / ref:.2f}×)", end="")
    print()


if __name__ == "__main__":
    main()
