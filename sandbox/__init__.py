"""Isolation backends behind one small API (see `sandbox.api`).

    from sandbox import get_backend, Mount, Limits
    result = get_backend("auto").run(["python3", "-c", "print(1)"], limits=Limits(wall_s=10))

`auto` picks the strongest backend that can run here: docker (when an engine answers and the
sandbox image is built), then bwrap, then process.
This package never imports `grader`.
"""
from __future__ import annotations

from importlib import import_module

from .api import Backend, BackendUnavailable, Device, Limits, Mount, RunResult, SandboxError

__all__ = [
    "Backend", "BackendUnavailable", "Device", "Limits", "Mount", "RunResult", "SandboxError",
    "BACKENDS", "get_backend", "available_backends",
]

# Strongest first; `auto` takes the first one whose unavailable_reason() is None.
BACKENDS: dict[str, str] = {
    "docker": "sandbox.docker_backend:DockerBackend",
    "bwrap": "sandbox.bwrap:BwrapBackend",
    "process": "sandbox.process:ProcessBackend",
}


def _make(name: str) -> Backend:
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(import_module(module), cls)()


def available_backends() -> dict[str, str | None]:
    """Each known backend with None when usable here, else the reason it is not."""
    return {name: _make(name).unavailable_reason() for name in BACKENDS}


def get_backend(name: str = "auto") -> Backend:
    """Return a ready backend by name, or raise BackendUnavailable with a one-line fix."""
    if name == "auto":
        for candidate in BACKENDS:
            backend = _make(candidate)
            if backend.unavailable_reason() is None:
                return backend
        raise BackendUnavailable("no sandbox backend can run here")
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}; choose from: auto, {', '.join(BACKENDS)}")
    backend = _make(name)
    reason = backend.unavailable_reason()
    if reason is not None:
        raise BackendUnavailable(f"backend {name!r} cannot run here: {reason}")
    return backend
