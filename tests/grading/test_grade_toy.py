"""End to end on the toy exercise: real sandbox runs, real pytest, hostile submissions.

Each test runs on every backend that can run here (bwrap is required under CI=true).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader.errors import BadInput
from grader.exercises import load_exercise
from grader.pipeline import Grader
from grader.report import candidate_view, validate_report
from grader.scoring import MISSING
from sandbox import available_backends
from tests.conftest import load_fixture_exercise, reported_outcomes, TOY_HOME, TOY_SUBMISSIONS

BACKENDS = [name for name, reason in available_backends().items() if reason is None or os.environ.get("CI") == "true"]


@pytest.fixture(scope="module", params=BACKENDS)
def grader(request: pytest.FixtureRequest) -> Grader:
    return Grader(request.param)


@pytest.fixture(scope="module")
def toy():
    return load_fixture_exercise("toy")


def _outcomes(report: dict) -> dict[str, str]:
    return {t["nodeid"]: t["outcome"] for c in report["checks"] for t in c["tests"]}


def test_reference_scores_full_marks_and_report_is_valid(grader: Grader, toy) -> None:
    report = grader.grade(toy, TOY_HOME / "reference" / "toy")
    validate_report(report)
    assert report["score"]["percent"] == 100.0
    assert len(_outcomes(report)) == 7
    env = report["environment"]
    assert env["backend"] == grader.backend.name and env["sandboxed"] == (grader.backend.name != "process")
    assert env["python"].startswith("3.") and env["torch"] and env["seed"] == 0
    assert report["run"]["complete"] and report["warnings"] == ([] if env["sandboxed"] else [report["warnings"][0]])


def test_process_backend_reports_say_unsandboxed(toy) -> None:
    report = Grader("process").grade(toy, TOY_HOME / "reference" / "toy")
    assert report["environment"]["sandboxed"] is False
    assert report["warnings"][0].startswith("UNSANDBOXED")


def test_calibration_gets_partial_credit(grader: Grader, toy) -> None:
    report = grader.grade(toy, toy.calibration("no-edge"))
    assert report["score"]["percent"] == 80.0
    edge = next(c for c in report["checks"] if c["id"] == "add-edge")
    assert edge["status"] == "partial" and len(edge["reasons"]) == 2


def test_infinite_loop_costs_only_its_tests(grader: Grader, toy) -> None:
    report = grader.grade(toy, TOY_SUBMISSIONS / "hang")
    outcomes = _outcomes(report)
    assert {outcomes[n] for n in outcomes if "mean" in n} == {"timeout"}
    assert {outcomes[n] for n in outcomes if "add" in n} == {"passed"}
    assert report["score"]["percent"] == 50.0
    assert not report["run"]["timed_out"]  # ended by the per-test timeouts, not by the 60 s wall clock


def test_os_exit_in_a_test_costs_only_that_test(grader: Grader, toy) -> None:
    report = grader.grade(toy, TOY_SUBMISSIONS / "exit")
    outcomes = _outcomes(report)
    assert {outcomes[n] for n in outcomes if "add" in n} == {"crashed"}
    assert {outcomes[n] for n in outcomes if "mean" in n} == {"passed"}
    assert report["score"]["percent"] == 50.0


def test_a_test_module_that_cannot_import_costs_only_its_own_tests(grader: Grader, toy) -> None:
    """calc.py lacks mean: pytest refuses a command line naming the tests of a module that failed to
    import ("found no collectors"), so the runner records those and runs the others again."""
    report = grader.grade(toy, TOY_SUBMISSIONS / "no-mean")
    outcomes = _outcomes(report)
    assert {outcomes[n] for n in outcomes if "test_mean.py" in n} == {"error"}
    assert {outcomes[n] for n in outcomes if "test_mean.py" not in n} == {"passed"}
    mean = next(c for c in report["checks"] if c["id"] == "mean")
    assert all("cannot import name 'mean'" in t["message"] for t in mean["tests"])
    assert report["score"]["percent"] == 50.0


def test_exit_at_import_fails_every_test(grader: Grader, toy) -> None:
    report = grader.grade(toy, TOY_SUBMISSIONS / "import-exit")
    assert report["score"]["percent"] == 0.0
    assert set(_outcomes(report).values()) == {"error"}


def test_candidate_conftest_ini_and_pytest_module_are_ignored(grader: Grader, toy) -> None:
    report = grader.grade(toy, TOY_SUBMISSIONS / "conftest-cheat")
    outcomes = reported_outcomes(report)
    assert {outcomes[n] for n in outcomes if "mean" in n} == {"failed"}  # the conftest did not run
    assert report["integrity"]["tampering"] is True  # and the static scan names it
    assert any(e.startswith("static scan: conftest.py:") for e in report["integrity"]["evidence"])


def test_results_forged_by_candidate_code_are_void(grader: Grader, toy) -> None:
    report = grader.grade(toy, TOY_SUBMISSIONS / "forge")
    messages = {t["message"] for c in report["checks"] for t in c["tests"] if "mean" in t["nodeid"]}
    assert messages and all(m.startswith("void (verdict tampering); reported failed") for m in messages)
    assert report["score"]["percent"] == 0.0  # was 50% without the forged lines: forging never pays
    assert report["integrity"]["tampering"] is True
    assert any("not signed by the test runner" in e for e in report["integrity"]["evidence"])
    assert any("not signed by the test runner" in w for w in report["warnings"])


def test_killing_the_runner_after_forging_earns_nothing(grader: Grader, toy) -> None:
    report = grader.grade(toy, TOY_SUBMISSIONS / "kill-runner")
    assert report["score"]["percent"] == 0.0
    assert {t["message"] for c in report["checks"] for t in c["tests"]} == {
        f"void (verdict tampering); reported missing: {MISSING}"}
    assert any("not signed" in w for w in report["warnings"])


def test_candidate_view_hides_hidden_tests(grader: Grader, toy) -> None:
    view = candidate_view(grader.grade(toy, toy.calibration("no-edge")))
    validate_report(view)
    text = json.dumps(view)
    assert "test_add_edge" not in text and "test_mean" not in text and "stdout_tail" not in text
    assert "public/test_add.py::test_add_small" in text
    edge = next(c for c in view["checks"] if c["id"] == "add-edge")
    assert edge["tests"] == [] and "2 of 3 hidden tests did not pass" in edge["reasons"][0]


@pytest.mark.parametrize("name,problem", [("missing-file", "missing required file: calc.py"),
                                          ("syntax-error", "calc.py:1: syntax error")])
def test_bad_submissions_are_bad_input(grader: Grader, toy, name: str, problem: str) -> None:
    with pytest.raises(BadInput, match=problem):
        grader.grade(toy, TOY_SUBMISSIONS / name)


# -- the command line --------------------------------------------------------------------

def mlgrade(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLGRADE_HOME=str(TOY_HOME))
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_cli_grade_json_and_out_folder(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    run = mlgrade("grade", "toy", str(TOY_HOME / "reference" / "toy"), "--json", "--out", str(out), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    validate_report(report)
    assert report["score"]["percent"] == 100.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]
    assert "# Toy arithmetic — 100.0%" in (out / "report.md").read_text()


@pytest.mark.parametrize("view", ["grader", "candidate"])
def test_cli_out_writes_a_lone_surrogate_escaped(tmp_path: Path, view: str) -> None:
    """JSON from the sandbox may carry a lone surrogate, which no UTF-8 file can hold: the report has it
    as a visible escape, so report.json, report.md and report.html are all written."""
    submission = tmp_path / "sub"
    submission.mkdir()
    (submission / "calc.py").write_text('def add(a, b):\n    raise AssertionError("lone \\ud800 surrogate")\n\n\n'
                                        'def mean(xs):\n    return sum(xs) / len(xs)\n')
    out = tmp_path / "reports"
    run = mlgrade("grade", "toy", str(submission), "--backend", "bwrap", "--view", view, "--out", str(out))
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    validate_report(report)
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]
    if view == "grader":
        messages = [t["message"] for c in report["checks"] for t in c["tests"]]
        assert any("lone \\ud800 surrogate" in m for m in messages), messages
        assert "lone \\ud800 surrogate" in (out / "report.html").read_text(encoding="utf-8")


def test_cli_candidate_view(tmp_path: Path) -> None:
    # no-mean fails every hidden mean test with a message naming their module (test_hints.py covers
    # a hanging submission's candidate view)
    run = mlgrade("grade", "toy", str(TOY_SUBMISSIONS / "no-mean"), "--view", "candidate", "--json")
    assert run.returncode == 0, run.stderr
    assert "test_mean" not in run.stdout and json.loads(run.stdout)["view"] == "candidate"
    grader_view = mlgrade("grade", "toy", str(TOY_SUBMISSIONS / "no-mean"), "--json")
    assert "test_mean" in grader_view.stdout  # so the candidate view has hidden something


def _evil_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("calc.py", "def add(a, b): return a + b\n")
        archive.writestr("../escape.py", "x = 1\n")
    return path


@pytest.mark.parametrize("args,problem", [
    (["grade", "toy", "SUBMISSIONS/missing-file"], "missing required file: calc.py"),
    (["grade", "toy", "SUBMISSIONS/syntax-error"], "syntax error"),
    (["grade", "toy", "EVILZIP"], "escapes the submission"),
    (["grade", "nope", "SUBMISSIONS/hang"], "unknown exercise 'nope'"),
    (["grade", "toy"], "required: submission"),
    (["grade", "toy", "SUBMISSIONS/hang", "--backend", "chroot"], "invalid choice"),
    (["validate", "--repeat", "0", "toy"], "--repeat must be at least 1"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], problem: str) -> None:
    evil = _evil_zip(tmp_path / "evil.zip")
    args = [a.replace("SUBMISSIONS", str(TOY_SUBMISSIONS)).replace("EVILZIP", str(evil)) for a in args]
    run = mlgrade(*args, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert problem in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip"]
    assert not (tmp_path.parent / "escape.py").exists()


def test_cli_kit_has_no_hidden_material(tmp_path: Path) -> None:
    kit = tmp_path / "kit"
    run = mlgrade("kit", "toy", "--out", str(kit))
    assert run.returncode == 0, run.stderr
    files = sorted(p.relative_to(kit).as_posix() for p in kit.rglob("*") if p.is_file())
    assert files == ["README.md", "calc.py", "self_check.py", "tests/public/test_add.py"]
    (kit / "calc.py").write_text((TOY_HOME / "reference" / "toy" / "calc.py").read_text())
    check = subprocess.run([sys.executable, "self_check.py"], cwd=kit, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and "2 passed" in check.stdout
    again = mlgrade("kit", "toy", "--out", str(kit))
    assert again.returncode == 2 and "not empty" in again.stderr


def test_cli_list() -> None:
    run = mlgrade("list")
    assert run.returncode == 0 and "toy" in run.stdout and "Toy arithmetic" in run.stdout


def test_cli_validate_toy_is_valid() -> None:
    run = mlgrade("validate", "toy", "--repeat", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    line = run.stdout.strip().splitlines()[-1]
    assert line.startswith("toy ") and line.endswith(" valid")


def test_cli_validate_flags_a_calibration_outside_its_band(tmp_path: Path) -> None:
    import shutil
    home = tmp_path / "home"
    shutil.copytree(TOY_HOME, home)
    manifest = home / "exercises" / "toy" / "exercise.toml"
    manifest.write_text(manifest.read_text().replace("band = [75, 85]", "band = [20, 30]"))
    env = dict(os.environ, MLGRADE_HOME=str(home))
    run = subprocess.run([sys.executable, "-m", "grader", "validate", "--all"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 1
    toy = next(line for line in run.stdout.splitlines() if line.startswith("toy "))
    assert toy.endswith("INVALID: calibration no-edge scores 80.0%, outside its band [20, 30]")
    assert any(line.startswith("toy-latency ") and line.endswith(" valid") for line in run.stdout.splitlines())


def _validate_changed_toy(tmp_path: Path, manifest_edit, files: dict[str, str] | None = None) -> str:
    """Validate a copy of the toy exercise with its manifest edited; return the toy's line."""
    import shutil
    home = tmp_path / "home"
    shutil.copytree(TOY_HOME, home)
    root = home / "exercises" / "toy"
    (root / "exercise.toml").write_text(manifest_edit((root / "exercise.toml").read_text()))
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    run = subprocess.run([sys.executable, "-m", "grader", "validate", "toy", "--backend", BACKENDS[0]],
                         capture_output=True, text=True, env=dict(os.environ, MLGRADE_HOME=str(home)), timeout=300)
    line = next(line for line in run.stdout.splitlines() if line.startswith("toy "))
    assert run.returncode == (0 if line.endswith(" valid") else 1), run.stdout + run.stderr
    return line


