"""docs/exercise-format.md's walk-through, run as written: every `sh` block of its section, in order,
in an empty MLGRADE_HOME, with `mlgrade` on PATH (pinned to bwrap, or the process backend where
bwrap cannot run outside CI). Then what it promises: the output lines it shows, the calibration
entry, the kit. Also: every template validates as it is scaffolded (reference 100%, starter 0%).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from grader.authoring.templates import all_templates
from sandbox import available_backends
from tests.conftest import PROJECT

DOC = PROJECT / "docs" / "exercise-format.md"
SECTION = "## Walk-through: adding an exercise"
BACKEND = "bwrap" if available_backends().get("bwrap") is None or os.environ.get("CI") == "true" else "process"
SHIM = """#!/bin/bash
# mlgrade for the walk-through: this checkout's, with the backend pinned where the command takes one
command="$1"; shift
case "$command" in
    validate|calibrate|grade) exec {python} -m grader "$command" --backend {backend} "$@" ;;
    *) exec {python} -m grader "$command" "$@" ;;
esac
"""


def walkthrough() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:end if end != -1 else len(text)]


def blocks(section: str, info: str) -> list[str]:
    return re.findall(rf"^```{info}\n(.*?)^```$", section, flags=re.M | re.S)


def shimmed_env(tmp: Path, home: Path) -> dict[str, str]:
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "mlgrade"
    shim.write_text(SHIM.format(python=sys.executable, backend=BACKEND))
    shim.chmod(0o755)
    return dict(os.environ, MLGRADE_HOME=str(home), PATH=f"{bin_dir}:{os.environ['PATH']}")


@pytest.mark.slow
def test_walkthrough_runs_as_written(tmp_path: Path) -> None:
    section = walkthrough()
    commands, expected = blocks(section, "sh"), blocks(section, "text")
    assert len(commands) >= 7 and len(expected) >= 3  # scaffold, edit, validate, copy, calibrate, validate, kit
    home = tmp_path / "home"
    home.mkdir()  # an empty home: no exercises, no reference
    script = "set -euo pipefail\n" + "\n".join(commands)
    run = subprocess.run(["bash", "-c", script], cwd=home, env=shimmed_env(tmp_path, home), capture_output=True,
                         text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    printed = run.stdout.splitlines()
    for block in expected:  # the output the doc shows is what was printed
        for line in block.splitlines():
            assert line in printed, (line, run.stdout)

    exercise = home / "exercises" / "accuracy"
    manifest = tomllib.loads((exercise / "exercise.toml").read_text())
    assert manifest["title"] == "Accuracy of a classifier"
    [entry] = manifest["calibration"]
    assert entry == {"name": "empty-input", "band": [80, 90], "checks": ["edge-cases"],
                     "flaw": "An empty input scores 0.0 instead of raising ValueError."}
    # The doc's TOML excerpt is the appended text, and it closes the manifest.
    [excerpt] = [b for b in blocks(section, "toml") if "[[calibration]]" in b]
    assert (exercise / "exercise.toml").read_text().endswith("\n\n" + excerpt)
    flawed = (exercise / "calibration" / "empty-input" / "metrics.py").read_text()
    reference = (home / "reference" / "accuracy" / "metrics.py").read_text()
    assert "return 0.0" in flawed and flawed != reference
    assert sorted(p.name for p in home.iterdir()) == ["accuracy-kit", "exercises", "reference"]  # copy removed

    kit = home / "accuracy-kit"
    files = sorted(p.relative_to(kit).as_posix() for p in kit.rglob("*") if p.is_file())
    assert files == ["README.md", "metrics.py", "self_check.py", "tests/public/test_basics.py"]
    assert (kit / "README.md").read_text() == (exercise / "README.md").read_text()
    assert (kit / "README.md").read_text().startswith("# Accuracy\n")
    # A candidate who writes the reference passes the kit's self-check; the starter does not.
    check = [sys.executable, "self_check.py"]
    assert subprocess.run(check, cwd=kit, capture_output=True, timeout=120).returncode != 0
    shutil.copy2(home / "reference" / "accuracy" / "metrics.py", kit / "metrics.py")
    passed = subprocess.run(check, cwd=kit, capture_output=True, text=True, timeout=120)
    assert passed.returncode == 0 and "2 passed" in passed.stdout, passed.stdout


@pytest.mark.parametrize("template", [t.name for t in all_templates()])
def test_every_template_validates_as_scaffolded(tmp_path: Path, template: str) -> None:
    env = dict(os.environ, MLGRADE_HOME=str(tmp_path))
    mlgrade = [sys.executable, "-m", "grader"]
    made = subprocess.run([*mlgrade, "new", "fresh", "--from", template], env=env, capture_output=True, text=True,
                          timeout=120)
    assert made.returncode == 0, made.stderr
    ran = subprocess.run([*mlgrade, "validate", "fresh", "--backend", BACKEND, "--repeat", "2"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, (ran.stdout, ran.stderr)
    assert ran.stdout.strip() == "fresh (reference 100.0%, starter 0.0%) valid"
    readme = (tmp_path / "exercises" / "fresh" / "README.md").read_text()
    manifest = (tmp_path / "exercises" / "fresh" / "exercise.toml").read_text()
    assert "TODO" in readme and "TODO" in manifest and 'id = "fresh"' in manifest  # marked for the hiring team
    assert not list(tmp_path.rglob("*.tmpl")) and not list(tmp_path.rglob(".mlgrade-new-*"))
