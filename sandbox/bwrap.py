"""The `bwrap` backend: bubblewrap namespaces around the command.

Inside: new user, pid, ipc, uts, cgroup and network namespaces (only a loopback
interface), a read-only root built from the host's /usr (and its /bin, /lib... links),
a few files of /etc, the grader's Python prefixes read-only, fresh /proc and /dev,
size-capped tmpfs on /tmp and /dev/shm, and the caller's mounts (bwrap binds them nosuid,
nodev). Everything else of the host filesystem is absent. The command runs under the
seccomp profile `sandbox/seccomp.json` where libseccomp is there (`sandbox._seccomp`).
Limits come from the shared run loop (`sandbox._proc`).

Which host uid the sandbox uid 65534 is depends on who runs the grader:

- Not root: bwrap maps 65534 inside to the grader's own uid, and nested user namespaces
  are disabled (`--disable-userns`).
- Root, with the seccomp profile and util-linux `setpriv` available ("unprivileged-host"
  mode): the command runs as host uid/gid 65534, so what it writes to a writable mount
  belongs to nobody on the host. bwrap itself must stay root: it resolves the mount
  sources, which the grader keeps in mode 0700 temporary folders (and its interpreter may
  live under /root), before it drops anything; started as uid 65534 it could not reach
  them, and bwrap 0.8's `--bind-fd` resolves its fd back to the path, so handing it open
  descriptors does not help. Instead bwrap creates the user namespace and waits
  (`--userns-block-fd`) while the grader, as root, writes its id maps: 0 -> host 0 (bwrap's
  own set-up process, which needs inside-root for the devpts mount and its files) and
  65534 -> host 65534. The command bwrap execs is `setpriv`, holding only CAP_SETUID,
  CAP_SETGID and CAP_SETPCAP: it switches to 65534:65534 with no supplementary groups,
  clears the inheritable and bounding sets, and execs the real command with no capability
  left (and no_new_privs, which bwrap always sets). bwrap refuses `--disable-userns`
  together with `--userns-block-fd`; the seccomp profile refuses every way to a new user
  namespace instead (unshare, setns, clone with namespace flags, clone3), which is why this
  mode needs it.
- Root without libseccomp or `setpriv`: as for a non-root grader, so the sandbox uid is host
  root (the run's details say which).
"""
from __future__ import annotations

import glob
import json
import os
import select
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from . import _seccomp
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
# Unprivileged-host mode (see the module docstring): the id maps the grader writes, the
# capabilities bwrap leaves to setpriv, and setpriv's switch to the sandbox user.
_ID_MAP = f"0 0 1\n{SANDBOX_UID} {SANDBOX_UID} 1\n"
_SETPRIV_CAPS = ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                 "--cap-add", "CAP_SETPCAP"]
_SETPRIV_ARGS = ["--reuid", str(SANDBOX_UID), "--regid", str(SANDBOX_UID), "--clear-groups",
                 "--inh-caps=-all", "--bounding-set=-all", "--"]
_MAP_WAIT_S = 30.0  # for bwrap to report the pid whose ids we map

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
    args: list[str] = ["--perms", "0755", "--dir", "/etc"]
    for path in [*_SYSTEM, *(f"/etc/{name}" for name in _ETC)]:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


def _setpriv() -> str | None:
    """util-linux setpriv, where the sandbox sees it too (under /usr or /bin, which are bound)."""
    path = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if path is None or not any(_under(os.path.realpath(path), root) for root in ("/usr", "/bin", "/sbin")):
        return None
    return path


