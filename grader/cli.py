"""The `mlgrade` command line. Exit codes: 0 done, 1 validation failed, 2 bad input, 3 infrastructure."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import signal
import stat
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from rich.console import Console
from rich.table import Table

from .errors import BadInput, InfraError
from .exercises import PROJECT_ROOT, Exercise, all_exercise_ids, home, load_exercise
from .outdir import Protected, claim_out, one_line, shown, write_files

BACKEND_CHOICES = ["auto", "docker", "bwrap", "process"]
# Sub-commands defined in their own modules: each has add_parser(sub), which adds its parser and sets
# `func`. Keep their top-level imports light: `mlgrade list` imports them too.
COMMAND_MODULES: tuple[str, ...] = (
    "grader.batch.command",
    "grader.exports.command",
    "grader.authoring.commands",
)
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage too)
        sys.stderr.write(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")
        sys.exit(2)


def _progress(message: str) -> None:
    err.print(f"… {message}", style="dim", markup=False, soft_wrap=True)


def _grader(backend: str):
    from .pipeline import Grader  # imported late: `mlgrade list` stays instant
    return Grader(backend, progress=_progress)


def _exercises(names: Sequence[str], every: bool) -> list[Exercise]:
    if every:
        names = all_exercise_ids()
    if not names:
        raise BadInput("name at least one exercise, or pass --all")
    return [load_exercise(name) for name in names]


def cmd_list(args: argparse.Namespace) -> int:
    table = Table("id", "title", "device", "level", "time")
    for name in all_exercise_ids():
        ex = load_exercise(name)
        table.add_row(ex.id, ex.manifest.title, ex.manifest.device, ex.manifest.level, f"{ex.manifest.time_budget_min} min")
    out.print(table)
    return 0


SELF_CHECK = '''"""Self-check: run the public tests against your code (python self_check.py)."""
import sys

import pytest

sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "tests/public"]))
'''


def _protected(exercise: Exercise, submission: str | None = None) -> list[Protected]:
    """What --out must stay out of: the submission, the exercise and mlgrade's own folders."""
    guards = [Protected(Path(submission), "the submission")] if submission is not None else []
    guards += [Protected(exercise.root, "the exercise folder"),
               Protected(exercise.reference, "the exercise's reference folder")]
    for root in dict.fromkeys([home(), PROJECT_ROOT]):
        guards += [Protected(root / "exercises", "mlgrade's exercises folder"),
                   Protected(root / "reference", "mlgrade's reference folder")]
    guards += [Protected(PROJECT_ROOT / "grader", "mlgrade's code"),
               Protected(PROJECT_ROOT / "sandbox", "mlgrade's code")]
    return guards


