"""The `bwrap` backend: bubblewrap namespaces around the command.

Inside: new user, pid, ipc, uts, cgroup and network namespaces (only a loopback
interface), a read-only root built from the host's /usr (and its /bin, /lib... links),
a few files of /etc, the grader's Python prefixes read-only, fresh /proc and /dev,
size-capped tmpfs on /tmp and /dev/shm, and the caller's mounts. Everything else of the
host filesystem is absent. Limits come from the shared run loop (`sandbox._proc`).
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

from ._proc import check_mounts, command_env, run_limited
from .api import BackendUnavailable, Device, Limits, Mount, RunResult, SandboxError

SANDBOX_UID = 65534
HOSTNAME = "sandbox"
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What Python, torch and a shell need from /etc; passwd and group are generated instead.
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "nsswitch.conf", "hosts",
        "localtime", "os-release")
_PASSWD = (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
           f"nobody:x:{SANDBOX_UID}:{SANDBOX_UID}:nobody:/nonexistent:/usr/sbin/nologin\n")
_GROUP = f"root:x:0:\nnogroup:x:{SANDBOX_UID}:\n"
# Parts of /proc that are writable by the host uid's owner bits rather than by capability.
_PROC_READONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/pressure")
_USERNS = ["--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]

_probed: dict[str, tuple[str | None, bool]] = {}  # bwrap path -> (reason unusable, uid mapping works)


def _probe(bwrap: str) -> tuple[str | None, bool]:
    """Try bwrap once with, then without, the user-namespace uid mapping; cached per process."""
    if bwrap not in _probed:
        detail = ""
        for extra, userns in ((_USERNS, True), ([], False)):
            try:
                p = subprocess.run([bwrap, "--unshare-all", *extra, "--ro-bind", "/", "/", "true"],
                                   capture_output=True, text=True, timeout=30, env={})
            except (OSError, subprocess.TimeoutExpired) as e:
                detail = str(e)
                continue
            if p.returncode == 0:
                _probed[bwrap] = (None, userns)
                break
            detail = p.stderr.strip() or f"exit {p.returncode}"
        else:
            _probed[bwrap] = (f"bubblewrap cannot create namespaces here ({detail}); user namespaces are "
                              "probably disabled: allow them (sysctl user.max_user_namespaces, "
                              "kernel.unprivileged_userns_clone, or the AppArmor userns restriction)", False)
    return _probed[bwrap]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def python_roots() -> list[str]:
    """Host directories the grader's interpreter needs: venv and base prefixes, outside /usr."""
    roots = {os.path.abspath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    roots.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    kept: list[str] = []
    for root in sorted(roots):  # parents sort before their children
        if root != "/" and not _under(root, "/usr") and not any(_under(root, k) for k in kept):
            kept.append(root)
    return kept


def _system_args() -> list[str]:
    args: list[str] = []
    for path in [*_SYSTEM, *(f"/etc/{name}" for name in _ETC)]:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


class BwrapBackend:
    """Runs the command inside bubblewrap; see the module docstring for what is visible."""

    name = "bwrap"
    isolated = True

    def __init__(self, use_cgroups: bool = True) -> None:
        self.use_cgroups = use_cgroups
        self.bwrap = shutil.which("bwrap")

    def unavailable_reason(self) -> str | None:
        """None when bwrap runs here (probed once per process), else why not and how to fix it."""
        if self.bwrap is None:
            return "bubblewrap is not installed: apt-get install bubblewrap"
        return _probe(self.bwrap)[0]

    def python(self) -> list[str]:
        """The grader's own interpreter; its prefixes are mounted read-only at the same paths."""
        return [sys.executable]

    def build_argv(
        self,
        argv: Sequence[str],
        *,
        mounts: Sequence[Mount],
        env: dict[str, str],
        workdir: str,
        limits: Limits,
        device: Device,
        data_fds: tuple[int, int, int],
        nvidia_devices: Sequence[str] | None = None,
    ) -> list[str]:
        """The full bwrap command line. data_fds: (passwd fd, group fd, json status fd)."""
        assert self.bwrap is not None
        passwd_fd, group_fd, status_fd = data_fds
        userns = _probe(self.bwrap)[1]
        tmp_size = str(limits.memory_mb * 2**20)
        args = [self.bwrap, "--unshare-all", *(_USERNS if userns else []), "--die-with-parent",
                "--new-session", "--clearenv", "--hostname", HOSTNAME]
        args += _system_args()
        args += ["--perms", "0644", "--ro-bind-data", str(passwd_fd), "/etc/passwd",
                 "--perms", "0644", "--ro-bind-data", str(group_fd), "/etc/group"]
        # The sandbox user maps to the grader's host uid. Where that is root, procfs grants it
        # owner access to global sysctls (kernel.core_pattern: a host root escape), which
        # bwrap does not cover in that case; make them read-only.
        args += ["--proc", "/proc"]
        for path in _PROC_READONLY:
            args += ["--ro-bind-try", path, path]
        args += ["--dev", "/dev"]
        if device == "cuda":
            devices = sorted(glob.glob("/dev/nvidia*")) if nvidia_devices is None else list(nvidia_devices)
            for dev in devices:
                args += ["--dev-bind", dev, dev]
            args += ["--ro-bind", "/sys", "/sys"]  # the CUDA driver and NVML read PCI topology there
        args += ["--perms", "1777", "--size", tmp_size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
                 "--perms", "1777", "--size", tmp_size, "--tmpfs", "/tmp"]
        for root in python_roots():  # after /tmp's tmpfs: a checkout under /tmp must stay visible
            args += ["--ro-bind", root, root]
        for mount in mounts:
            args += ["--bind" if mount.writable else "--ro-bind", str(mount.source), mount.target]
        args += ["--remount-ro", "/"]
        for key, value in env.items():
            args += ["--setenv", key, value]
        args += ["--chdir", workdir, "--json-status-fd", str(status_fd), "--", *argv]
        return args

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
        """Run argv inside bubblewrap; see `sandbox.api.Backend.run`."""
        reason = self.unavailable_reason()
        if reason is not None:
            raise BackendUnavailable(f"backend 'bwrap' cannot run here: {reason}")
        if not argv:
            raise SandboxError("empty argv")
        check_mounts(mounts)
        userns = _probe(self.bwrap or "")[1]
        uid = f"{SANDBOX_UID} in a user namespace, host uid {os.getuid()}" if userns else f"host uid {os.getuid()}"
        passwd_fd, group_fd = _data_pipe(_PASSWD), _data_pipe(_GROUP)
        status_r, status_w = os.pipe()  # bwrap reports {"exit-code": N} here only if the command ran
        try:
            full = self.build_argv(argv, mounts=mounts, env=command_env(env), workdir=workdir,
                                   limits=limits, device=device, data_fds=(passwd_fd, group_fd, status_w))
            result = run_limited(
                full, env={}, cwd="/", stdin=stdin, limits=limits, backend=self.name, isolated=True,
                pass_fds=(passwd_fd, group_fd, status_w), use_cgroups=self.use_cgroups,
                rlimit_as=device != "cuda", enforced=["tmpfs:size"], details={"device": device, "uid": uid},
            )
        finally:
            for fd in (passwd_fd, group_fd, status_w):
                os.close(fd)
        try:
            os.set_blocking(status_r, False)  # a bwrap that survived SIGKILL could still hold the write end
            ran = b'"exit-code"' in _read_available(status_r)
        finally:
            os.close(status_r)
        if not ran and not result.timed_out:
            _setup_failure(result)
        return result


def _data_pipe(text: str) -> int:
    """A pipe's read end already holding text (small, so writing cannot block)."""
    read, write = os.pipe()
    try:
        os.write(write, text.encode())
    finally:
        os.close(write)
    return read


def _read_available(fd: int) -> bytes:
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    return data


def _setup_failure(result: RunResult) -> None:
    """bwrap exited before the command could report an exit code: a missing command or a setup error."""
    line = next((s for s in result.stderr.splitlines() if s.startswith("bwrap: ")), "")
    if line.startswith("bwrap: execvp "):
        result.exit_code = 127 if "No such file" in line else 126  # as a shell reports it
    elif result.oom_killed:
        return
    else:
        raise SandboxError(f"bubblewrap failed to set up the sandbox: {line or result.stderr.strip()[-500:]}")