class _Parents:
    """Makes the missing parent folders of bind targets, mode 0755.

    bwrap creates missing parents itself with mode 0700, owned by its own uid: fine where the
    command has that uid too, but in unprivileged-host mode (bwrap root, the command 65534)
    the command could not reach /mlgrade/... or the interpreter under /root.
    """

    def __init__(self) -> None:
        self.present = {"/", "/etc", "/proc", "/dev", "/dev/shm", "/tmp"}
        self.bound: list[str] = [p for p in _SYSTEM if os.path.lexists(p)]

    def before_bind(self, target: str) -> list[str]:
        args: list[str] = []
        parts = os.path.normpath(target).split("/")[1:-1]
        for i in range(len(parts)):
            parent = "/" + "/".join(parts[: i + 1])
            if any(_under(parent, b) for b in self.bound):
                break  # inside a bound host folder: nothing to make there
            if parent not in self.present:
                args += ["--perms", "0755", "--dir", parent]
                self.present.add(parent)
        self.bound.append(os.path.normpath(target))
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

    def unprivileged_host(self) -> tuple[str | None, str]:
        """(setpriv path, why) where runs use unprivileged-host mode, else (None, why not)."""
        if os.geteuid() != 0:
            return None, f"the grader is not root: the sandbox uid is its host uid {os.getuid()}"
        if not _probe(self.bwrap or "")[1]:
            return None, "bwrap cannot create a user namespace here"
        reason = _seccomp.unavailable_reason()
        if reason is not None:
            return None, f"no seccomp filter to refuse nested user namespaces ({reason})"
        setpriv = _setpriv()
        if setpriv is None:
            return None, "util-linux setpriv is not installed under /usr"
        return setpriv, "grader is root: bwrap maps the sandbox uid to host uid 65534 and setpriv switches to it"

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
        seccomp_fd: int | None = None,
        userns_fds: tuple[int, int] | None = None,
        setpriv: str | None = None,
    ) -> list[str]:
        """The full bwrap command line. data_fds: (passwd fd, group fd, json status fd).

        seccomp_fd: a BPF program for `--seccomp`. userns_fds (info fd, block fd) and setpriv,
        both or neither: unprivileged-host mode, in which bwrap writes its child's pid to the
        info fd and waits on the block fd until the grader has written the id maps.
        """
        assert self.bwrap is not None
        assert (userns_fds is None) == (setpriv is None)
        passwd_fd, group_fd, status_fd = data_fds
        userns = _probe(self.bwrap)[1]
        tmp_size = str(limits.memory_mb * 2**20)
        if userns_fds is not None:
            # No --uid/--gid: bwrap's own ids stay root inside (0 -> host 0), setpriv switches.
            users = ["--unshare-user", *_SETPRIV_CAPS, "--info-fd", str(userns_fds[0]),
                     "--userns-block-fd", str(userns_fds[1])]
        else:
            users = [*(_USERNS if userns else []), "--cap-drop", "ALL"]
        args = [self.bwrap, "--unshare-all", *users, "--die-with-parent", "--new-session", "--clearenv",
                "--hostname", HOSTNAME]
        args += _system_args()
        args += ["--perms", "0644", "--ro-bind-data", str(passwd_fd), "/etc/passwd",
                 "--perms", "0644", "--ro-bind-data", str(group_fd), "/etc/group"]
        # Where the sandbox user is host root (a root grader without unprivileged-host mode),
        # procfs grants it owner access to global sysctls (kernel.core_pattern: a host root
        # escape), which bwrap does not cover in that case; make them read-only in every mode.
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
        parents = _Parents()
        for root in python_roots():  # after /tmp's tmpfs: a checkout under /tmp must stay visible
            args += [*parents.before_bind(root), "--ro-bind", root, root]
        for mount in mounts:  # bwrap binds are nosuid and nodev (--dev-bind aside)
            args += [*parents.before_bind(mount.target),
                     "--bind" if mount.writable else "--ro-bind", str(mount.source), mount.target]
        args += ["--remount-ro", "/"]
        for key, value in env.items():
            args += ["--setenv", key, value]
        if seccomp_fd is not None:
            args += ["--seccomp", str(seccomp_fd)]
        args += ["--chdir", workdir, "--json-status-fd", str(status_fd), "--"]
        if setpriv is not None:
            args += [setpriv, *_SETPRIV_ARGS]
        return args + list(argv)

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
        setpriv, why = self.unprivileged_host()
        if setpriv is not None:
            _check_access(mounts)
            uid = f"{SANDBOX_UID} in a user namespace, host uid {SANDBOX_UID} ({why})"
        elif userns:
            uid = f"{SANDBOX_UID} in a user namespace, host uid {os.getuid()} ({why})"
        else:
            uid = f"host uid {os.getuid()} ({why})"
        details = {"device": device, "uid": uid}
        enforced = ["tmpfs:size"]
        try:
            bpf: bytes | None = _seccomp.bpf_program()
            enforced.append(_seccomp.LABEL)
        except _seccomp.SeccompUnavailable as exc:
            bpf = None
            details["seccomp"] = f"not applied: {exc}"
        ours: list[int] = []  # the grader's ends
        theirs: list[int] = []  # bwrap's, closed here once bwrap has started
        try:
            passwd_fd, group_fd = _data_pipe(_PASSWD.encode()), _data_pipe(_GROUP.encode())
            theirs += [passwd_fd, group_fd]
            seccomp_fd = None if bpf is None else _data_pipe(bpf)
            if seccomp_fd is not None:
                theirs.append(seccomp_fd)
            status_fd, status_w = os.pipe()  # bwrap reports {"exit-code": N} here only if the command ran
            ours.append(status_fd)
            theirs.append(status_w)
            userns_fds: tuple[int, int] | None = None
            on_start: Callable[[subprocess.Popen], None] | None = None
            if setpriv is not None:
                # bwrap writes its child's pid to info and waits on block until the maps are written.
                # Only bwrap's monitor process closes block: the command inherits that read end,
                # inert by then (the write end is closed before the command starts: reads give EOF).
                info_r, info_fd = os.pipe()
                block_fd, block_w = os.pipe()
                ours += [info_r, block_w]
                theirs += [info_fd, block_fd]
                userns_fds = (info_fd, block_fd)

                def map_then_release(proc: subprocess.Popen) -> None:
                    while theirs:  # bwrap has its copies; ours of info must go for EOF there
                        os.close(theirs.pop())
                    _map_ids(info_r, block_w, min(_MAP_WAIT_S, limits.wall_s))
                    ours.remove(block_w)
                    os.close(block_w)

                on_start = map_then_release

            full = self.build_argv(argv, mounts=mounts, env=command_env(env), workdir=workdir, limits=limits,
                                   device=device, data_fds=(passwd_fd, group_fd, status_w), seccomp_fd=seccomp_fd,
                                   userns_fds=userns_fds, setpriv=setpriv)
            result = run_limited(
                full, env={}, cwd="/", stdin=stdin, limits=limits, backend=self.name, isolated=True,
                pass_fds=tuple(theirs), use_cgroups=self.use_cgroups, rlimit_as=device != "cuda",
                enforced=enforced, details=details, on_start=on_start,
            )
            while theirs:
                os.close(theirs.pop())
            os.set_blocking(status_fd, False)  # a bwrap that survived SIGKILL could still hold the write end
            ran = b'"exit-code"' in _read_available(status_fd)
        finally:
            for fd in theirs + ours:
                os.close(fd)
        if not ran and not result.timed_out:
            _setup_failure(result)
        return result