def _empty_folder(folder: Path) -> None:
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _write_kit(exercise: Exercise, dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(exercise.starter, dest, ignore=ignore, dirs_exist_ok=True)
    shutil.copy2(exercise.brief, dest / "README.md")
    if (exercise.tests / "public").is_dir():
        shutil.copytree(exercise.tests / "public", dest / "tests" / "public", ignore=ignore)
    shared = [exercise.tests / "conftest.py"]  # fixtures shared by public and hidden tests
    if exercise.manifest.spec:  # the spec the public tests compare against
        shared.append(exercise.root / exercise.manifest.spec)
    for path in shared:
        if path.is_file():
            target = dest / path.relative_to(exercise.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    (dest / "self_check.py").write_text(SELF_CHECK)


def _why(exc: OSError) -> str:
    """The reason in an OSError, also in the list of (source, target, reason) a copytree collects."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        reason = str(exc.args[0][0][-1])
        return reason.split(": ", 1)[0].split("] ", 1)[-1]  # "[Errno 28] No space left on device: 'a' -> 'b'"
    return exc.strerror or str(exc)


def cmd_kit(args: argparse.Namespace) -> int:
    exercise = load_exercise(args.exercise)
    with claim_out(args.out, protected=_protected(exercise)) as claimed:  # a new or empty folder
        try:
            _write_kit(exercise, claimed.path)
        except BaseException as exc:
            _empty_folder(claimed.path)  # it was empty before: leave nothing half-written
            if isinstance(exc, OSError):
                raise InfraError(f"cannot write the kit to {shown(claimed.path)}: {_why(exc)}") from None
            raise
    dest = shown(args.out)
    out.print(f"kit for {exercise.id} written to {dest}: start with README.md; self-check: "
              f"cd {dest} && python self_check.py", markup=False, emoji=False, soft_wrap=True)
    return 0


REPORT_FILES = ("report.json", "report.md", "report.html")
SPECIAL_FILES = [(stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                 (stat.S_ISBLK, "a block device")]


def _check_submission_kind(path: str) -> None:
    """Refuse a FIFO, socket or device before anything opens it (opening a FIFO blocks); looks
    with stat only. A missing path and everything about the content is left to intake."""
    if path == "":
        raise BadInput("submission '': empty path")
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return  # intake says "no such file or folder"
    except OSError as exc:
        raise BadInput(f"{shown(path)}: cannot examine the submission: {exc.strerror or exc}") from None
    for test, kind in SPECIAL_FILES:
        if test(mode):
            raise BadInput(f"{shown(path)}: is {kind}; a submission is a folder, a .zip or a .tar.gz")


def cmd_grade(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from .html import render_submission
    from .report import candidate_view, print_table, to_markdown, validate_report
    exercise = load_exercise(args.exercise)
    _check_submission_kind(args.submission)
    # --out is checked, created and proved writable before the grading; refused, it leaves nothing
    claim = (claim_out(args.out, allowed=REPORT_FILES, protected=_protected(exercise, args.submission))
             if args.out is not None else nullcontext())
    with claim as claimed:
        report = _grader(args.backend).grade(exercise, Path(args.submission), device=args.device, seed=args.seed)
        if args.view == "candidate":
            from .scrub import HiddenText
            report = candidate_view(report, HiddenText.from_exercise(exercise))
            validate_report(report)
        if claimed is not None:
            write_files(claimed, {"report.json": json.dumps(report, indent=2) + "\n",
                                  "report.md": to_markdown(report), "report.html": render_submission(report)})
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        print_table(report, out)
        if args.out:
            out.print(f"reports written to {shown(args.out)}/report.json, report.md and report.html", markup=False,
                      emoji=False, soft_wrap=True)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .validate import validate_exercise
    if args.repeat < 1:
        raise BadInput("--repeat must be at least 1")
    exercises = _exercises(args.exercises, args.all)
    grader = _grader(args.backend)
    ok = True
    for exercise in exercises:
        result = validate_exercise(grader, exercise, repeat=args.repeat)
        out.print(result.line(), markup=False, soft_wrap=True)
        for problem in result.problems[1:]:
            err.print(f"  {exercise.id}: {problem}", markup=False)
        ok &= result.valid
    return 0 if ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    grader = _grader(args.backend)
    table = Table("exercise", "submission", "score", "band", "ok", title=f"mlgrade demo ({grader.backend.name} backend)")
    ok = True
    for name in all_exercise_ids():
        exercise = load_exercise(name)
        runs = [("reference", exercise.reference, (100.0, 100.0)), ("starter", exercise.starter, (0.0, 10.0))]
        runs += [(c.name, exercise.calibration(c.name), c.band) for c in exercise.manifest.calibration]
        for label, path, (low, high) in runs:
            pct = grader.grade(exercise, path)["score"]["percent"]
            inside = low <= pct <= high
            ok &= inside
            table.add_row(exercise.id, label, f"{pct:.1f}%", f"{low:g}–{high:g}%", "✓" if inside else "[red]✗[/]")
    out.print(table)
    return 0 if ok else 1


def cmd_image(args: argparse.Namespace) -> int:
    from sandbox import SandboxError
    from sandbox import image
    for option in ("base", "tag"):
        value = getattr(args, option, None)
        if value is not None and (not value.strip() or not value.isprintable()):
            raise BadInput(f"--{option} {shown(value)}: not an image name")
    wheelhouse = getattr(args, "wheelhouse", None)
    if wheelhouse is not None:
        if not os.path.isdir(wheelhouse):
            problem = "no such folder" if not os.path.lexists(wheelhouse) else "not a folder"
            raise BadInput(f"--wheelhouse {shown(wheelhouse)}: {problem}")
        if not os.access(wheelhouse, os.R_OK | os.X_OK):
            raise BadInput(f"--wheelhouse {shown(wheelhouse)}: cannot read the folder")
    try:
        if args.action == "build":
            wheelhouse = Path(args.wheelhouse) if args.wheelhouse else None
            image_id = image.build(gpu=args.gpu, base=args.base, wheelhouse=wheelhouse, tag=args.tag,
                                   log=_progress)
            out.print(f"{args.tag or image.default_image(args.gpu)} built: {image_id}", markup=False, emoji=False,
                      soft_wrap=True)
            return 0
        report = image.check(gpu=args.gpu, image=args.tag)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    except SandboxError as exc:
        raise InfraError(str(exc)) from None
    if not report.present:
        raise InfraError(f"sandbox image {report.image} is missing; {report.problem}")
    for line in report.lines():
        out.print(line, markup=False, emoji=False, soft_wrap=True)
    if report.problem:
        raise InfraError(f"sandbox image {report.image} is not usable: {report.problem}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mlgrade", description="Grade ML-engineering take-home submissions in a sandbox.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="list exercises").set_defaults(func=cmd_list)

    kit = sub.add_parser("kit", help="write the candidate's handout for an exercise")
    kit.add_argument("exercise")
    kit.add_argument("--out", required=True, help="folder to create")
    kit.set_defaults(func=cmd_kit)

    grade = sub.add_parser("grade", help="grade one submission (folder, .zip or .tar.gz)")
    grade.add_argument("exercise")
    grade.add_argument("submission")
    grade.add_argument("--backend", choices=BACKEND_CHOICES, default="auto")
    grade.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    grade.add_argument("--out", help="folder for report.json, report.md and report.html, in the --view asked for "
                       "(nothing is written without it)")
    grade.add_argument("--view", choices=["grader", "candidate"], default="grader")
    grade.add_argument("--json", action="store_true", help="print the report JSON on stdout")
    grade.add_argument("--seed", type=int, default=0)
    grade.set_defaults(func=cmd_grade)

    validate = sub.add_parser("validate", help="check exercises against their reference, starter and calibration")
    validate.add_argument("exercises", nargs="*")
    validate.add_argument("--all", action="store_true")
    validate.add_argument("--backend", choices=BACKEND_CHOICES, default="auto")
    validate.add_argument("--repeat", type=int, default=1)
    validate.set_defaults(func=cmd_validate)

    demo = sub.add_parser("demo", help="grade every bundled reference, starter and calibration submission")
    demo.add_argument("--backend", choices=BACKEND_CHOICES, default="auto")
    demo.set_defaults(func=cmd_demo)

    img = sub.add_parser("image", help="build or check the Docker sandbox image")
    img_sub = img.add_subparsers(dest="action", required=True, parser_class=_Parser)
    build = img_sub.add_parser("build", help="build the sandbox image (the pinned lock on a Python 3.11 base)")
    build.add_argument("--gpu", action="store_true", help="the CUDA image (Dockerfile.gpu) instead of the CPU one")
    build.add_argument("--base", help="base image (default python:3.11-slim; --gpu: a PyTorch CUDA runtime image)")
    build.add_argument("--wheelhouse", help="folder of wheels: install from it only, with no network")
    build.add_argument("--tag", help="image name (default mlgrade-sandbox:cpu or :gpu, or $MLGRADE_IMAGE)")
    build.set_defaults(func=cmd_image)
    check = img_sub.add_parser("check", help="is the image there, which digest, which torch and triton inside")
    check.add_argument("--gpu", action="store_true")
    check.add_argument("--tag", help="image name (default as for build)")
    check.set_defaults(func=cmd_image)

    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def _terminate(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt  # same clean-up path as Ctrl-C: temporary folders and sandboxes go away


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except BadInput as exc:  # one line whatever the message holds (paths are the user's or the candidate's)
        sys.stderr.write(f"mlgrade: error: {one_line(str(exc))}\n")
        return 2
    except InfraError as exc:
        sys.stderr.write(f"mlgrade: infrastructure error: {one_line(str(exc))}\n")
        return 3
    except OSError as exc:  # a failure no command foresaw: still one line, never a traceback
        where = f" ({shown(exc.filename)})" if isinstance(exc.filename, str) else ""
        sys.stderr.write(f"mlgrade: infrastructure error: {one_line(exc.strerror or str(exc))}{where}\n")
        return 3
    except KeyboardInterrupt:
        err.print("mlgrade: interrupted", markup=False)
        return 130