def test_validate_flags_a_calibration_that_loses_points_outside_its_named_checks(tmp_path: Path) -> None:
    line = _validate_changed_toy(tmp_path, lambda t: t.replace('checks = ["add-edge"]', 'checks = ["mean"]'))
    assert "INVALID: calibration no-edge loses points in check add-edge, which its manifest entry does not " \
           "name (checks = mean) (+1 more)" in line  # the other: it names mean but loses nothing there


def test_validate_flags_a_calibration_that_fails_no_hidden_test(tmp_path: Path) -> None:
    flaw = 'name = "zero"\nband = [70, 90]\nflaw = "add(0, x) returns 0"\nchecks = ["add-public"]\n'
    line = _validate_changed_toy(
        tmp_path, lambda t: t + "\n[[calibration]]\n" + flaw,
        {"calibration/zero/calc.py": "def add(a, b):\n    return a + b if a != 0 else 0\n\n\n"
                                     "def mean(xs):\n    return sum(xs) / len(xs)\n"})
    assert line.endswith("INVALID: calibration zero fails no hidden test"), line


def test_a_check_for_another_device_is_left_out_and_its_tests_not_required(tmp_path: Path) -> None:
    cuda = ('\n[[checks]]\nid = "gpu-only"\ntitle = "needs a GPU"\nvisibility = "hidden"\npoints = 4\n'
            'device = "cuda"\ntests = ["hidden/test_gpu_only.py"]\n')
    line = _validate_changed_toy(
        tmp_path, lambda t: t.replace("\n[[calibration]]", cuda + "\n[[calibration]]", 1),
        {"tests/hidden/test_gpu_only.py": "import os\n\n\ndef test_gpu_only():\n"
                                          "    assert os.environ['MLGRADE_DEVICE'] == 'cuda'\n"})
    assert line.endswith(" valid"), line  # on this CPU host the check is left out, not failed
    assert "(reference 100.0%, starter 0.0%, no-edge 80.0%)" in line, line


