"""Sentinel tests: clones of real tests, planted per grading, that every submission must fail.

The tests run in the candidate's process, so code that flips failures to passes (patching
pytest's reporting or our plugin, rewriting asserts, making `torch.equal` always agree, writing
result events itself) cannot be stopped there. It can be caught: each grading copies the
exercise's tests, and into a few randomly chosen test modules plants a clone of one of that
module's own tests under a new name made of the module's test-name words. The clone runs the
original's body (so it calls the candidate's code the same way) and then one comparison that
cannot hold, made with one of the mechanisms the suite uses (a plain `assert`, `torch.equal`,
`torch.allclose`, `torch.testing.assert_close`, `numpy.testing`, `numpy.array_equal`); the
mechanisms rotate across the sentinels of a grading. Every test module is re-rendered from
its syntax tree, so a planted module looks like the others. A sentinel reported as passed is
evidence of verdict tampering (grader/integrity.py); sentinels never count for points.

What it cannot catch: code that recognises a sentinel (by comparing test bodies, say) and
leaves it alone while flipping the rest. The name, place and body give it little to go on.
"""
from __future__ import annotations

import ast
import copy
import itertools
import random
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from .results import TestResult

PER_GRADING = 4  # sentinels with new names of their own, besides those that take the real names

# (text that shows the suite uses the mechanism, comparison that fails) - {n} is a random size >= 3.
_MECHANISMS = {
    "assert": ("", "assert sum(range({n})) == {wrong}"),
    "torch.equal": ("torch.equal", "assert torch.equal(torch.arange({n}), torch.arange(1, {n} + 1))"),
    "torch.allclose": ("allclose", "assert torch.allclose(torch.ones({n}), torch.full(({n},), {frac}))"),
    "assert_close": ("assert_close", "torch.testing.assert_close(torch.zeros({n}), torch.full(({n},), {frac}))"),
    "numpy.testing": ("testing.assert_", "np.testing.assert_array_equal(np.arange({n}), np.arange({n})[::-1])"),
    "array_equal": ("array_equal", "assert np.array_equal(np.arange({n}), np.arange(1, {n} + 1))"),
}
_IMPORTS = {"torch": "import torch", "np": "import numpy as np"}


@dataclass(frozen=True)
class Planted:
    tests: Path  # the copy of the tests folder, with sentinels, to mount instead of the original
    nodeids: tuple[str, ...]  # every node id to run, real and sentinel, each beside its twin
    sentinels: frozenset[str]
    renamed: dict[str, str] = field(default_factory=dict)  # real node id -> the id it runs under

    def real(self, results: dict[str, TestResult]) -> dict[str, TestResult]:
        """results keyed by the real node ids (a renamed test's result under its real name)."""
        out = {}
        for nodeid, ran_as in self.renamed.items():
            if ran_as in results:
                out[nodeid] = replace(results[ran_as], nodeid=nodeid)
        planted = self.sentinels | set(self.renamed.values())
        for nodeid, result in results.items():
            if nodeid not in planted:
                out.setdefault(nodeid, result)
        return out


def _split(nodeid: str) -> tuple[str, str, str] | None:
    """(file, function, "[param]" or "") for a module-level test function's node id, else None."""
    path, sep, rest = nodeid.partition("::")
    if not sep or "::" in rest:
        return None  # not a test, or a method of a class
    name, bracket, param = rest.partition("[")
    return path, name, bracket + param


def _words(names: list[str]) -> list[str]:
    return [w for name in names for w in name.removeprefix("test_").split("_") if w.isidentifier()] or ["case"]


def _new_name(taken: set[str], words: list[str], rng: random.Random) -> str:
    for _ in range(50):
        unique = sorted(set(words))
        name = "test_" + "_".join(rng.sample(unique, min(len(unique), rng.randint(2, 3))))
        if name not in taken:
            return name
    name = "test_" + "_".join(rng.choices(words, k=3)) + f"_{rng.randint(2, 99)}"
    return name if name not in taken else name + f"_{len(taken)}"


