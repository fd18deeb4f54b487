"""`mlgrade new ID --from TEMPLATE`: exercises/ID and reference/ID from a template, all or nothing.

Each folder is rendered in a staging folder inside the parent it goes to (a rename, never a
cross-device copy), the exercise is loaded to prove its manifest parses, then both are renamed
into place; any failure removes what was moved and staged, so no half-written exercise is left.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..checks.base import SLUG
from ..errors import BadInput, InfraError
from ..exercises import home, load_exercise
from ..outdir import shown
from .templates import find_template, render

STAGING_PREFIX = ".mlgrade-new-"


@dataclass(frozen=True)
class Scaffolded:
    exercise: Path
    reference: Path


def check_new_id(exercise_id: str, base: Path) -> None:
    """Refuse an id that is not a slug or is taken (by an exercise or by a reference folder)."""
    if not re.fullmatch(SLUG, exercise_id):
        raise BadInput(f"exercise id {shown(exercise_id)}: use lower-case letters, digits and '-', "
                       "starting with a letter or digit")
    for part in ("exercises", "reference"):
        if os.path.lexists(base / part / exercise_id):
            raise BadInput(f"exercise {exercise_id} already exists: {shown(base / part / exercise_id)}; "
                           "pick another id")


def new_exercise(exercise_id: str, template_name: str) -> Scaffolded:
    """Scaffold exercises/<id> and reference/<id> under the exercises home from a template."""
    template = find_template(template_name)
    base = home()
    if not base.is_dir():
        raise BadInput(f"exercises home {shown(base)} is not a folder (set MLGRADE_HOME to one)")
    check_new_id(exercise_id, base)
    parts = {"exercise": base / "exercises", "reference": base / "reference"}
    created: list[Path] = []  # parents this command made, removed again on failure
    staged: list[Path] = []   # staging folders, each inside the parent it is renamed into (no cross-device move)
    moved: list[Path] = []
    try:
        for parent in parts.values():
            if not parent.is_dir():
                parent.mkdir()
                created.append(parent)
        for part, parent in parts.items():
            staged.append(Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent)))
            render(template, part, staged[-1] / exercise_id, exercise_id)
        load_exercise(str(staged[0] / exercise_id))  # the rendered manifest parses and names the id
        for staging, parent in zip(staged, parts.values()):
            dest = parent / exercise_id
            if os.path.lexists(dest):  # appeared since the check: never rename over it
                raise BadInput(f"exercise {exercise_id} already exists: {shown(dest)}; pick another id")
            os.rename(staging / exercise_id, dest)
            moved.append(dest)
    except BaseException as exc:
        for path in [*moved, *staged]:
            shutil.rmtree(path, ignore_errors=True)
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise InfraError(f"cannot write exercise {exercise_id} under {shown(base)}: "
                             f"{exc.strerror or exc}") from None
        raise
    for staging in staged:
        shutil.rmtree(staging, ignore_errors=True)
    return Scaffolded(exercise=parts["exercise"] / exercise_id, reference=parts["reference"] / exercise_id)
