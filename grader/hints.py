"""Hints: one line per hidden test that tells a candidate where to look, never what the test is.

A hidden pytest or outputs check may map node-id prefixes of its tests to one line each
(`[checks.hints]` in exercise.toml, checked as a line by `checks.base.CheckSpec`). A grading
lists, per check, the hint of every test that ran and did not pass (`shown_hints`), once each;
the candidate view keeps that list and nothing else about the hidden tests (grader/feedback.py).
An exercise with `feedback = "none"` lists none.

A hint is the exercise author's text, so it is checked when the exercise is loaded
(`vet_hints`, refused with one line): it must name a test of its check that exists (pytest:
the test file, and the function or class it names), and it must not reveal hidden material:
- a run of text it shares with a hidden test file or the reference (`grader.scrub.HiddenText`:
  4 words / 32 letters, as for candidate text), or a whole line of a hidden test of 12 characters
  or more that the kit does not have ("assert mean([7]) == 7", too short for the index);
- a name defined in a hidden test file (a test's function name, a helper, a class, the module
  itself), as written ("test_mask_rate") or as words ("mask rate"; a test's name without its
  leading "test" too), unless the kit or the manifest's ids and titles (the candidate view shows
  them) say the same words;
- a string literal of a `pytest.mark.parametrize` or `pytest.param` call in a hidden test
  (argument names, values, ids) of three characters or more, unless the kit says it too.
`mlgrade validate` adds what needs the collected node ids (`collected_problems`): every key
names at least one collected test, and no hint quotes a parameter id of a hidden test.
"""
from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .errors import BadInput
from .harness.wire import nodeid_matches
from .scrub import HiddenText, folded_words, hidden_test_files, kit_files, read_text

if TYPE_CHECKING:
    from .exercises import Exercise
    from .manifest import Manifest
    from .results import TestResult

# A test with one of these messages did not run, or its verdict is void: its check's own reason says why.
NOT_RUN = ("not run: ", "import failed: ", "void (")
MIN_TOKEN = 3  # shorter parameter strings and one-word names ("k", "0", "ws") are too common to refuse
MIN_LINE = 12  # a hidden test's line this long, as written (case and spacing aside), is refused whole


def shown_hints(manifest: "Manifest", check: Any, tests: Sequence["TestResult"]) -> list[str]:
    """The hints of the check's tests that ran and did not pass, each once, in test order."""
    if manifest.feedback != "hints" or not check.hints:
        return []
    found: list[str] = []
    for test in tests:
        if test.outcome in ("passed", "skipped") or test.message.startswith(NOT_RUN):
            continue
        hint = check.hint_for(test.nodeid)
        if hint is not None and hint not in found:
            found.append(hint)
    return found


# -- checked when the exercise loads ---------------------------------------------------------

def _hinted(manifest: "Manifest") -> list[tuple[Any, str, str]]:
    return [(check, key, text) for check in manifest.checks for key, text in check.hints.items()]


