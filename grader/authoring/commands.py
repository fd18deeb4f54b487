"""The `mlgrade new` and `mlgrade calibrate` sub-commands (registered in grader/cli.py COMMAND_MODULES)."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from ..errors import BadInput
from ..outdir import shown
from .calibrate import CONFIG
from .templates import all_templates

BACKEND_CHOICES = ["auto", "docker", "bwrap", "process"]  # as grader/cli.py's

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _progress(message: str) -> None:
    err.print(f"… {message}", style="dim", markup=False, soft_wrap=True)


def _say(text: str) -> None:
    out.print(text, markup=False, emoji=False, soft_wrap=True)


def cmd_new(args: argparse.Namespace) -> int:
    if args.list:
        table = Table("template", "what it scaffolds")
        for template in all_templates():
            table.add_row(template.name, template.summary)
        out.print(table)
        return 0
    known = ", ".join(t.name for t in all_templates())
    if args.id is None:
        raise BadInput(f"name the new exercise: mlgrade new ID --from TEMPLATE (templates: {known})")
    if args.template is None:
        raise BadInput(f"name a template with --from (templates: {known})")
    from .scaffold import new_exercise
    made = new_exercise(args.id, args.template)
    _say(f"exercise {args.id} scaffolded from the {args.template} template: {shown(made.exercise)} and "
         f"{shown(made.reference)}")
    _say(f"next: edit the TODOs (exercise.toml, README.md), the starter, reference and tests; then "
         f"mlgrade validate {args.id} (docs/exercise-format.md walks through it)")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate, measured_text
    result = calibrate(args.exercise, args.name, args.folder, args.flaw, repeat=args.repeat, backend=args.backend,
                       progress=_progress)
    entry = result.entry
    low, high = entry.band
    _say(f"calibration {entry.name}: measured {measured_text(result.percents)} over {len(result.percents)} "
         f"grading{'s' if len(result.percents) > 1 else ''}; band [{low:g}, {high:g}]; "
         f"checks {', '.join(entry.checks)}")
    _say(f"written: {shown(result.folder)} ({', '.join(result.files)}) and its [[calibration]] entry in "
         f"{shown(result.folder.parent.parent / 'exercise.toml')}")
    validation = result.validation
    _say(validation.line())
    for problem in validation.problems[1:]:
        err.print(f"  {validation.exercise.id}: {problem}", markup=False)
    return 0 if validation.valid else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    new = sub.add_parser("new", help="scaffold a new exercise (and its reference) from a template")
    new.add_argument("id", nargs="?", help="the new exercise's id (lower-case letters, digits, '-')")
    new.add_argument("--from", dest="template", metavar="TEMPLATE", help="template to start from (see --list)")
    new.add_argument("--list", action="store_true", help="list the templates")
    new.set_defaults(func=cmd_new)

    cal = sub.add_parser("calibrate", help="turn a one-change copy of the reference into a calibration submission")
    cal.add_argument("exercise")
    cal.add_argument("name", help="the calibration's name (lower-case letters, digits, '-'), new to the exercise")
    cal.add_argument("--from", dest="folder", metavar="FOLDER", required=True,
                     help="a copy of the reference with one change (a folder, .zip or .tar.gz)")
    cal.add_argument("--flaw", required=True, help="the change, in one sentence")
    cal.add_argument("--repeat", type=int, default=CONFIG.repeat,
                     help=f"gradings of FOLDER; they must agree (default {CONFIG.repeat})")
    cal.add_argument("--backend", choices=BACKEND_CHOICES, default="auto")
    cal.set_defaults(func=cmd_calibrate)
