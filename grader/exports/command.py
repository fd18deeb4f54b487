"""The `mlgrade export DIR --format csv|jsonl|gradescope|junit` sub-command."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

FORMATS = ("csv", "jsonl", "gradescope", "junit")


@dataclass(frozen=True)
class Destination:
    """Where a format goes under DIR/exports/ by default, whether that is a file or a folder, and which
    views it may show (the first is its default)."""
    default: str           # under DIR/exports/; {view} is replaced by "" or ".candidate"
    folder: bool
    views: tuple[str, ...]


DESTINATIONS = {
    "csv": Destination("scores{view}.csv", folder=False, views=("grader", "candidate")),
    "jsonl": Destination("reports{view}.jsonl", folder=False, views=("grader", "candidate")),
    "gradescope": Destination("gradescope", folder=True, views=("candidate",)),
    "junit": Destination("junit", folder=True, views=("grader",)),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="write a graded round (mlgrade batch --out DIR) as CSV, JSON Lines, "
                                           "Gradescope results.json or JUnit XML")
    export.add_argument("round", metavar="DIR", help="the round folder that mlgrade batch filled")
    export.add_argument("--format", required=True, choices=FORMATS)
    export.add_argument("--out", help="file (csv, jsonl) or folder (gradescope, junit) to write; "
                                      "default DIR/exports/scores.csv, reports.jsonl, gradescope/, junit/")
    export.add_argument("--view", choices=["grader", "candidate"],
                        help="csv and jsonl: whose report (default grader); gradescope is always the "
                             "candidate view, junit the grader view")
    export.set_defaults(func=cmd_export)


def _owned(fmt: str):
    """What an existing destination folder may hold: an earlier export of fmt, nothing else."""
    def foreign(folder: Path) -> str | None:
        from ..outdir import shown
        for entry in sorted(folder.iterdir()):
            if fmt == "junit":
                ours = entry.suffix == ".xml" and entry.is_file() and not entry.is_symlink()
            else:
                ours = (entry.is_dir() and not entry.is_symlink()
                        and [p.name for p in entry.iterdir()] == ["results.json"]
                        and (entry / "results.json").is_file() and not (entry / "results.json").is_symlink())
            if not ours:
                return shown(entry.name, 40)
        return None
    return foreign


def cmd_export(args: argparse.Namespace) -> int:
    from ..batch.layout import EXPORTS, read_round
    from ..errors import BadInput
    from ..outdir import shown
    from . import writing
    from .rows import load_rows

    fmt, where = args.format, DESTINATIONS[args.format]
    view = args.view or where.views[0]
    if view not in where.views:
        raise BadInput(f"--view {view}: the {fmt} export is always the {where.views[0]} view")
    folder = Path(args.round)
    round_ = read_round(folder)
    default = folder / EXPORTS / where.default.format(view="" if view == "grader" else ".candidate")
    path = Path(args.out) if args.out is not None else default
    label = f"--out {shown(args.out)}" if args.out is not None else f"the export {'folder' if where.folder else 'file'} {shown(path)}"
    suffix = "" if where.folder else "." + fmt
    dest = writing.check_destination(path, label, round_folder=folder, owned=_owned(fmt) if where.folder else None,
                                     suffix=suffix)
    grader_rows = load_rows(round_, "grader") if view == "candidate" else None  # read once: scrubbing, gradescope
    rows = load_rows(round_, view, grader_rows)
    left_out = []
    if fmt == "csv":
        from . import csv_table
        writing.write_file(dest, csv_table.render(rows))
    elif fmt == "jsonl":
        from . import jsonl
        writing.write_file(dest, jsonl.render(rows, view))
    elif fmt == "gradescope":
        from . import gradescope
        assert grader_rows is not None  # gradescope is the candidate view
        files, left_out = gradescope.render(rows, grader_rows)
        writing.write_folder(dest, files)
    else:
        from . import junit
        files, left_out = junit.render(rows)
        writing.write_folder(dest, files)
    written = len(rows) - len(left_out)
    line = f"{fmt} ({view} view): {written} of {len(rows)} candidates written to {shown(path)}"
    if left_out:
        line += "; left out (not graded): " + ", ".join(f"{r.candidate} ({r.entry.state})" for r in left_out)
    sys.stdout.write(line + "\n")
    return 0
