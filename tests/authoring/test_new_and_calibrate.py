"""`mlgrade new` and `mlgrade calibrate` on bad input: exit 2, one line naming the problem, nothing
written. Refusals that need a grading (a change that costs nothing, one no hidden test catches) grade
for real on bwrap (the process backend where bwrap cannot run outside CI), then leave the exercise
byte for byte as it was. Also: the appended entry parses back to what was meant, whatever the flaw says.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from grader.authoring.calibrate import band_for, entry_text
from grader.manifest import Calibration
from sandbox import available_backends

BACKEND = "bwrap" if available_backends().get("bwrap") is None or os.environ.get("CI") == "true" else "process"
FLAW = "An empty input scores 0.0 instead of raising ValueError."


def mlgrade(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, MLGRADE_HOME=str(home)), cwd=cwd or home,
                          stdin=subprocess.DEVNULL)


def refused(run: subprocess.CompletedProcess, *needles: str) -> str:
    """A refusal before any grading: exit 2 and exactly one line on stderr, naming the problem."""
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlgrade: error: "), run.stderr
    assert run.stdout == "" and "Traceback" not in run.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def tree(root: Path) -> dict[str, bytes | str]:
    """Everything under root: relative path -> bytes (files) or 'dir'."""
    return {p.relative_to(root).as_posix(): "dir" if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def refused_after_grading(run: subprocess.CompletedProcess, *needles: str) -> str:
    """A refusal that came after gradings: exit 2, progress lines, then one error line; no traceback."""
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and run.stdout == ""
    lines = run.stderr.splitlines()
    assert all(line.startswith("…") for line in lines[:-1]), run.stderr
    for needle in needles:
        assert needle in lines[-1], lines[-1]
    return lines[-1]


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("scaffolded")
    made = mlgrade(home, "new", "acc", "--from", "pytest")
    assert made.returncode == 0, made.stderr
    return home


@pytest.fixture
def home(scaffolded: Path, tmp_path: Path) -> Path:
    """A home holding the freshly scaffolded exercise acc (a copy per test: some tests write)."""
    dest = tmp_path / "home"
    shutil.copytree(scaffolded, dest)
    return dest


def one_change(home: Path, name: str, old: str, new: str) -> Path:
    """A copy of acc's reference with one change, beside exercises/ and reference/."""
    folder = home / name
    shutil.copytree(home / "reference" / "acc", folder)
    source = (folder / "metrics.py").read_text()
    assert old in source
    (folder / "metrics.py").write_text(source.replace(old, new))
    return folder


# -- mlgrade new ----------------------------------------------------------------------------------

def test_unknown_template_lists_the_templates(tmp_path: Path) -> None:
    line = refused(mlgrade(tmp_path, "new", "acc", "--from", "notebook"), "unknown template 'notebook'", "pytest")
    assert "templates:" in line
    assert list(tmp_path.iterdir()) == []  # an empty home stays empty


def test_missing_from_lists_the_templates(tmp_path: Path) -> None:
    refused(mlgrade(tmp_path, "new", "acc"), "--from", "templates: pytest")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["Acc", "-acc", "acc_1", "a/b", "..", "acc\x1b[31m"])
def test_id_must_be_a_slug(tmp_path: Path, bad: str) -> None:
    refused(mlgrade(tmp_path, "new", "--from", "pytest", "--", bad), "exercise id")  # "--": "-acc" too
    assert list(tmp_path.iterdir()) == []


def test_existing_id_is_refused_and_left_alone(home: Path) -> None:
    before = tree(home)
    refused(mlgrade(home, "new", "acc", "--from", "pytest"), "exercise acc already exists", "exercises/acc")
    assert tree(home) == before


def test_id_taken_by_a_reference_folder_only_is_refused(tmp_path: Path) -> None:
    (tmp_path / "reference" / "solo").mkdir(parents=True)
    refused(mlgrade(tmp_path, "new", "solo", "--from", "pytest"), "already exists", "reference/solo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reference"]


def test_a_home_that_cannot_be_written_leaves_nothing(tmp_path: Path) -> None:
    """reference/ is a link to sysfs, where nothing can be created: the exercise folder was already
    staged when that fails, and is gone again (so is the exercises/ folder the command made)."""
    (tmp_path / "reference").symlink_to("/sys/kernel")
    run = mlgrade(tmp_path, "new", "acc", "--from", "pytest")
    assert run.returncode == 3 and len(run.stderr.splitlines()) == 1, run.stderr
    assert "cannot write exercise acc" in run.stderr and "Traceback" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reference"]


def test_new_list_names_every_template(tmp_path: Path) -> None:
    run = mlgrade(tmp_path, "new", "--list")
    assert run.returncode == 0 and "pytest" in run.stdout and "accuracy" in run.stdout, run.stdout


# -- mlgrade calibrate: refused before any grading ------------------------------------------------

@pytest.mark.parametrize("bad", ["Empty", "empty_input", "-x", "a b", "x\ny"])
def test_calibration_name_must_be_a_slug(home: Path, bad: str) -> None:
    folder = one_change(home, "flawed", 'raise ValueError("the accuracy', 'return 0.0  # ("the accuracy')
    before = tree(home / "exercises")
    refused(mlgrade(home, "calibrate", "--from", str(folder), "--flaw", FLAW, "--", "acc", bad), "calibration name")
    assert tree(home / "exercises") == before


def test_folder_identical_to_the_reference_is_refused(home: Path) -> None:
    copy = home / "copy"
    shutil.copytree(home / "reference" / "acc", copy)
    before = tree(home / "exercises")
    refused(mlgrade(home, "calibrate", "acc", "same", "--from", "copy", "--flaw", FLAW),
            "copy is identical to the reference of acc")
    assert tree(home / "exercises") == before


