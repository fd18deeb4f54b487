"""Finding exercises on disk: `exercises/<id>/` beside `reference/<id>/`."""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .errors import BadInput
from .manifest import Manifest, load_manifest, tree_hash

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def home() -> Path:
    """The folder holding exercises/ and reference/ (MLGRADE_HOME overrides the checkout)."""
    return Path(os.environ.get("MLGRADE_HOME", PROJECT_ROOT))


@dataclass(frozen=True)
class Exercise:
    root: Path
    manifest: Manifest

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def brief(self) -> Path:
        return self.root / "README.md"

    @property
    def starter(self) -> Path:
        return self.root / "starter"

    @property
    def tests(self) -> Path:
        return self.root / "tests"

    @property
    def reference(self) -> Path:
        return self.root.parent.parent / "reference" / self.id

    def calibration(self, name: str) -> Path:
        return self.root / "calibration" / name

    @cached_property
    def version_hash(self) -> str:
        """sha256 of everything that decides a score: manifest, starter and tests."""
        return tree_hash(self.root / "exercise.toml", self.starter, self.tests)


def load_exercise(name: str) -> Exercise:
    """An exercise by id (under home()/exercises) or by a path to its folder."""
    candidate = Path(name)
    root = candidate if (candidate / "exercise.toml").is_file() else home() / "exercises" / name
    if not (root / "exercise.toml").is_file():
        known = ", ".join(all_exercise_ids()) or "none"
        raise BadInput(f"unknown exercise {name!r} (known: {known})")
    manifest = load_manifest(root / "exercise.toml")
    for needed in ("README.md", "starter", "tests"):
        if not (root / needed).exists():
            raise BadInput(f"{root}: missing {needed}")
    exercise = Exercise(root=root.resolve(), manifest=manifest)
    from .hints import vet_hints  # here, not at the top: it needs the index of hidden text (numpy)
    vet_hints(exercise)  # a hint that names no test or reveals hidden material is refused here
    return exercise


def all_exercise_ids() -> list[str]:
    base = home() / "exercises"
    return sorted(p.parent.name for p in base.glob("*/exercise.toml")) if base.is_dir() else []
