"""Bad input to every `mlgrade` command: exit 2, one line on stderr naming the problem, no
traceback, nothing written. `--out` is checked (and claimed) before any grading or writing.

Runs the CLI as a subprocess on the toy exercise (tests/fixtures/home).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import available_backends
from tests.conftest import PROJECT, TOY_HOME, TOY_SUBMISSIONS

BACKEND = "bwrap" if available_backends().get("bwrap") is None else "process"


def mlgrade(*args: str, cwd: Path | None = None, prefix: tuple[str, ...] = (),
            timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLGRADE_HOME=str(TOY_HOME))
    return subprocess.run([*prefix, sys.executable, "-m", "grader", *args], capture_output=True, text=True,
                          env=env, cwd=cwd or PROJECT, timeout=timeout, errors="surrogateescape")


def refused(run: subprocess.CompletedProcess, *needles: str) -> str:
    """The one line a refused command printed; asserts exit 2, one line, no traceback."""
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), run.stderr  # also: no grading started (no progress lines)
    assert "Traceback" not in run.stderr
    assert len(lines[0]) <= 260, lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert run.stdout == ""
    return lines[0]


def tree(root: Path) -> dict[str, bytes | str]:
    """Everything under root: relative path -> bytes (files), 'dir' or the link target."""
    found: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = path.read_bytes() if path.is_file() else "special"
    return found


@pytest.fixture
def sub(tmp_path: Path) -> Path:
    """A good submission (the toy reference) in a folder of its own."""
    path = tmp_path / "sub"
    shutil.copytree(TOY_HOME / "reference" / "toy", path)
    return path


# -- grade --out ---------------------------------------------------------------------------

def test_grade_out_root_writes_nothing_in_root(sub: Path) -> None:
    before = {p: os.path.lexists(p) for p in ("/report.json", "/report.md")}
    assert not any(before.values()), "a report.json or report.md lies in / already"
    refused(mlgrade("grade", "toy", str(sub), "--backend", BACKEND, "--out", "/"), "--out /:", "root")
    assert not os.path.lexists("/report.json") and not os.path.lexists("/report.md")


@pytest.mark.parametrize("where,problem", [
    ("SUB/report", "is inside the submission"),
    ("SUB/deeper/still", "is inside the submission"),
    ("SUB", "is the submission"),
    ("SUB/../sub/./report", "is inside the submission"),
    ("TMP", "contains the submission"),
    ("TMP/notes.txt/out", "is a file, not a folder"),
    ("TMP/notes.txt", "exists and is not a folder"),
    ("TMP/busy", "holds other files than report.html, report.json and report.md"),
    ("TMP/planted", "holds other files than report.html, report.json and report.md"),
    ("TMP/to-proc/x", "under /proc"),
    ("/proc/x", "under /proc"),
    ("/proc/self/x", "under /proc"),
    ("/sys/x", "under /sys"),
    ("/dev/x", "under /dev"),
    ("/dev/null", "under /dev"),
    ("", "empty path"),
])
def test_grade_bad_out_is_refused_before_grading(tmp_path: Path, sub: Path, where: str, problem: str) -> None:
    (tmp_path / "notes.txt").write_text("the user's notes\n")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("keep me\n")
    (tmp_path / "planted").mkdir()
    (tmp_path / "planted" / "report.json").symlink_to(tmp_path / "notes.txt")  # must never be written through
    (tmp_path / "to-proc").symlink_to("/proc/self")
    before = tree(tmp_path)
    out = where.replace("SUB", str(sub)).replace("TMP", str(tmp_path))
    line = refused(mlgrade("grade", "toy", str(sub), "--backend", BACKEND, "--out", out), problem)
    assert line.startswith("mlgrade: error: --out ")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("where,problem", [
    ("HOME/exercises/toy/report", "is inside the exercise folder"),
    ("HOME/exercises/toy", "is the exercise folder"),
    ("HOME/reference/toy/report", "is inside the exercise's reference folder"),
    ("HOME/exercises/new", "is inside mlgrade's exercises folder"),
    ("HOME/reference", "is mlgrade's reference folder"),
    ("HOME", "contains the exercise folder"),
    ("PROJECT/grader/report", "is inside mlgrade's code"),
    ("PROJECT/exercises/report", "is inside mlgrade's exercises folder"),
])
def test_grade_out_in_mlgrades_own_folders_is_refused(sub: Path, where: str, problem: str) -> None:
    out = Path(where.replace("HOME", str(TOY_HOME)).replace("PROJECT", str(PROJECT)))
    existed = out.exists()
    refused(mlgrade("grade", "toy", str(sub), "--backend", BACKEND, "--out", str(out)), problem)
    assert out.exists() == existed and not (out / "report.json").exists()


def test_out_path_with_control_characters_and_bad_bytes_is_escaped(tmp_path: Path, sub: Path) -> None:
    odd = os.fsencode(tmp_path) + b"/f\x1b[31m\xff"
    with open(odd, "wb") as handle:
        handle.write(b"a file\n")
    out = os.fsdecode(odd + b"/line\nbreak")
    line = refused(mlgrade("grade", "toy", str(sub), "--out", out), "is a file, not a folder")
    assert "\x1b" not in line and "\\x1b[31m\\xff" in line and "line\\nbreak" in line


def test_a_very_long_out_path_gives_a_short_line(tmp_path: Path, sub: Path) -> None:
    out = tmp_path / ("x" * 300) / ("y" * 300) / "z"
    line = refused(mlgrade("grade", "toy", str(sub), "--backend", BACKEND, "--out", str(out)), "File name too long")
    assert len(line) <= 220
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(os.geteuid() != 0 or not _unshare_works(),
                                  reason="needs root and unshare -m (private mount namespace)")


def _in_private_mounts(setup: str, listing: Path | None = None) -> tuple[str, ...]:
    """Run the command in a private mount namespace after `setup` (sh), so no mount outlives it;
    with listing, print what is left in that folder afterwards (on stdout, after a LEFT: line)."""
    if listing is None:
        return ("unshare", "-m", "sh", "-c", f"set -e; {setup}; exec \"$@\"", "sh")
    return ("unshare", "-m", "sh", "-c",
            f"set -e; {setup}; set +e; \"$@\"; rc=$?; echo LEFT:; ls -A '{listing}'; exit $rc", "sh")


@needs_mounts
@pytest.mark.parametrize("command", ["grade", "kit"])
@pytest.mark.parametrize("target", ["new/nested", "."])
def test_out_in_a_read_only_place_is_refused(tmp_path: Path, sub: Path, command: str, target: str) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "inside").mkdir()
    out = locked / "inside" / target
    args = ["grade", "toy", str(sub), "--backend", BACKEND] if command == "grade" else ["kit", "toy"]
    prefix = _in_private_mounts(f"mount --bind -o ro '{locked}' '{locked}'")
    refused(mlgrade(*args, "--out", str(out), prefix=prefix), "cannot write in ", "locked/inside (read-only")
    assert tree(locked) == {"inside": "dir"}


@needs_mounts
def test_report_that_cannot_be_written_after_grading_is_one_line_exit_3(tmp_path: Path, sub: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    out = full / "reports"
    # one page of tmpfs: the folder and the probe fit, report.json does not
    run = mlgrade("grade", "toy", str(sub), "--backend", BACKEND, "--out", str(out),
                  prefix=_in_private_mounts(f"mount -t tmpfs -o size=4k tmpfs '{full}'", listing=full))
    assert run.returncode == 3, run.stderr
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("mlgrade: infrastructure error: cannot write the reports to ") and "space" in last
    assert run.stdout == "LEFT:\n"  # no half-written reports, and the folder it made is gone


@needs_mounts
def test_kit_that_cannot_be_written_is_one_line_exit_3_and_leaves_nothing(tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    run = mlgrade("kit", "toy", "--out", str(full / "kit"),
                  prefix=_in_private_mounts(f"mount -t tmpfs -o size=4k tmpfs '{full}'", listing=full))
    assert run.returncode == 3, run.stderr
    assert run.stderr.startswith("mlgrade: infrastructure error: cannot write the kit to ")
    assert len(run.stderr.splitlines()) == 1 and "space" in run.stderr, run.stderr
    assert run.stdout == "LEFT:\n"


@pytest.mark.parametrize("submission,problem", [
    ("MISSING", "no such file or folder"),
    ("SUBMISSIONS/missing-file", "missing required file: calc.py"),
])
def test_out_created_for_a_refused_submission_is_removed(tmp_path: Path, submission: str, problem: str) -> None:
    path = submission.replace("MISSING", str(tmp_path / "nothing-here")).replace("SUBMISSIONS", str(TOY_SUBMISSIONS))
    run = mlgrade("grade", "toy", path, "--backend", BACKEND, "--out", str(tmp_path / "new" / "nested" / "out"))
    assert run.returncode == 2 and problem in run.stderr.splitlines()[-1], run.stderr
    assert "Traceback" not in run.stderr
    assert list(tmp_path.iterdir()) == []


# -- grade: other arguments ----------------------------------------------------------------

@pytest.mark.parametrize("args,problem", [
    (["grade", "nope", "SUB"], "unknown exercise 'nope'"),
    (["grade", "toy", "TMP/nothing-here", "--backend", "BACKEND"], "no such file or folder"),
    (["grade", "toy", "", "--backend", "BACKEND"], "submission '': empty path"),
    (["grade", "toy", "TMP/pipe", "--backend", "BACKEND"], "pipe: is a FIFO; a submission is a folder"),
    (["grade", "toy", "TMP/socket", "--backend", "BACKEND"], "socket: is a socket;"),
    (["grade", "toy", "/dev/null", "--backend", "BACKEND"], "/dev/null: is a character device;"),
    (["grade", "toy"], "required: submission"),
    (["grade", "toy", "SUB", "--seed", "x"], "invalid int value: 'x'"),
    (["grade", "toy", "SUB", "--device", "tpu"], "invalid choice: 'tpu'"),
    (["grade", "toy", "SUB", "--view", "everyone"], "invalid choice: 'everyone'"),
    (["grade", "toy", "SUB", "--backend", "chroot"], "invalid choice: 'chroot'"),
    (["grade", "toy", "SUB", "--out"], "expected one argument"),
])
def test_grade_bad_arguments(tmp_path: Path, sub: Path, args: list[str], problem: str) -> None:
    os.mkfifo(tmp_path / "pipe")
    import socket
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / "socket"))
        before = tree(tmp_path)
        args = [a.replace("SUB", str(sub)).replace("TMP", str(tmp_path)).replace("BACKEND", BACKEND) for a in args]
        refused(mlgrade(*args), problem)
        assert tree(tmp_path) == before


def test_a_fifo_named_like_an_archive_is_not_opened(tmp_path: Path) -> None:
    """Refused without reading it (opening a FIFO blocks until someone writes)."""
    os.mkfifo(tmp_path / "submission.zip")
    (tmp_path / "link.tar.gz").symlink_to(tmp_path / "submission.zip")
    run = mlgrade("grade", "toy", str(tmp_path / "submission.zip"), "--backend", BACKEND,
                  "--out", str(tmp_path / "out"), timeout=60)
    refused(run, "submission.zip: is a FIFO")
    refused(mlgrade("grade", "toy", str(tmp_path / "link.tar.gz"), "--backend", BACKEND, timeout=60),
            "link.tar.gz: is a FIFO")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.tar.gz", "submission.zip"]


# -- kit -----------------------------------------------------------------------------------

@pytest.mark.parametrize("args,problem", [
    (["kit", "nope", "--out", "TMP/kit"], "unknown exercise 'nope'"),
    (["kit", "toy", "--out", "/proc/x"], "under /proc"),
    (["kit", "toy", "--out", "/sys/x"], "under /sys"),
    (["kit", "toy", "--out", "/"], "root"),
    (["kit", "toy", "--out", "TMP/notes.txt"], "exists and is not a folder"),
    (["kit", "toy", "--out", "TMP/notes.txt/kit"], "is a file, not a folder"),
    (["kit", "toy", "--out", "TMP/busy"], "folder exists and is not empty"),
    (["kit", "toy", "--out", "TMP/earlier"], "folder exists and is not empty"),
    (["kit", "toy", "--out", "HOME/exercises/toy/kit"], "is inside the exercise folder"),
    (["kit", "toy", "--out", ""], "empty path"),
    (["kit", "toy"], "required: --out"),
])
def test_kit_bad_input(tmp_path: Path, args: list[str], problem: str) -> None:
    (tmp_path / "notes.txt").write_text("the user's notes\n")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("keep me\n")
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "report.json").write_text("{}\n")  # grade's files do not make a kit folder
    before = tree(tmp_path)
    args = [a.replace("TMP", str(tmp_path)).replace("HOME", str(TOY_HOME)) for a in args]
    refused(mlgrade(*args), problem)
    assert tree(tmp_path) == before
    assert not (TOY_HOME / "exercises" / "toy" / "kit").exists()


def test_kit_into_an_existing_empty_folder_and_never_beside_it(tmp_path: Path) -> None:
    (tmp_path / "kit").mkdir()
    (tmp_path / "kit.partial").mkdir()  # the user's, not ours: left alone
    (tmp_path / "kit.partial" / "mine.txt").write_text("mine\n")
    run = mlgrade("kit", "toy", "--out", str(tmp_path / "kit"))
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "kit" / "self_check.py").is_file() and (tmp_path / "kit" / "README.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kit", "kit.partial"]
    assert (tmp_path / "kit.partial" / "mine.txt").read_text() == "mine\n"


# -- validate, list, image, no command -----------------------------------------------------

@pytest.mark.parametrize("args,problem", [
    (["validate", "nope"], "unknown exercise 'nope'"),
    (["validate"], "name at least one exercise, or pass --all"),
    (["validate", "toy", "--repeat", "0"], "--repeat must be at least 1"),
    (["validate", "toy", "--repeat", "-3"], "--repeat must be at least 1"),
    (["validate", "toy", "--repeat", "x"], "invalid int value: 'x'"),
    (["validate", "toy", "--repeat", "1.5"], "invalid int value: '1.5'"),
    (["validate", "toy", "--backend", "chroot"], "invalid choice: 'chroot'"),
    (["demo", "--backend", "chroot"], "invalid choice: 'chroot'"),
    (["list", "extra"], "unrecognized arguments: extra"),
    (["list", "line\nbreak\x1b[2J"], "unrecognized arguments: line\\nbreak\\x1b[2J"),
    (["image"], "required: action"),
    (["image", "frob"], "invalid choice: 'frob'"),
    (["image", "build", "--bogus"], "unrecognized arguments: --bogus"),
    (["image", "check", "--base", "x"], "unrecognized arguments: --base x"),
    (["image", "build", "--wheelhouse", "TMP/nothing-here"], "--wheelhouse TMP/nothing-here: no such folder"),
    (["image", "build", "--wheelhouse", "TMP/notes.txt"], "--wheelhouse TMP/notes.txt: not a folder"),
    (["image", "build", "--base", ""], "--base '': not an image name"),
    (["image", "build", "--base", "  "], "not an image name"),
    (["image", "build", "--tag", ""], "--tag '': not an image name"),
    (["image", "check", "--tag", "a\nb"], "--tag 'a\\nb': not an image name"),
    ([], "required: command"),
    (["frob"], "invalid choice: 'frob'"),
])
def test_other_commands_bad_input(tmp_path: Path, args: list[str], problem: str) -> None:
    (tmp_path / "notes.txt").write_text("notes\n")
    before = tree(tmp_path)
    args = [a.replace("TMP", str(tmp_path)) for a in args]
    refused(mlgrade(*args), problem.replace("TMP", str(tmp_path)))
    assert tree(tmp_path) == before


# -- the good case: a new nested --out, then the same --out again ----------------------------

def test_grade_out_new_nested_folder_then_again(tmp_path: Path, sub: Path) -> None:
    out = tmp_path / "reports" / "round-1"
    first = mlgrade("grade", "toy", str(sub), "--backend", BACKEND, "--out", str(out), "--json")
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]
    assert json.loads((out / "report.json").read_text())["score"]["percent"] == 100.0
    assert oct((out / "report.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    (out / "report.md").write_text("stale\n")
    again = mlgrade("grade", "toy", str(sub), "--backend", BACKEND, "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]
    assert (out / "report.md").read_text().startswith("# Toy arithmetic — 100.0%")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports", "sub"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
