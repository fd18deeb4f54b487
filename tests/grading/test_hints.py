"""Candidate feedback: hints for failed hidden tests and the reasons that are not secret (grader/hints.py,
grader/feedback.py), through real gradings on bubblewrap: the toy exercises, and one data-loader calibration."""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader.exercises import load_exercise
from grader.feedback import collection_error
from grader.hints import collected_problems
from grader.pipeline import Grader
from grader.report import candidate_view, to_markdown, validate_report
from grader.scrub import WITHHELD_HIDDEN, HiddenText
from sandbox import available_backends
from tests.conftest import PROJECT, TOY_HOME, TOY_SUBMISSIONS, load_fixture_exercise

pytestmark = pytest.mark.skipif(available_backends().get("bwrap") is not None and os.environ.get("CI") != "true",
                                reason="bubblewrap is not available here")

EDGE_HINT = "add: keep fractions and signs exactly, do not round to an integer"
INTS_HINT = "mean: the mean of whole numbers can be a fraction"


@pytest.fixture(scope="module")
def grader() -> Grader:
    return Grader("bwrap")


@pytest.fixture(scope="module")
def toy():
    return load_fixture_exercise("toy")


def _check(report: dict, check_id: str) -> dict:
    return next(c for c in report["checks"] if c["id"] == check_id)


def _hidden_words(exercise) -> set[str]:
    """What the candidate view must never carry: hidden node ids (the hidden folder) and test names (helpers
    such as "sample" or "shares" are words a check title may use too)."""
    names = {"hidden/"}
    for path in (exercise.tests / "hidden").rglob("*.py"):
        names |= {node.name for node in ast.walk(ast.parse(path.read_text()))
                  if isinstance(node, ast.FunctionDef) and node.name.startswith("test")}
    return names


def _toy_home(tmp_path: Path, edit) -> Path:
    """A copy of the toy home whose toy manifest is edit(text)."""
    home = tmp_path / "home"
    shutil.copytree(TOY_HOME, home, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = home / "exercises" / "toy" / "exercise.toml"
    manifest.write_text(edit(manifest.read_text()))
    return home


def mlgrade(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, MLGRADE_HOME=str(home)), cwd=PROJECT)


# -- real gradings ---------------------------------------------------------------------------

def test_hints_only_for_the_hidden_tests_that_failed_once_each(grader: Grader, toy) -> None:
    report = grader.grade(toy, TOY_SUBMISSIONS / "int-mean")  # mean([1, 2, 3, 4]) == 2: one mean test fails
    validate_report(report)
    mean = _check(report, "mean")
    assert [t["outcome"] for t in mean["tests"]] == ["failed", "passed"]
    assert mean["hints"] == [INTS_HINT]  # not the hint of the test that passed
    assert "hints" not in _check(report, "add-edge") and "hints" not in _check(report, "add-public")

    view = candidate_view(report, HiddenText.from_exercise(toy))
    validate_report(view)
    assert _check(view, "mean")["hints"] == [INTS_HINT] and _check(view, "mean")["tests"] == []
    text = json.dumps(view)
    leaked = [word for word in _hidden_words(toy) if word in text]
    assert leaked == [] and "assert" not in text
    assert f"**mean of a list**: {INTS_HINT}" in to_markdown(view)

    calibration = grader.grade(toy, toy.calibration("no-edge"))  # two of add-edge's three cases fail
    assert sum(t["outcome"] == "failed" for t in _check(calibration, "add-edge")["tests"]) == 2
    assert _check(candidate_view(calibration), "add-edge")["hints"] == [EDGE_HINT]  # one line, not two


def test_the_reference_gets_no_hints(grader: Grader, toy) -> None:
    report = grader.grade(toy, TOY_HOME / "reference" / "toy")
    assert report["score"]["percent"] == 100.0
    assert not any("hints" in c for c in report["checks"])
    assert "Hints" not in to_markdown(report)


