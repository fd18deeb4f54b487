"""The sandbox API: what a caller asks for and what it gets back.

The sandbox package knows nothing about grading. A caller describes one command to run
(argv, mounts, environment, limits, device) and receives a `RunResult`. Backends
(`bwrap`, `process`, later `docker`) implement `Backend.run` with the same meaning.

Paths: inside an isolating backend each `Mount` appears at its `target`. The `process`
backend cannot remap paths, so it rewrites every argv entry, env value and the workdir
that starts with a mount's target to the mount's source instead. Callers therefore
always speak in target paths.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, Sequence

Device = Literal["cpu", "cuda"]


class SandboxError(Exception):
    """Infrastructure failure: the sandbox itself could not run the command."""


class BackendUnavailable(SandboxError):
    """The requested backend cannot run on this host (the message says how to fix it)."""


@dataclass(frozen=True)
class Mount:
    """A host path made visible inside the sandbox."""

    source: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class Limits:
    """Resource limits for one run. Sizes are in MiB unless named otherwise."""

    wall_s: float = 60.0
    cpus: int = 1
    memory_mb: int = 2048
    pids: int = 256
    output_bytes: int = 256 * 1024  # per stream, stdout and stderr each
    file_size_mb: int = 64
    nofile: int = 1024


@dataclass
class RunResult:
    """What came back from one sandboxed command."""

    backend: str
    exit_code: int | None  # None when killed before it exited by itself
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    oom_killed: bool
    wall_s: float
    peak_memory_mb: float | None = None  # None where the backend cannot know
    isolated: bool = True  # False only for the `process` backend
    enforced: list[str] = field(default_factory=list)  # limits actually in force, e.g. "memory:cgroup"
    details: dict[str, str] = field(default_factory=dict)  # backend facts worth reporting (image id, ...)


class Backend(Protocol):
    """One isolation technology. Instances are cheap; `run` may be called many times."""

    name: str
    isolated: bool

    def unavailable_reason(self) -> str | None:
        """None when this backend can run here, else one line saying why not and how to fix it."""

    def python(self) -> list[str]:
        """argv prefix that starts a Python interpreter with the project's packages inside the sandbox."""

    def run(
        self,
        argv: Sequence[str],
        *,
        mounts: Sequence[Mount] = (),
        env: dict[str, str] | None = None,
        workdir: str = "/",
        limits: Limits = Limits(),
        device: Device = "cpu",
        stdin: bytes | None = None,
    ) -> RunResult:
        """Run argv to completion (or until a limit ends it) and return what happened.

        stdin, when given, is written to the command's standard input, which is then closed
        (no stdin at all otherwise). Raises SandboxError only when the sandbox itself failed; a command that crashes,
        times out or runs out of memory is a normal RunResult.
        """
