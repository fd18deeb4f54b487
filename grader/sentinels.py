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
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

PER_GRADING = 4  # sentinels planted per grading (at most one per module while modules last)

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
    nodeids: tuple[str, ...]  # every node id to run, real and sentinel, in file order
    sentinels: frozenset[str]


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


def plant(tests: Path, dest: Path, expected: list[str], rng: random.Random,
          count: int = PER_GRADING) -> Planted:
    """Copy tests to dest with `count` sentinels planted; expected is the real node ids, in run order."""
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
    eligible = {f: fns for f, fns in by_file.items() if f in trees}
    sources = "\n".join(ast.unparse(t) for t in trees.values())
    mechanisms = _mechanisms_used(sources)
    rng.shuffle(mechanisms)
    files = rng.sample(sorted(eligible), min(count, len(eligible))) if eligible else []
    while eligible and len(files) < count:  # more sentinels than modules: some modules get two
        files.append(rng.choice(sorted(eligible)))
    clones: dict[str, list[str]] = {}  # original node id of a function's last param -> sentinel ids
    sentinels: set[str] = set()
    for index, rel in enumerate(files):
        tree = trees[rel]
        functions = {node.name: node for node in tree.body
                     if isinstance(node, ast.FunctionDef) and node.name in eligible[rel] and not _leaves_early(node)}
        if not functions:
            continue
        original = functions[rng.choice(sorted(functions))]
        taken = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        clone = copy.deepcopy(original)
        clone.name = _new_name(taken, _words(sorted(functions)), rng)
        body = clone.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
            body = body[1:]  # the clone does not repeat its original's docstring
        clone.body = body + _failing_comparison(
            mechanisms[index % len(mechanisms)] if mechanisms else "assert", rng, _imported(tree))
        tree.body.insert(tree.body.index(original) + 1, clone)
        ids = [f"{rel}::{clone.name}{_split(n)[2]}" for n in eligible[rel][original.name]]  # type: ignore[index]
        clones.setdefault(eligible[rel][original.name][-1], []).extend(ids)
        sentinels.update(ids)
    for rel, tree in trees.items():  # every module re-rendered, planted or not, so none stands out
        (dest / rel).write_text(ast.unparse(ast.fix_missing_locations(tree)) + "\n", encoding="utf-8")
    nodeids: list[str] = []
    for nodeid in expected:
        nodeids.append(nodeid)
        nodeids.extend(clones.get(nodeid, []))
    return Planted(dest, tuple(nodeids), frozenset(sentinels))


def tripped(planted: Planted, outcomes: dict[str, str]) -> list[str]:
    """Evidence lines for sentinels reported as passed (every correct solution fails them)."""
    return [f"sentinel test {nodeid} was reported as passed; it ends in a comparison that cannot hold"
            for nodeid in sorted(planted.sentinels) if outcomes.get(nodeid) == "passed"]
