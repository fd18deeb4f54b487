"""Speed-up of `mlgrade batch --jobs 2` over `--jobs 1` on one exercise's reference and calibrations.

    .venv/bin/python benchmarks/batch_speedup.py [--exercise data-loader] [--backend bwrap] [--repeat 1] [--no-docs]

Each repeat grades the same submissions (the reference and every calibration, as folders) twice,
into fresh round folders: with --jobs 1, then with --jobs 2 (the order alternates between repeats
so that a change of machine load does not always hit the same one). Wall time is the whole
`mlgrade batch` command. Checks that both rounds graded every candidate once with the same scores
(parallel grading must not change a score), prints a Markdown section and appends it to
docs/benchmarks.md (unless --no-docs) with the machine and the date.
"""
from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from datetime import date
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from round_submissions import make_round  # noqa: E402

from grader.exercises import load_exercise  # noqa: E402

PROJECT = Path(__file__).resolve().parent.parent
DOCS = PROJECT / "docs" / "benchmarks.md"


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    mem = next(int(line.split()[1]) // 2**20 for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    bwrap = subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip() or "no bwrap"
    return (f"{len(os.sched_getaffinity(0))} cores ({model}), {mem} GiB, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {metadata.version('torch')}, {bwrap}")


def ledger(folder: Path) -> dict[str, tuple[str, float | None, int]]:
    with closing(sqlite3.connect(f"file:{folder / 'ledger.sqlite3'}?mode=ro", uri=True)) as db:
        return {c: (s, p, g) for c, s, p, g in db.execute("SELECT candidate, state, percent, gradings FROM submissions")}


def cpu_ticks() -> tuple[int, int]:
    """(all, idle) jiffies of the whole machine since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values), values[3] + values[4]


def run_batch(exercise: str, source: Path, out: Path, jobs: int, backend: str) -> tuple[float, float]:
    """(wall seconds, cores the whole machine kept busy on average meanwhile)."""
    start, (all0, idle0) = time.perf_counter(), cpu_ticks()
    run = subprocess.run([sys.executable, "-m", "grader", "batch", exercise, str(source), "--out", str(out),
                          "--jobs", str(jobs), "--backend", backend], capture_output=True, text=True, cwd=PROJECT)
    wall, (all1, idle1) = time.perf_counter() - start, cpu_ticks()
    busy = len(os.sched_getaffinity(0)) * (1 - (idle1 - idle0) / max(1, all1 - all0))
    if run.returncode != 0:
        raise SystemExit(f"--jobs {jobs} failed (exit {run.returncode}): {run.stderr[-2000:]}")
    if f"--jobs {jobs} lowered" in run.stderr:
        raise SystemExit(f"--jobs {jobs} was lowered on this machine: {run.stderr.splitlines()[0]}")
    return wall, busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exercise", default="data-loader")
    parser.add_argument("--backend", default="bwrap", choices=["bwrap", "docker", "process"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-docs", action="store_true", help="print only; do not append to docs/benchmarks.md")
    args = parser.parse_args()
    exercise = load_exercise(args.exercise)
    load = os.getloadavg()[0]
    times: dict[int, list[float]] = {1: [], 2: []}
    busy: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="mlgrade-bench-") as tmp:
        source = Path(tmp, "subs")
        source.mkdir()
        count = 1 + len(exercise.manifest.calibration)
        names = make_round(exercise, source, count)
        first: dict[str, float | None] | None = None
        for repeat in range(args.repeat):
            for jobs in ((1, 2) if repeat % 2 == 0 else (2, 1)):
                out = Path(tmp, f"round-{repeat}-jobs{jobs}")
                wall, cores = run_batch(exercise.id, source, out, jobs, args.backend)
                rows = ledger(out)
                bad = {c: r for c, r in rows.items() if r[0] != "graded" or r[2] != 1}
                if set(rows) != set(names) or bad:
                    raise SystemExit(f"--jobs {jobs}: not every candidate graded once: {bad}")
                percents = {c: r[1] for c, r in rows.items()}
                if first is not None and percents != first:
                    raise SystemExit(f"scores differ between rounds: {first} vs {percents}")
                first = percents
                times[jobs].append(wall)
                busy[jobs].append(cores)
                print(f"repeat {repeat + 1}: --jobs {jobs}: {wall:.1f} s, {cores:.2f} cores busy", flush=True)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    cores_here = len(os.sched_getaffinity(0))
    lines = [
        f"## `mlgrade batch` speed-up, {args.exercise}, {args.backend} ({date.today().isoformat()})", "",
        f"`.venv/bin/python benchmarks/batch_speedup.py --exercise {args.exercise} --backend {args.backend} "
        f"--repeat {args.repeat}` — {count} submissions (the reference and every calibration, as folders) "
        "graded into a fresh round folder with `--jobs 1` and with `--jobs 2`; wall seconds of the whole "
        "command (interpreter start, collection in each worker, the gradings, the ledger). Both rounds "
        "graded every candidate exactly once with the same scores.",
        f"Machine: {machine()}; load average {load:.2f} when the run started (the machine was shared).", "",
        "| --jobs | wall s (median) | runs | per grading s | cores busy (whole machine, per run) |",
        "| --- | --- | --- | --- | --- |",
        f"| 1 | {one:.1f} | {', '.join(f'{t:.1f}' for t in times[1])} | {one / count:.2f} | "
        f"{', '.join(f'{b:.2f}' for b in busy[1])} |",
        f"| 2 | {two:.1f} | {', '.join(f'{t:.1f}' for t in times[2])} | {two / count:.2f} | "
        f"{', '.join(f'{b:.2f}' for b in busy[2])} |", "",
        f"Speed-up of 2 jobs over 1: **{one / two:.2f}×** (goal: at least 1.7× on 2 cores). With one job the "
        f"whole machine (this batch and whatever else ran) had {statistics.median(busy[1]):.2f} of its "
        f"{cores_here} cores busy on average, with two {statistics.median(busy[2]):.2f}.", "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_docs:
        with open(DOCS, "a", encoding="utf-8") as handle:
            handle.write("\n" + text)
        print(f"appended to {DOCS.relative_to(PROJECT)}")


if __name__ == "__main__":
    main()