def test_an_exercise_with_feedback_none_lists_no_hints(grader: Grader, tmp_path: Path) -> None:
    home = _toy_home(tmp_path, lambda text: text.replace('required_files = ["calc.py"]',
                                                         'required_files = ["calc.py"]\nfeedback = "none"'))
    exercise = load_exercise(str(home / "exercises" / "toy"))
    assert exercise.manifest.feedback == "none"
    report = grader.grade(exercise, TOY_SUBMISSIONS / "int-mean")
    assert _check(report, "mean")["passed"] == 1
    for view in (report, candidate_view(report, HiddenText.from_exercise(exercise))):
        assert not any("hints" in c for c in view["checks"])
        validate_report(view)


def test_the_candidates_own_import_error_reaches_the_candidate_view(grader: Grader, toy) -> None:
    """calc.py lacks mean: the hidden mean tests cannot import it. The candidate is told so (a name of the
    kit, from the candidate's own module), without any hidden test's name, and gets no hints: nothing ran."""
    report = grader.grade(toy, TOY_SUBMISSIONS / "no-mean")
    view = candidate_view(report, HiddenText.from_exercise(toy))
    validate_report(view)
    mean = _check(view, "mean")
    assert mean["reasons"][0].startswith("-5.00 pts: 2 of 2 hidden tests did not pass")
    assert re.fullmatch(r"2 hidden tests: not run: collection error: ImportError: cannot import name 'mean' "
                        r"from 'calc' \(\S+calc\.py\)", mean["reasons"][1]), mean["reasons"]
    assert "hints" not in mean  # not run: the collection error says why
    text = json.dumps(view)
    assert [word for word in _hidden_words(toy) if word in text] == []


def test_hidden_text_after_the_grader_wording_is_withheld(grader: Grader, toy) -> None:
    """Where the candidate's error follows the grader's words, it is scrubbed like any candidate text: the
    same grading with a hidden test's source as the error is withheld (the lead stays)."""
    report = grader.grade(toy, TOY_SUBMISSIONS / "no-mean")
    source = (toy.tests / "hidden" / "test_add_edge.py").read_text()
    # A stretch of hidden source, what a hostile import could raise; without quotes, which would name
    # something outside the kit ('expected') and leave only the exception type.
    stolen = " ".join(source.replace('"', " ").split()[:18])
    for test in _check(report, "mean")["tests"]:
        test["message"] = f"not run: collection error: E   RuntimeError: {stolen}"
    reasons = _check(candidate_view(report, HiddenText.from_exercise(toy)), "mean")["reasons"]
    assert reasons[1] == f"2 hidden tests: not run: collection error: {WITHHELD_HIDDEN}"
    # A hidden test's name alone is too short for the index, but it is a name the report holds.
    for text in ("RuntimeError: see test_mean_single", "RuntimeError: elgnis_naem_tset"):
        for test in _check(report, "mean")["tests"]:
            test["message"] = f"not run: collection error: E   {text}"
        for test in _check(report, "add-public")["tests"]:
            test["message"] = text
        view = candidate_view(report, HiddenText.from_exercise(toy))
        assert _check(view, "mean")["reasons"][1].endswith(WITHHELD_HIDDEN)
        assert [t["message"] for t in _check(view, "add-public")["tests"]] == [WITHHELD_HIDDEN] * 2


def test_timeouts_are_told_in_the_graders_words(grader: Grader, toy) -> None:
    view = candidate_view(grader.grade(toy, TOY_SUBMISSIONS / "hang"), HiddenText.from_exercise(toy))
    mean = _check(view, "mean")
    assert mean["reasons"][1:] == ["2 hidden tests: exceeded the per-test timeout"]
    assert mean["hints"] == [INTS_HINT, "mean: a list of length one"]  # they ran, and failed


FAKE_TIMEOUT = '''def add(a, b):
    return a + b


def mean(xs):  # an exception worded like the runner's timeout line, its digits chosen by the candidate
    raise type("exceeded the per-test timeout of 7311532461 s", (Exception,), {"__module__": "builtins"})()
'''