def test_candidate_code_cannot_read_the_runners_memory(toy) -> None:
    if "bwrap" not in BACKENDS:
        pytest.skip("bubblewrap is not available here")
    report = Grader("bwrap").grade(toy, TOY_SUBMISSIONS / "read-runner-memory")
    # mean() is right only when /proc/<runner>/mem was refused (the scan voids the score for trying)
    assert set(reported_outcomes(report).values()) == {"passed"}, report["checks"]
    assert report["integrity"]["tampering"] is True


def test_wall_clock_limit_ends_the_grading_and_unreported_tests_fail(tmp_path: Path) -> None:
    import shutil
    home = tmp_path / "home"
    shutil.copytree(TOY_HOME, home)
    manifest = home / "exercises" / "toy" / "exercise.toml"
    manifest.write_text(manifest.read_text().replace("wall_s = 60", "wall_s = 6").replace("test_timeout_s = 4",
                                                                                          "test_timeout_s = 30"))
    os.environ["MLGRADE_HOME"] = str(home)
    try:
        exercise = load_exercise("toy")
    finally:
        os.environ.pop("MLGRADE_HOME", None)
    report = Grader(BACKENDS[0]).grade(exercise, TOY_SUBMISSIONS / "hang")
    assert report["run"]["timed_out"] and report["run"]["wall_s"] < 15
    outcomes = _outcomes(report)
    assert {outcomes[n] for n in outcomes if "mean" in n} == {"missing"}
    assert {outcomes[n] for n in outcomes if "add" in n} == {"passed"}
    assert report["score"]["percent"] == 50.0
    assert any("wall-clock limit of 6 s" in w for w in report["warnings"])