def _imported(tree: ast.Module) -> set[str]:
    """Names the module binds with its top-level imports."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).partition(".")[0] for a in node.names)
    return names


def _failing_comparison(mechanism: str, rng: random.Random, imported: set[str]) -> list[ast.stmt]:
    n = rng.randint(3, 97)
    statement = _MECHANISMS[mechanism][1].format(n=n, wrong=n * (n - 1) // 2 + rng.randint(1, 9),
                                                 frac=rng.choice((0.5, 1.5, 2.0, 0.25)))
    needs = [line for alias, line in _IMPORTS.items() if alias + "." in statement and alias not in imported]
    return ast.parse("\n".join([*needs, statement])).body


def _leaves_early(function: ast.FunctionDef) -> bool:
    """True when the body can end before its last statement without failing (return, yield):
    a clone of it might then pass without reaching its failing comparison."""
    stack = list(function.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Return, ast.Yield, ast.YieldFrom)):
            return True
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))
    return False


def _mechanisms_used(source: str) -> list[str]:
    return [m for m, (marker, _) in _MECHANISMS.items() if marker in source]


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        return body[1:]
    return body


def _param(nodeid: str) -> str:
    return _split(nodeid)[2]  # type: ignore[index]


def plant(tests: Path, dest: Path, expected: list[str], rng: random.Random,
          count: int = PER_GRADING) -> Planted:
    """Copy tests to dest with sentinels planted; expected is the real node ids, in run order.

    Every module-level test function that cannot return early is swapped: it runs under a new
    name, and a sentinel takes its real name, so that the names a candidate can know (the kit's
    public tests, or hidden ones that leaked) are all sentinels. `count` more sentinels get new
    names of their own. Comparison mechanisms rotate across the sentinels."""
    shutil.copytree(tests, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    by_file: dict[str, dict[str, list[str]]] = {}
    for nodeid in expected:
        parts = _split(nodeid)
        if parts:
            by_file.setdefault(parts[0], {}).setdefault(parts[1], []).append(nodeid)
    trees: dict[str, ast.Module] = {}
    for module in sorted(dest.rglob("test_*.py")):
        rel = module.relative_to(dest).as_posix()
        try:
            trees[rel] = ast.parse(module.read_text(encoding="utf-8"))
        except (SyntaxError, ValueError, UnicodeDecodeError):
            continue  # an exercise test that does not parse is reported by collection, not here
    mechanisms = _mechanisms_used("\n".join(ast.unparse(t) for t in trees.values())) or ["assert"]
    rng.shuffle(mechanisms)
    turn = itertools.count()

    def sentinel(function: ast.FunctionDef, name: str, tree: ast.Module) -> ast.FunctionDef:
        clone = copy.deepcopy(function)
        clone.name = name
        clone.body = _without_docstring(clone.body) + _failing_comparison(
            mechanisms[next(turn) % len(mechanisms)], rng, _imported(tree))
        return clone

    renamed: dict[str, str] = {}
    extra: dict[str, list[str]] = {}  # real node id -> node ids to run right after it
    sentinels: set[str] = set()
    moved: dict[tuple[str, str], ast.FunctionDef] = {}  # (file, real name) -> the real test, renamed
    for rel, tree in trees.items():
        functions = by_file.get(rel, {})
        taken = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        words = _words(sorted(functions))
        for node in list(tree.body):
            if not (isinstance(node, ast.FunctionDef) and node.name in functions and not _leaves_early(node)):
                continue
            moved[(rel, node.name)] = node
            real_name = node.name
            node.name = _new_name(taken, words, rng)
            taken.add(node.name)
            after = rng.randint(0, 1)  # the decoy before or after the real test, at random
            tree.body.insert(tree.body.index(node) + after, sentinel(node, real_name, tree))
            for nodeid in functions[real_name]:
                ran_as = f"{rel}::{node.name}{_param(nodeid)}"
                renamed[nodeid] = ran_as
                extra[nodeid] = [ran_as, nodeid] if after else [nodeid, ran_as]
                sentinels.add(nodeid)
    for rel, name in rng.sample(list(moved), min(count, len(moved))):
        tree, real = trees[rel], moved[(rel, name)]
        taken = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        clone = sentinel(real, _new_name(taken, _words(sorted(by_file[rel])), rng), tree)
        tree.body.insert(tree.body.index(real) + 1, clone)
        last = by_file[rel][name][-1]
        ids = [f"{rel}::{clone.name}{_param(n)}" for n in by_file[rel][name]]
        extra[last] = extra[last] + ids
        sentinels.update(ids)
    for rel, tree in trees.items():  # every module re-rendered, planted or not, so none stands out
        (dest / rel).write_text(ast.unparse(ast.fix_missing_locations(tree)) + "\n", encoding="utf-8")
    nodeids: list[str] = []
    for nodeid in expected:
        nodeids.extend(extra.get(nodeid, [nodeid]))
    return Planted(dest, tuple(nodeids), frozenset(sentinels), renamed)


def tripped(planted: Planted, outcomes: dict[str, str]) -> list[str]:
    """Evidence lines for sentinels reported as passed (every correct solution fails them)."""
    return [f"sentinel test {nodeid} was reported as passed; it ends in a comparison that cannot hold"
            for nodeid in sorted(planted.sentinels) if outcomes.get(nodeid) == "passed"]
