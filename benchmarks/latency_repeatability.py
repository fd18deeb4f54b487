"""Latency repeatability: grade the same submission N times in a row, with a CPU-bound process beside it.

    .venv/bin/python benchmarks/latency_repeatability.py [--submission reference] [--repeat 10]
        [--backend bwrap] [--no-hog] [--exercise inference-latency]

`--submission` is `reference`, `starter` or a calibration name of the exercise (or a path).
By default a busy-looping process runs beside every grading (the "another CPU-bound process"
of issue 7's target), started before the first grading and stopped after the last.

Prints a Markdown table for docs/benchmarks.md: per grading the score, the latency points,
and per bench case the candidate's p50 (this submission timed beside the baseline), the
reference's p50 in the clean run, their ratio (for the reference as candidate: the same code
timed twice), and the two speed-ups. Then a summary: percent range, latency points range in
steps, the largest same-code p50 disagreement, and the load average seen.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import time
from datetime import date
from pathlib import Path

from grader.errors import InfraError
from grader.exercises import load_exercise
from grader.pipeline import Grader


def _spin() -> None:
    while True:
        pass


def _submission(exercise, name: str) -> Path:
    if name == "reference":
        return exercise.reference
    if name == "starter":
        return exercise.starter
    if (exercise.root / "calibration" / name).is_dir():
        return exercise.calibration(name)
    return Path(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exercise", default="inference-latency")
    parser.add_argument("--submission", default="reference")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--backend", default="bwrap")
    parser.add_argument("--no-hog", action="store_true", help="no CPU-bound process beside the gradings")
    args = parser.parse_args()
    exercise = load_exercise(args.exercise)
    submission = _submission(exercise, args.submission)
    grader = Grader(args.backend)
    hog = None if args.no_hog else multiprocessing.Process(target=_spin, daemon=True)
    if hog:
        hog.start()
    rows, loads = [], []
    try:
        for index in range(args.repeat):
            started = time.monotonic()
            try:
                report = grader.grade(exercise, submission)
            except InfraError as exc:
                rows.append((index + 1, None, str(exc), time.monotonic() - started))
                continue
            loads.append(os.getloadavg()[0])
            rows.append((index + 1, report, None, time.monotonic() - started))
            print(f"grading {index + 1}/{args.repeat}: {report['score']['percent']}% "
                  f"({time.monotonic() - started:.0f} s)", flush=True)
    finally:
        if hog:
            hog.terminate()
    print(f"\n{args.exercise} / {args.submission}, backend {args.backend}, "
          f"{'a CPU-bound process beside it' if hog else 'no other load'}; {platform.node()}, "
          f"{os.cpu_count()} CPUs, {date.today()}\n")
    cases = [c["case"] for c in next((r["latency"][0]["cases"] for _, r, _, _ in rows
                                      if r and r.get("latency") and r["latency"][0]["cases"]), [])]
    head = "| # | score % | latency pts | " + " | ".join(f"{c}: p50 us / clean ref p50 us / speed-up / ref speed-up"
                                                          for c in cases) + " | s |"
    print(head)
    print("|" + "---|" * (4 + len(cases)))
    percents, points, worst = [], [], 0.0
    for index, report, error, seconds in rows:
        if report is None:
            print(f"| {index} | exit 3 | {error[:80]} |" + " |" * len(cases) + f" {seconds:.0f} |")
            continue
        latency = next(c for c in report["checks"] if c["kind"] == "latency")
        percents.append(report["score"]["percent"])
        points.append(latency["points"])
        cells = []
        by_case = {c["case"]: c for c in (report.get("latency") or [{}])[0].get("cases", [])}
        for name in cases:
            row = by_case.get(name)
            if not row:
                cells.append("-")
                continue
            ratio = row["candidate_p50_us"] / row["reference_p50_us"]
            worst = max(worst, abs(ratio - 1))
            cells.append(f"{row['candidate_p50_us']:.0f} / {row['reference_p50_us']:.0f} / {row['speedup']:.2f}x / "
                         f"{row['reference_speedup']:.2f}x")
        print(f"| {index} | {report['score']['percent']} | {latency['points']:g} / {latency['max_points']:g} | "
              + " | ".join(cells) + f" | {seconds:.0f} |")
    if percents:
        maximum = next(c for c in rows[0][1]["checks"] if c["kind"] == "latency")["max_points"] if rows[0][1] else 1
        print(f"\nscore {min(percents)}-{max(percents)}%; latency points {min(points):g}-{max(points):g} "
              f"({(max(points) - min(points)) / (maximum / 10):.1f} steps apart); largest p50 disagreement with "
              f"the clean reference run {100 * worst:.1f}%; load average {min(loads):.1f}-{max(loads):.1f}; "
              f"{sum(r is None for _, r, _, _ in rows)} gradings refused as too noisy (exit 3)")


if __name__ == "__main__":
    main()