class _Secrets:
    """What a hint may not quote: hidden names and parameter strings, minus what is public."""

    def __init__(self, exercise: "Exercise") -> None:
        self.hidden = HiddenText.from_exercise(exercise)
        manifest = exercise.manifest
        public = [t for t in (read_text(p) for p in kit_files(exercise)) if t is not None]
        public += [manifest.id, manifest.title, manifest.summary, *(f"{c.id} {c.title}" for c in manifest.checks)]
        self.public = " " + " ".join(" ".join(folded_words(t)) for t in public) + " "
        self.names: set[str] = set()  # identifiers defined in hidden test files, and their module names
        self.strings: set[str] = set()  # parametrize strings of hidden tests
        self.definitions: dict[str, set[str]] = {}  # hidden test file (tests-relative) -> names it defines
        public_lines = {_line(line) for text in public for line in text.splitlines()}
        self.lines: set[str] = set()  # hidden test lines, too short for the index, that the kit does not have
        for path in hidden_test_files(exercise):
            text = read_text(path) or ""
            self.lines.update(line for line in map(_line, text.splitlines())
                              if len(line) >= MIN_LINE and line not in public_lines)
            if path.suffix != ".py":
                continue
            relative = path.relative_to(exercise.tests).as_posix()
            self.names.add(path.stem)
            try:
                tree = ast.parse(text)
            except SyntaxError:
                continue
            self.definitions[relative] = _defined(tree)
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    self.names.add(node.name)
                elif isinstance(node, ast.Call) and _is_param_call(node.func):
                    for value in [*node.args, *(k.value for k in node.keywords)]:
                        self.strings.update(_strings(value))

    def _quoted(self, hint: str, words: list[str]) -> bool:
        text = " " + " ".join(folded_words(hint)) + " "
        return len(words) > 0 and (" " + " ".join(words) + " ") in text and (" " + " ".join(words) + " ") not in self.public

    def reveals(self, hint: str, parameters: Iterable[str] = ()) -> str | None:
        """Why hint reveals hidden material (one phrase), or None."""
        if self.hidden.leaks(hint) or any(line in _line(hint) for line in self.lines):
            return "shares text with a hidden test or the reference"
        for name in sorted(self.names, key=lambda n: (-len(n), n)):  # the longest name it quotes
            words = folded_words(name)
            tail = words[1:] if words[:1] == ["test"] else []
            if (len(words) > 1 or len(name) >= MIN_TOKEN) and self._quoted(hint, words) \
                    or len(tail) > 1 and self._quoted(hint, tail):
                return f"quotes the hidden name {name!r}"
        for value in sorted({*self.strings, *parameters}):
            words = folded_words(value)
            if len(value) >= MIN_TOKEN and self._quoted(hint, words):
                return f"quotes the hidden test parameter {value!r}"
        return None


def _line(text: str) -> str:
    return " ".join(text.casefold().split())


def _is_param_call(func: ast.expr) -> bool:
    """pytest.mark.parametrize(...), mark.parametrize(...), parametrize(...), pytest.param(...)."""
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in ("parametrize", "param")


def _strings(node: ast.AST) -> set[str]:
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Constant) and isinstance(child.value, str):
            found.update(part.strip() for part in child.value.split(",") if part.strip())
    return found


def _defined(tree: ast.Module) -> set[str]:
    """Names a node id may follow its file with: module-level functions and classes, Class::method."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            names.update(f"{node.name}::{item.name}" for item in node.body
                         if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return names


def _key_problem(exercise: "Exercise", check: Any, key: str, secrets: _Secrets) -> str | None:
    """Why a pytest check's hint key names no test that exists (file, then function or class)."""
    if check.kind != "pytest":
        return None
    path, _, rest = key.partition("::")
    if not (exercise.tests / path).is_file():
        return f"names {path}, which is not a file under tests/"
    name = re.split(r"\[", rest, maxsplit=1)[0]
    if name and path in secrets.definitions and name not in secrets.definitions[path]:
        return f"names {name}, which {path} does not define"
    return None


def vet_hints(exercise: "Exercise") -> None:
    """Raise BadInput (one line) at the first hint whose key names no existing test or whose text
    reveals hidden material."""
    hinted = _hinted(exercise.manifest)
    if not hinted:
        return
    secrets = _Secrets(exercise)
    where = exercise.root / "exercise.toml"
    for check, key, text in hinted:
        problem = _key_problem(exercise, check, key, secrets)
        if problem:
            raise BadInput(f"{where}: check {check.id}: hint key {key!r} {problem}")
        why = secrets.reveals(text)
        if why:
            raise BadInput(f"{where}: check {check.id}: the hint for {key!r} {why}; hints must not reveal hidden tests")


def collected_problems(exercise: "Exercise", collected: list[str]) -> list[str]:
    """What `mlgrade validate` adds, given the collected node ids: keys that name no test of their check,
    and hints that quote a hidden test's parameter id."""
    hinted = _hinted(exercise.manifest)
    if not hinted:
        return []
    secrets = _Secrets(exercise)
    parameters = {part for nodeid in collected if nodeid.startswith("hidden/") and nodeid.endswith("]")
                  for ident in [nodeid[nodeid.index("[") + 1:-1]] for part in (ident, *ident.split("-"))}
    problems = []
    for check, key, text in hinted:
        targets = check.hint_targets(exercise, collected)
        if targets is not None and not any(nodeid_matches(key, n) for n in targets):
            problems.append(f"check {check.id}: hint key {key!r} matches none of its tests")
        why = secrets.reveals(text, parameters)
        if why:
            problems.append(f"check {check.id}: the hint for {key!r} {why}")
    return problems