def test_digits_in_a_message_worded_like_the_graders_are_not_shown(grader: Grader, toy, tmp_path: Path) -> None:
    """Candidate code can raise an exception that reads exactly like a runner template with any digits
    (digits can carry hidden text out): the candidate view shows the template's fixed line only."""
    submission = tmp_path / "fake-timeout"
    submission.mkdir()
    (submission / "calc.py").write_text(FAKE_TIMEOUT)
    report = grader.grade(toy, submission)
    messages = [t["message"] for t in _check(report, "mean")["tests"]]
    assert any("7311532461" in m for m in messages), messages  # the grader view keeps what the test said
    view = candidate_view(report, HiddenText.from_exercise(toy))
    assert "7311532461" not in json.dumps(view)
    assert _check(view, "mean")["reasons"][1:] == ["2 hidden tests: exceeded the per-test timeout"]


def test_an_entry_that_is_not_defined_is_named_in_the_candidate_view(grader: Grader, tmp_path: Path) -> None:
    """The outputs check's reason is worded on the host from the trusted spec ("softmax_rows is not defined
    in fast.py"), so the candidate view shows it in place of a bare count (toy-latency without its timing
    check, which would add a minute and says nothing here)."""
    home = tmp_path / "home"
    shutil.copytree(TOY_HOME, home, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = home / "exercises" / "toy-latency" / "exercise.toml"
    manifest.write_text(manifest.read_text().split("[[checks]]\nid = \"latency\"")[0])
    exercise = load_exercise(str(home / "exercises" / "toy-latency"))
    submission = tmp_path / "no-entry"
    submission.mkdir()
    (submission / "fast.py").write_text("def softmax(x, factor):\n    return (x * factor).softmax(-1)\n")
    report = grader.grade(exercise, submission)
    view = candidate_view(report, HiddenText.from_exercise(exercise))
    validate_report(view)
    assert _check(view, "correct")["reasons"] == ["-5.00 pts: not attempted: softmax_rows is not defined in fast.py"]
    assert "hints" not in _check(view, "correct")


@pytest.mark.slow
def test_data_loader_shared_rng_gets_augmentation_hints_only(grader: Grader) -> None:
    exercise = load_exercise("data-loader")
    report = grader.grade(exercise, exercise.calibration("shared-rng"))
    view = candidate_view(report, HiddenText.from_exercise(exercise))
    validate_report(view)
    hinted = {c["id"]: c["hints"] for c in view["checks"] if "hints" in c}
    assert list(hinted) == ["augmentation"]
    augmentation = _check(report, "augmentation")
    failed = [t["nodeid"] for t in augmentation["tests"] if t["outcome"] != "passed"]
    hints = exercise.manifest.checks[[c.id for c in exercise.manifest.checks].index("augmentation")].hints
    assert hinted["augmentation"] == list(dict.fromkeys(hints[n.split("[")[0]] for n in failed))
    assert any("resume" in hint for hint in hinted["augmentation"])
    text = json.dumps(view)
    assert [word for word in _hidden_words(exercise) if word in text] == []


# -- refused hints ---------------------------------------------------------------------------

@pytest.mark.parametrize("hint,problem", [
    ("see test_mean_single", "quotes the hidden name 'test_mean_single'"),
    ("mean single is wrong", "quotes the hidden name 'test_mean_single'"),
    ("assert mean([7]) == 7", "shares text with a hidden test or the reference"),
    ("return the expected sum", "quotes the hidden test parameter 'expected'"),
])
def test_a_hint_that_reveals_hidden_material_is_refused_with_one_line(tmp_path: Path, hint: str, problem: str) -> None:
    home = _toy_home(tmp_path, lambda text: text.replace(f'= "{INTS_HINT}"', f"= {json.dumps(hint)}"))
    for args in (["validate", "toy"], ["grade", "toy", str(TOY_SUBMISSIONS / "int-mean")]):
        run = mlgrade(*args, home=home)
        assert run.returncode == 2, run.stdout + run.stderr
        assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
        assert f"check mean: the hint for 'hidden/test_mean.py::test_mean_ints' {problem}" in run.stderr


@pytest.mark.parametrize("edit,problem", [
    (lambda t: t.replace(f'"{INTS_HINT}"', '"two\\nlines"'), "must be one printable line"),
    (lambda t: t.replace(f'"{INTS_HINT}"', '"' + "x" * 121 + '"'), "has 121 characters; at most 120"),
    (lambda t: t.replace('"hidden/test_mean.py::test_mean_ints"', '"hidden/test_add_edge.py"'),
     "hint key 'hidden/test_add_edge.py' names no test of this check"),
    (lambda t: t.replace("::test_mean_ints", "::test_mean_nope"), "names test_mean_nope, which hidden/test_mean.py "
                                                                  "does not define"),
    (lambda t: t.replace('tests = ["public/test_add.py"]',
                         'tests = ["public/test_add.py"]\nhints = { "public/test_add.py" = "x" }'),
     "hints are for hidden checks"),
    (lambda t: t.replace('required_files = ["calc.py"]', 'required_files = ["calc.py"]\nfeedback = "some"'),
     "key feedback: Input should be 'none' or 'hints'"),
])
def test_a_malformed_hint_is_refused_when_the_exercise_loads(tmp_path: Path, edit, problem: str) -> None:
    run = mlgrade("validate", "toy", home=_toy_home(tmp_path, edit))
    assert run.returncode == 2 and problem in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_validate_checks_hint_keys_and_parameters_against_the_collected_tests(grader: Grader, tmp_path: Path) -> None:
    home = _toy_home(tmp_path, lambda t: t.replace(
        f'"hidden/test_add_edge.py" = "{EDGE_HINT}"',
        '"hidden/test_add_edge.py::test_add_edge[9-9-9]" = "add: no such case"\n'
        '"hidden/test_add_edge.py::test_add_edge" = "add: sums such as 2.25 and more"'))
    exercise = load_exercise(str(home / "exercises" / "toy"))  # both load: the function exists, 2.25 is no string
    problems = collected_problems(exercise, grader.collect(exercise))
    assert problems == [
        "check add-edge: hint key 'hidden/test_add_edge.py::test_add_edge[9-9-9]' matches none of its tests",
        "check add-edge: the hint for 'hidden/test_add_edge.py::test_add_edge' quotes the hidden test parameter "
        "'2.25'"]
    assert collected_problems(load_exercise(str(TOY_HOME / "exercises" / "toy")), grader.collect(exercise)) == []


def test_names_of_the_kit_are_public_and_others_are_not(toy) -> None:
    hidden = HiddenText.from_exercise(toy)
    assert collection_error("E   ImportError: cannot import name 'mean' from 'calc' (/x/calc.py)", hidden) == \
        "ImportError: cannot import name 'mean' from 'calc' (/x/calc.py)"
    assert collection_error("E   ImportError: cannot import name 'secret_helper' from 'calc'", hidden) == \
        "ImportError (its message names something outside the exercise's public material)"
    assert collection_error("TypeError: can't multiply sequence by non-int of type 'float'", hidden).endswith("'float'")


# -- the shipped exercises -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["data-loader", "training-loop", "evaluation"])
def test_every_hidden_test_of_the_shipped_exercises_has_a_hint(name: str) -> None:
    exercise = load_exercise(name)  # loading vets every hint
    checks = [c for c in exercise.manifest.checks if c.visibility == "hidden" and c.kind == "pytest"]
    tests = [f"{p.relative_to(exercise.tests).as_posix()}::{node.name}"
             for p in sorted((exercise.tests / "hidden").glob("test_*.py"))
             for node in ast.parse(p.read_text()).body if isinstance(node, ast.FunctionDef) and node.name.startswith("test")]
    assert tests
    assert [n for n in tests if not any(c.owns(n) and c.hint_for(n) for c in checks)] == []


def test_every_case_of_the_inference_latency_outputs_checks_has_a_hint() -> None:
    exercise = load_exercise("inference-latency")
    outputs = [c for c in exercise.manifest.checks if c.kind == "outputs"]
    assert {c.id for c in outputs} == {"correct-cpu", "correct-triton", "correct-cuda"}
    for check in outputs:
        cases = check.hint_targets(exercise, [])
        assert cases and all(check.hint_for(n) for n in cases)
        assert sum(key != check.id for key in check.hints) >= 6  # most edge cases say what is special
        assert collected_problems(exercise, []) == []