def test_a_deep_tree_left_in_the_out_folder_is_graded_and_removed(grader: Grader, toy, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """3000 nested folders written at import: shutil.rmtree would die of RecursionError and leave them."""
    import tempfile
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))  # this grading's folders only, whatever else runs
    report = grader.grade(toy, TOY_SUBMISSIONS / "deep-tree")
    assert set(reported_outcomes(report).values()) == {"passed"}  # graded (then void: it reaches for MLGRADE_OUT)
    assert list(private.iterdir()) == []


def _strings(value) -> list[str]:
    """Every string in a report (keys included), depth first."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def test_candidate_view_carries_no_hidden_text_back(toy) -> None:
    """Issue 8: the submission reads the hidden tests at import and fails every test with the next stretch
    of them as its message. The grader view shows them; the candidate view must not carry back any run of
    20 characters of a hidden test or of the reference."""
    if "bwrap" not in BACKENDS:
        pytest.skip("bubblewrap is not available here")
    from grader.scrub import WITHHELD_HIDDEN, HiddenText
    report = Grader("bwrap").grade(toy, TOY_SUBMISSIONS / "leak-hidden")
    hidden_files = sorted((toy.tests / "hidden").rglob("*.py")) + sorted(toy.reference.rglob("*.py"))
    runs = {text[i:i + 20] for text in (p.read_text() for p in hidden_files) for i in range(len(text) - 19)}
    grader_view = "\n".join(_strings(report))
    assert sum(run in grader_view for run in runs) > 50  # the payload reached the grader's report
    view = candidate_view(report, HiddenText.from_exercise(toy))
    validate_report(view)
    shown = json.dumps(view) + "\n".join(_strings(view))
    assert [run for run in runs if run in shown] == []
    public = next(c for c in view["checks"] if c["visibility"] == "public")
    assert [t["message"] for t in public["tests"]] == [WITHHELD_HIDDEN] * 2
    assert all(r.endswith(WITHHELD_HIDDEN) for r in public["reasons"] if "public/test_add.py::" in r)