def _check_access(mounts: Sequence[Mount]) -> None:
    """Unprivileged-host mode: raise SandboxError naming a mount the sandbox user could not use
    (a folder it cannot list and enter, a file it cannot read, a writable mount it cannot write).

    Only the mount itself is checked: its parents do not matter (bwrap reaches the source as
    root), what lies below it is the caller's to make readable.
    """
    for mount in mounts:
        st = os.stat(mount.source)
        if st.st_uid == SANDBOX_UID:
            bits = (st.st_mode >> 6) & 7
        elif st.st_gid == SANDBOX_UID:
            bits = (st.st_mode >> 3) & 7
        else:
            bits = st.st_mode & 7
        need = (5 if stat.S_ISDIR(st.st_mode) else 4) | (2 if mount.writable else 0)
        if bits & need != need:
            raise SandboxError(
                f"the sandbox user (host uid {SANDBOX_UID}) cannot {'write' if mount.writable else 'read'} the mount "
                f"source {mount.source} (mode {stat.S_IMODE(st.st_mode):o}, owner {st.st_uid}): make it "
                f"{'world-writable (chmod 0777)' if mount.writable else 'world-readable'}")


def _map_ids(info_r: int, control: int, wait_s: float) -> None:
    """Unprivileged-host mode: read the pid of bwrap's child from info_r, write its user
    namespace's uid and gid maps, then let bwrap go on by writing one byte to control.

    When bwrap exits before reporting a pid (a set-up error), nothing is written and the run
    loop reports bwrap's error. Raises SandboxError when the maps cannot be written (the run is
    then killed: the command must not start with its ids unmapped).
    """
    deadline = time.monotonic() + wait_s
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([info_r], [], [], left)[0]:
            raise SandboxError(f"bubblewrap did not report its child within {wait_s:.0f} s")
        chunk = os.read(info_r, 4096)
        if not chunk:
            break
        data += chunk
    if not data:
        return  # bwrap failed before creating the namespace; its stderr says why
    try:
        pid = int(json.loads(data)["child-pid"])
    except (ValueError, KeyError, TypeError):
        raise SandboxError(f"bubblewrap reported no child pid: {data[:200]!r}") from None
    try:
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(_ID_MAP)
    except OSError as exc:
        raise SandboxError(f"could not map the sandbox user to host uid {SANDBOX_UID}: {exc}") from None
    try:
        os.write(control, b"1")
    except OSError:
        pass  # bwrap is gone; the run loop reports it


def _data_pipe(data: bytes) -> int:
    """A pipe's read end already holding data (small, so writing cannot block)."""
    read, write = os.pipe()
    try:
        os.write(write, data)
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
