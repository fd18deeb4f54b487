"""The sandbox image's build context and staleness check (no engine needed); building and
checking a real image is what .ci/run does, and `mlgrade image check` is tested with docker."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sandbox import image

REPO = Path(__file__).resolve().parents[2]


def test_context_holds_the_dockerfile_the_lock_and_the_runtime_dependencies(tmp_path):
    (tmp_path / "ctx").mkdir()
    image.make_context(tmp_path / "ctx", gpu=False, wheelhouse=None)
    ctx = tmp_path / "ctx"
    assert sorted(p.name for p in ctx.iterdir()) == ["Dockerfile", "constraints.txt", "requirements.txt", "wheels"]
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert (ctx / "requirements.txt").read_text().splitlines() == deps  # not mlgrade itself
    assert (ctx / "constraints.txt").read_bytes() == (REPO / "constraints.txt").read_bytes()
    assert list((ctx / "wheels").iterdir()) == []
    dockerfile = (ctx / "Dockerfile").read_text()
    assert "ARG BASE=python:3.11-slim" in dockerfile and "-c /build/constraints.txt" in dockerfile
    assert "--no-index --find-links /build/wheels" in dockerfile and "USER 65534:65534" in dockerfile


def test_gpu_context_uses_the_gpu_dockerfile(tmp_path):
    image.make_context(tmp_path, gpu=True, wheelhouse=None)
    assert "ARG BASE=pytorch/pytorch:" in (tmp_path / "Dockerfile").read_text()


def test_wheelhouse_is_linked_in_and_must_hold_wheels(tmp_path):
    house = tmp_path / "house"
    house.mkdir()
    with pytest.raises(ValueError, match="no wheels"):
        image.make_context(tmp_path, gpu=False, wheelhouse=house)
    (house / "demo-1.0-py3-none-any.whl").write_bytes(b"wheel")
    (house / "notes.txt").write_text("ignored")
    (tmp_path / "ctx").mkdir()
    image.make_context(tmp_path / "ctx", gpu=False, wheelhouse=house)
    assert [p.name for p in (tmp_path / "ctx" / "wheels").iterdir()] == ["demo-1.0-py3-none-any.whl"]


def test_build_refuses_a_missing_wheelhouse(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        image.build(wheelhouse=tmp_path / "nope")


def test_inputs_hash_follows_the_lock(tmp_path):
    for name in ("pyproject.toml", "constraints.txt"):
        (tmp_path / name).write_bytes((REPO / name).read_bytes())
    before = image.inputs_hash(project=tmp_path)
    assert before == image.inputs_hash(project=REPO)
    assert image.inputs_hash(gpu=True, project=tmp_path) != before
    (tmp_path / "constraints.txt").write_text((REPO / "constraints.txt").read_text().replace("numpy==", "numpy==9"))
    assert image.inputs_hash(project=tmp_path) != before
    assert image.is_current({"Config": {"Labels": {image.INPUTS_LABEL: image.inputs_hash()}}})
    assert not image.is_current({"Config": {"Labels": {}}})
