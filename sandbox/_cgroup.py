"""Per-run cgroups: memory, pids and cpu limits, peak memory and OOM-kill counts.

cgroup v2 is used when our own cgroup can delegate the memory controller to a child;
otherwise each cgroup v1 controller (memory, pids, cpu) that is mounted and writable is
used on its own. Every run gets fresh child cgroups named `mlgrade-<random>` under the
grader's own cgroup, which `RunCgroup.remove` kills and deletes.
"""
from __future__ import annotations

import os
import re
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from .api import Limits

_CONTROLLERS = ("memory", "pids", "cpu")
_CPU_PERIOD_US = 100_000


def _unescape(path: str) -> str:
    # /proc/self/mountinfo writes space, tab, newline and backslash as \ooo
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), path)


def _mounts() -> dict[str, tuple[str, str]]:
    """Controller ("" for the v2 hierarchy) -> (mount point, root of the mounted subtree)."""
    found: dict[str, tuple[str, str]] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        root, point = _unescape(fields[3]), _unescape(fields[4])
        if rest[0] == "cgroup2":
            found.setdefault("", (point, root))
        elif rest[0] == "cgroup":
            for opt in rest[2].split(","):
                if opt in _CONTROLLERS:
                    found.setdefault(opt, (point, root))
    return found


def _own() -> dict[str, str]:
    """Controller ("" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            own[name] = path
    return own


def _own_dir(key: str, mounts: dict[str, tuple[str, str]], own: dict[str, str]) -> Path | None:
    if key not in mounts or key not in own:
        return None
    point, root = mounts[key]
    path = own[key]
    if root != "/":
        if path != root and not path.startswith(root + "/"):
            return None
        path = path[len(root):]
    directory = Path(point) / path.lstrip("/")
    return directory if directory.is_dir() else None


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _counter(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class RunCgroup:
    """The cgroup directories of one run (one per v1 controller, or a single v2 one)."""

    version: str  # "v1" or "v2"
    dirs: dict[str, Path]  # controller -> directory; v2 uses the key ""
    enforced: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, limits: Limits) -> RunCgroup | None:
        """Create and configure this run's cgroups, or return None where none is usable."""
        name = "mlgrade-" + secrets.token_hex(6)
        try:
            mounts, own = _mounts(), _own()
        except OSError:
            return None
        return cls._create_v2(name, limits, mounts, own) or cls._create_v1(name, limits, mounts, own)

    @classmethod
    def _create_v2(cls, name: str, limits: Limits, mounts: dict, own: dict) -> RunCgroup | None:
        parent = _own_dir("", mounts, own)
        if parent is None:
            return None
        try:
            available = set((parent / "cgroup.controllers").read_text().split())
            wanted = [c for c in _CONTROLLERS if c in available]
            if "memory" not in wanted:
                return None
            enabled = set((parent / "cgroup.subtree_control").read_text().split())
            missing = [c for c in wanted if c not in enabled]
            if missing:
                # Fails (EBUSY) when our own cgroup holds processes: the "no internal processes" rule.
                _write(parent / "cgroup.subtree_control", " ".join("+" + c for c in missing))
            d = parent / name
            d.mkdir()
        except OSError:
            return None
        group = cls("v2", {"": d})
        try:
            _write(d / "memory.max", str(limits.memory_mb * 2**20))
            group.enforced.append("memory:cgroup-v2")
            if (d / "memory.swap.max").exists():
                _write(d / "memory.swap.max", "0")
                group.enforced.append("swap:cgroup-v2")
            if "pids" in wanted:
                _write(d / "pids.max", str(limits.pids))
                group.enforced.append("pids:cgroup-v2")
            if "cpu" in wanted:
                _write(d / "cpu.max", f"{limits.cpus * _CPU_PERIOD_US} {_CPU_PERIOD_US}")
                group.enforced.append("cpu:cgroup-v2")
        except OSError:
            group.remove()
            return None
        return group

    @classmethod
    def _create_v1(cls, name: str, limits: Limits, mounts: dict, own: dict) -> RunCgroup | None:
        group = cls("v1", {})
        for controller in _CONTROLLERS:
            parent = _own_dir(controller, mounts, own)
            if parent is None:
                continue
            d = parent / name
            try:
                d.mkdir()
            except OSError:
                continue
            try:
                group.enforced += _configure_v1(controller, d, limits)
                group.dirs[controller] = d
            except (OSError, ValueError):
                try:
                    d.rmdir()
                except OSError:
                    pass
        return group if group.dirs else None

    def procs_files(self) -> list[bytes]:
        """The cgroup.procs files a new process must write its pid to, as bytes paths."""
        return [os.fsencode(d / "cgroup.procs") for d in self.dirs.values()]

    def pids(self) -> set[int]:
        """Live processes in this run's cgroups (zombies are not listed)."""
        pids: set[int] = set()
        for d in self.dirs.values():
            try:
                pids.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return pids

    def kill(self) -> None:
        """SIGKILL every process in the cgroups, repeating while new ones appear."""
        if self.version == "v2" and (self.dirs[""] / "cgroup.kill").exists():
            try:
                _write(self.dirs[""] / "cgroup.kill", "1")
            except OSError:
                pass
        # v1 has no atomic kill: repeat until empty (forks are bounded by pids.max where set).
        for _ in range(200):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.005)

    def peak_memory_mb(self) -> float | None:
        """Highest memory use of the run (v1 includes page cache), or None if unknown."""
        if self.version == "v2":
            path = self.dirs[""] / "memory.peak"
        elif "memory" in self.dirs:
            path = self.dirs["memory"] / "memory.max_usage_in_bytes"
        else:
            return None
        try:
            return int(path.read_text()) / 2**20
        except (OSError, ValueError):
            return None

    def oom_kills(self) -> int:
        """How many processes the kernel OOM killer ended inside this run's memory cgroup."""
        if self.version == "v2":
            return _counter(self.dirs[""] / "memory.events", "oom_kill")
        if "memory" in self.dirs:
            return _counter(self.dirs["memory"] / "memory.oom_control", "oom_kill")
        return 0

    def remove(self) -> list[str]:
        """Kill what is left and delete the cgroups; returns directories that could not be removed."""
        self.kill()
        left: list[str] = []
        for d in self.dirs.values():
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY while a killed process is still exiting
                    self.kill()
                    time.sleep(0.01)
            else:
                left.append(str(d))
        return left


def _configure_v1(controller: str, d: Path, limits: Limits) -> list[str]:
    if controller == "memory":
        limit = str(limits.memory_mb * 2**20)
        _write(d / "memory.limit_in_bytes", limit)
        enforced = ["memory:cgroup-v1"]
        try:  # memory+swap; only present with swap accounting, must be set after the memory limit
            _write(d / "memory.memsw.limit_in_bytes", limit)
            enforced.append("swap:cgroup-v1")
        except OSError:
            pass
        return enforced
    if controller == "pids":
        _write(d / "pids.max", str(limits.pids))
        return ["pids:cgroup-v1"]
    period = int((d / "cpu.cfs_period_us").read_text())
    _write(d / "cpu.cfs_quota_us", str(limits.cpus * period))
    return ["cpu:cgroup-v1"]
