"""The `process` backend: a plain child process. No isolation; the last resort.

The command sees the whole host filesystem and network with the grader's uid. What it
gets: an environment of exactly what the caller gave, its own session (process group)
that is SIGKILLed at the deadline, a per-run cgroup where one is writable, and rlimits.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ._proc import check_mounts, command_env, run_limited
from .api import Device, Limits, Mount, RunResult, SandboxError


def _rewrite(value: str, mounts: Sequence[Mount]) -> str:
    """Replace a leading mount target in `value` by the mount's source (longest target first)."""
    for mount in sorted(mounts, key=lambda m: len(m.target), reverse=True):
        target = mount.target.rstrip("/") or "/"
        if value == target:
            return str(mount.source)
        prefix = target if target.endswith("/") else target + "/"
        if value.startswith(prefix):
            return os.path.join(str(mount.source), value[len(prefix):])
    return value


class ProcessBackend:
    """Runs the command as an ordinary child process; mounts become path rewrites."""

    name = "process"
    isolated = False

    def __init__(self, use_cgroups: bool = True) -> None:
        self.use_cgroups = use_cgroups

    def unavailable_reason(self) -> str | None:
        """Always None: a child process can run anywhere."""
        return None

    def python(self) -> list[str]:
        """The grader's own interpreter, which has the project's packages."""
        return [sys.executable]

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
        """Run argv with target paths rewritten to sources; see `sandbox.api.Backend.run`."""
        if not argv:
            raise SandboxError("empty argv")
        check_mounts(mounts)
        cwd = _rewrite(workdir, mounts)
        if not os.path.isdir(cwd):
            raise SandboxError(f"workdir does not exist: {workdir} (host path {cwd})")
        return run_limited(
            [_rewrite(a, mounts) for a in argv],
            env={k: _rewrite(v, mounts) for k, v in command_env(env).items()},
            cwd=cwd,
            stdin=stdin,
            limits=limits,
            backend=self.name,
            isolated=False,
            use_cgroups=self.use_cgroups,
            rlimit_as=device != "cuda",
            details={"device": device},
        )
