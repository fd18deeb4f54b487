"""Submissions for round benchmarks: an exercise's reference and calibrations, and honest variants of
them (same behaviour, different bytes) so that a round has as many distinct candidates as asked.

Variants, each applied to every .py file of a submission:
- comments: a comment line before every top-level def and class;
- blank-lines: two extra blank lines after every top-level block, trailing spaces removed;
- renamed-locals: every local variable that a function assigns renamed (x -> x_v), consistently in
  the function and what it nests; parameters, globals, imports and attributes untouched; written
  back with ast.unparse (so comments go too).
"""
from __future__ import annotations

import ast
import builtins
import shutil
from pathlib import Path
from typing import Callable

VARIANTS = ("comments", "blank-lines", "renamed-locals")


def _comments(source: str) -> str:
    out = []
    for line in source.splitlines():
        if line.startswith(("def ", "class ", "async def ")):
            out.append(f"# {line.split('(')[0].split(':')[0].split()[-1]}: see below")
        out.append(line)
    return "\n".join(out) + "\n"


def _blank_lines(source: str) -> str:
    out = []
    for line in source.splitlines():
        if line.startswith(("def ", "class ", "async def ", "@")) and out and out[-1].strip() == "":
            out += ["", ""]
        out.append(line.rstrip())
    return "\n".join(out) + "\n"


class _Renamer(ast.NodeTransformer):
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id in self.names:
            node.id = f"{node.id}_v"
        return node

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.ExceptHandler:
        if node.name in self.names:
            node.name = f"{node.name}_v"
        self.generic_visit(node)
        return node


def _locals(func: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Names func assigns that are safe to rename everywhere inside it."""
    stored: set[str] = set()
    blocked: set[str] = set(dir(builtins))
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            stored.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            stored.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            blocked.update(node.names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            blocked.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            blocked.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not func:
            blocked.add(node.name)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("locals", "vars", "eval", "exec"):
            return set()
    return {name for name in stored - blocked if not name.startswith("__")}


def _renamed_locals(source: str) -> str:
    tree = ast.parse(source)
    taken = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names = {n for n in _locals(node) if f"{n}_v" not in taken}
            for statement in node.body:
                _Renamer(names).visit(statement)
    return ast.unparse(tree) + "\n"


REWRITES: dict[str, Callable[[str], str]] = {"comments": _comments, "blank-lines": _blank_lines,
                                             "renamed-locals": _renamed_locals}


def write_variant(src: Path, dest: Path, variant: str) -> None:
    """Copy submission src to dest with every .py file rewritten by variant."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path in sorted(dest.rglob("*.py")):
        path.write_text(REWRITES[variant](path.read_text()))


def originals(exercise) -> dict[str, Path]:
    """The reference and every calibration submission of exercise, by candidate id."""
    found = {"reference": exercise.reference}
    found.update({f"cal-{c.name}": exercise.calibration(c.name) for c in exercise.manifest.calibration})
    return found


def make_round(exercise, dest: Path, count: int) -> list[str]:
    """Write count distinct submissions into dest: the originals first, then the reference in every
    variant, then each calibration in one variant (turn by turn), then the rest; returns the ids."""
    base = originals(exercise)
    plan: list[tuple[str, str | None]] = [(name, None) for name in base]
    plan += [("reference", variant) for variant in VARIANTS]
    calibrations = [name for name in base if name != "reference"]
    turns = [(name, VARIANTS[(i + k) % len(VARIANTS)]) for k in range(len(VARIANTS))
             for i, name in enumerate(calibrations)]
    plan += list(dict.fromkeys(turns))
    if len(plan) < count:
        raise SystemExit(f"only {len(plan)} distinct submissions can be made for {exercise.id}")
    names = []
    for name, variant in plan[:count]:
        if variant is None:
            shutil.copytree(base[name], dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            names.append(name)
        else:
            write_variant(base[name], dest / f"{name}--{variant}", variant)
            names.append(f"{name}--{variant}")
    return names