@pytest.mark.parametrize("args, needle", [
    (["--from", "nowhere"], "no such file or folder"),
    (["--from", "flawed", "--flaw", "two\nlines"], "--flaw"),
    (["--from", "flawed", "--flaw", "   "], "--flaw"),
    (["--from", "flawed", "--repeat", "0"], "--repeat"),
])
def test_other_bad_arguments(home: Path, args: list[str], needle: str) -> None:
    one_change(home, "flawed", 'raise ValueError("the accuracy', 'return 0.0  # ("the accuracy')
    if "--flaw" not in args:
        args = [*args, "--flaw", FLAW]
    refused(mlgrade(home, "calibrate", "acc", "x", *args), needle)


def test_unknown_exercise(home: Path) -> None:
    refused(mlgrade(home, "calibrate", "nope", "x", "--from", "reference/acc", "--flaw", FLAW),
            "unknown exercise 'nope'")


# -- mlgrade calibrate: refused after grading, nothing written ------------------------------------

def test_a_change_that_costs_nothing_is_refused(home: Path) -> None:
    folder = one_change(home, "renamed", "predictions, labels = list", "predictions, labels = tuple")
    before = tree(home / "exercises")
    refused_after_grading(mlgrade(home, "calibrate", "acc", "tuples", "--from", folder.name, "--flaw", FLAW,
                                  "--backend", BACKEND, "--repeat", "1"),
                          "renamed scores 100% and loses points nowhere")
    assert tree(home / "exercises") == before


def test_a_flaw_no_hidden_test_catches_is_refused(home: Path) -> None:
    """Only a public test notices (a three-class special case): validate requires a hidden test to fail."""
    folder = one_change(home, "public-only", "    return sum(",
                        "    if predictions == [0, 1, 2]:\n        return 0.0\n    return sum(")
    before = tree(home / "exercises")
    refused_after_grading(mlgrade(home, "calibrate", "acc", "public-only", "--from", folder.name, "--flaw", FLAW,
                                  "--backend", BACKEND, "--repeat", "1"),
                          "calibration public-only fails no hidden test")
    assert tree(home / "exercises") == before


def test_a_manifest_that_cannot_take_the_entry_is_restored(home: Path) -> None:
    """calibration written inline (`calibration = []`): an appended [[calibration]] does not parse, so the
    file is put back byte for byte and the copied folder (and the calibration/ folder made for it) removed."""
    manifest = home / "exercises" / "acc" / "exercise.toml"
    manifest.write_text(manifest.read_text().replace("device = ", "calibration = []\ndevice = ", 1))
    folder = one_change(home, "flawed", 'raise ValueError("the accuracy', 'return 0.0  # ("the accuracy')
    before = tree(home / "exercises")
    line = refused_after_grading(mlgrade(home, "calibrate", "acc", "empty-input", "--from", folder.name,
                                         "--flaw", FLAW, "--backend", BACKEND, "--repeat", "1"),
                                 "does not parse with the new [[calibration]] entry", "left as it was")
    assert "Cannot mutate" in line or "redefine" in line.lower() or "TOML" in line
    assert tree(home / "exercises") == before


# -- what gets written ----------------------------------------------------------------------------

def test_calibrate_appends_its_entry_and_leaves_the_rest_of_the_file(home: Path) -> None:
    manifest = home / "exercises" / "acc" / "exercise.toml"
    original = manifest.read_bytes()
    folder = one_change(home, "flawed", 'raise ValueError("the accuracy', 'return 0.0  # ("the accuracy')
    run = mlgrade(home, "calibrate", "acc", "empty-input", "--from", folder.name, "--flaw", FLAW,
                  "--backend", BACKEND, "--repeat", "2")
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert "calibration empty-input: measured 80.0% over 2 gradings; band [75, 85]; checks edge-cases" in run.stdout
    assert "acc (reference 100.0%, starter 0.0%, empty-input 80.0%) valid" in run.stdout.splitlines()
    text = manifest.read_bytes()
    assert text.startswith(original)
    assert text[len(original):].decode() == (
        '\n[[calibration]]\nname = "empty-input"  # measured 80.0%\nband = [75, 85]\n'
        f'flaw = "{FLAW}"\nchecks = ["edge-cases"]\n')
    copied = home / "exercises" / "acc" / "calibration" / "empty-input"
    assert tree(copied) == tree(folder)
    assert not [p for p in copied.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
    # The same name again is refused, before any grading.
    refused(mlgrade(home, "calibrate", "acc", "empty-input", "--from", folder.name, "--flaw", FLAW),
            "already has a calibration called empty-input")


@pytest.mark.parametrize("flaw", [
    'It says "done" \\ returns early',
    "Accents and symbols: naïve ≥ 0.5 — ok",
    "A ''' triple quote and a # hash",
])
def test_entry_text_reads_back_as_written(flaw: str) -> None:
    entry = Calibration(name="x-1", band=(75, 85), flaw=flaw, checks=["a", "b-c"])
    parsed = tomllib.loads('id = "e"\n\n' + entry_text(entry, [80.0]))["calibration"][0]
    assert Calibration.model_validate(parsed) == entry


@pytest.mark.parametrize("percents, band", [
    ([85.0], (80, 90)), ([80.0, 80.0], (75, 85)), ([94.7], (89, 99)), ([96.5], (91, 99)),
    ([2.3], (0, 8)), ([0.0], (0, 5)), ([79.5, 80.5], (74, 86)),
])
def test_band_is_measured_plus_minus_five_capped(percents: list[float], band: tuple[int, int]) -> None:
    assert band_for(percents) == band
