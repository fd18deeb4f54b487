"""Spawn one command under limits and collect what it did: the run loop every backend shares.

The loop reads stdout and stderr concurrently (one selector, never blocking the child),
keeps at most `Limits.output_bytes` of each and discards the rest, kills the whole process
group and the run's cgroup at the wall-clock deadline, and, once the main process has
exited, kills whatever it left behind so that a background child cannot keep the run alive.
"""
from __future__ import annotations

import ctypes
import os
import resource
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

from ._cgroup import RunCgroup
from .api import Limits, Mount, RunResult, SandboxError

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_CHUNK = 65536
_DRAIN_S = 1.0  # reading pipes after the command is gone; an escaped child may hold them open
_REAP_S = 10.0  # waiting for a SIGKILLed command to be reaped (a process in D state may take a while)
_MiB = 2**20


def command_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment a command gets: exactly `env`, plus a minimal PATH when it has none."""
    result = dict(env or {})
    result.setdefault("PATH", DEFAULT_PATH)
    return result


def check_mounts(mounts: Sequence[Mount]) -> None:
    """Raise SandboxError for a mount with a relative target or a missing source."""
    for mount in mounts:
        if not mount.target.startswith("/"):
            raise SandboxError(f"mount target must be absolute: {mount.target!r}")
        if not os.path.exists(mount.source):
            raise SandboxError(f"mount source does not exist: {mount.source}")


class _Capture:
    """Keeps the first `cap` bytes of a stream and counts the rest as truncated."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.truncated = False

    def feed(self, chunk: bytes) -> None:
        room = self.cap - len(self.data)
        if len(chunk) > room:
            self.truncated = True
            chunk = chunk[: max(room, 0)]
        self.data += chunk

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


class _Feed:
    """Bytes still to write to the command's stdin."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)

    def write(self, fd: int) -> bool:
        """Write what the pipe takes now; True when done (all written, or the reader is gone)."""
        try:
            self.data = self.data[os.write(fd, self.data[:_CHUNK]):]
        except BlockingIOError:
            return False
        except BrokenPipeError:
            return True
        return not self.data


def _rlimits(limits: Limits, cgroup: RunCgroup | None, rlimit_as: bool) -> tuple[list[tuple[int, int]], list[str]]:
    """The rlimits to set in the child and the labels of those that act as limits."""
    in_cgroup = {label.split(":")[0] for label in (cgroup.enforced if cgroup else [])}
    wanted: list[tuple[int, int, str | None]] = [
        (resource.RLIMIT_CORE, 0, None),
        (resource.RLIMIT_FSIZE, limits.file_size_mb * _MiB, "fsize:rlimit"),
        (resource.RLIMIT_NOFILE, limits.nofile, "nofile:rlimit"),
    ]
    if "memory" not in in_cgroup and rlimit_as:
        wanted.append((resource.RLIMIT_AS, limits.memory_mb * _MiB, "memory:rlimit-as"))
    if "pids" not in in_cgroup and os.geteuid() != 0:  # root ignores RLIMIT_NPROC
        wanted.append((resource.RLIMIT_NPROC, limits.pids, "pids:rlimit-nproc"))
    chosen, labels = [], []
    for res, value, label in wanted:
        hard = resource.getrlimit(res)[1]
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)  # an unprivileged child cannot raise its hard limit
        chosen.append((res, value))
        if label:
            labels.append(label)
    return chosen, labels


_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _prctl = _libc.prctl  # looked up here: the forked child only calls them
    _sig_default = _libc.signal
    _sig_default.argtypes, _sig_default.restype = (ctypes.c_int, ctypes.c_void_p), ctypes.c_void_p
except (OSError, AttributeError):  # not Linux
    _prctl = _sig_default = None


def _preexec(procs_files: list[bytes], rlimits: list[tuple[int, int]]) -> Callable[[], None]:
    parent = os.getpid()

    def enter() -> None:
        # Runs in the forked child before exec, so the command starts inside its cgroup with no
        # window in which it could fork unlimited. Plain syscalls only: no imports, no locks.
        # The command dies with the grader: a grader killed -9 (a batch worker, say) must not leave
        # it running. bwrap's own --die-with-parent starts only once bwrap has set up, and a grader
        # killed while bwrap waits for its id maps left bwrap waiting forever.
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the grader died before the line above took effect
                os._exit(137)
        pid = b"%d" % os.getpid()
        for path in procs_files:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        for res, value in rlimits:
            resource.setrlimit(res, (value, value))
        # Signal state survives exec: a grader started in the background (nohup, `&`) ignores SIGINT,
        # and one may hold signals back. The command starts with every signal at its
        # default and none blocked, however the grader was started (as a container's command does).
        if _sig_default is not None:
            for signum in range(1, signal.NSIG):
                _sig_default(signum, None)  # SIG_DFL; refused for SIGKILL, SIGSTOP and libc's own
        signal.pthread_sigmask(signal.SIG_SETMASK, ())

    return enter


def _kill_all(pgid: int, cgroup: RunCgroup | None) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if cgroup is not None:
        cgroup.kill()


def _has_exited(pid: int) -> bool:
    # WNOWAIT leaves the zombie in place: its pid, and so the process group id, cannot be
    # reused until we reap it, which makes the killpg of the leftovers safe.
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _supervise(
    proc: subprocess.Popen, cgroup: RunCgroup | None, start: float, wall_s: float, out: _Capture, err: _Capture,
    stdin: bytes | None,
) -> tuple[int | None, resource.struct_rusage | None, bool, float]:
    """Feed stdin and pump output until the command is done; returns (wait status, rusage, timed out, wall s)."""
    assert proc.stdout is not None and proc.stderr is not None
    deadline = start + wall_s
    sel = selectors.DefaultSelector()
    for stream, capture in ((proc.stdout, out), (proc.stderr, err)):
        os.set_blocking(stream.fileno(), False)
        sel.register(stream, selectors.EVENT_READ, capture)
    if proc.stdin is not None:
        if stdin:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE, _Feed(stdin))
        else:
            proc.stdin.close()  # EOF at once
    pidfd = _pidfd(proc.pid)
    if pidfd is not None:
        sel.register(pidfd, selectors.EVENT_READ, None)  # readable once the process exits
    status: int | None = None
    rusage: resource.struct_rusage | None = None
    timed_out = False
    ended: float | None = None
    give_up = float("inf")
    try:
        while True:
            now = time.monotonic()
            if status is None and _has_exited(proc.pid):
                _kill_all(proc.pid, cgroup)  # the run is over once its main process is
                _, status, rusage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                ended = ended or now
                give_up = now + _DRAIN_S
                if pidfd is not None:
                    sel.unregister(pidfd)
            elif status is None and not timed_out and now >= deadline:
                timed_out, ended = True, now
                _kill_all(proc.pid, cgroup)
                give_up = now + _REAP_S
            readers = [key for key in sel.get_map().values() if isinstance(key.data, _Capture)]
            if (status is not None and not readers) or now >= give_up:
                break
            timeout = max(0.0, (deadline if give_up == float("inf") else give_up) - now)
            if pidfd is None:
                timeout = min(timeout, 0.05)
            for key, _ in sel.select(timeout):
                if key.data is None:
                    continue
                if isinstance(key.data, _Feed):
                    if key.data.write(key.fd):
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
                    continue
                try:
                    chunk = os.read(key.fd, _CHUNK)
                except BlockingIOError:
                    continue
                if chunk:
                    key.data.feed(chunk)
                else:
                    sel.unregister(key.fileobj)
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    return status, rusage, timed_out, (ended or time.monotonic()) - start


def run_limited(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    limits: Limits,
    backend: str,
    isolated: bool,
    cwd: str | None = None,
    stdin: bytes | None = None,
    pass_fds: Sequence[int] = (),
    use_cgroups: bool = True,
    rlimit_as: bool = True,
    enforced: Sequence[str] = (),
    details: dict[str, str] | None = None,
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> RunResult:
    """Run argv under `limits` (cgroup where usable, else rlimits) and return what happened.

    `stdin` bytes are written to the command's stdin, which is then closed (None: /dev/null).
    `rlimit_as=False` skips the RLIMIT_AS memory fallback (CUDA reserves far more address
    space than it uses). Signal deaths become exit codes 128+N (what bwrap reports too);
    exit_code is None when the run timed out or the OOM killer SIGKILLed the main process.
    `on_start(proc)`, when given, runs right after the process is started and before its
    output is read (bwrap waits there for its uid map); if it raises, the run is killed and
    the exception propagates.
    """
    details = dict(details or {})
    cgroup = RunCgroup.create(limits) if use_cgroups else None
    try:
        rlimits, rlimit_labels = _rlimits(limits, cgroup, rlimit_as)
        labels = [*(cgroup.enforced if cgroup else []), *rlimit_labels, "wall:kill", "output:cap", *enforced]
        if cgroup is not None:
            details["cgroup"] = cgroup.version
        out, err = _Capture(limits.output_bytes), _Capture(limits.output_bytes)

        def result(exit_code: int | None, **kw: object) -> RunResult:
            return RunResult(
                backend=backend, exit_code=exit_code, stdout=out.text(), stderr=err.text(),
                stdout_truncated=out.truncated, stderr_truncated=err.truncated, isolated=isolated,
                enforced=labels, details=details, **kw,  # type: ignore[arg-type]
            )

        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, pass_fds=tuple(pass_fds),
                start_new_session=True, preexec_fn=_preexec(cgroup.procs_files() if cgroup else [], rlimits),
            )
        except (FileNotFoundError, PermissionError) as e:
            err.feed(f"{argv[0]}: {e.strerror}\n".encode())  # like a shell: 127 not found, 126 not executable
            code = 127 if isinstance(e, FileNotFoundError) else 126
            return result(code, timed_out=False, oom_killed=False, wall_s=time.monotonic() - start)
        except (OSError, subprocess.SubprocessError) as e:
            raise SandboxError(f"could not start {argv[0]!r}: {e}") from e

        if on_start is not None:
            try:
                on_start(proc)
            except BaseException:
                _kill_all(proc.pid, cgroup)
                proc.wait()
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()
                raise

        status, rusage, timed_out, wall_s = _supervise(proc, cgroup, start, limits.wall_s, out, err, stdin)

        exit_code: int | None = None
        if status is not None and not timed_out:
            if os.WIFSIGNALED(status):
                signum = os.WTERMSIG(status)
                exit_code = 128 + signum
                details["signal"] = signal.Signals(signum).name
            else:
                exit_code = os.WEXITSTATUS(status)

        if cgroup is not None and any(label.startswith("memory:") for label in cgroup.enforced):
            kills = cgroup.oom_kills()
            oom_killed = kills > 0
            details["oom_kills"] = str(kills)
            peak = cgroup.peak_memory_mb()
            details["peak_memory"] = f"cgroup-{cgroup.version} (includes page cache)"
        else:
            # Python turns an allocation refused by RLIMIT_AS into MemoryError; nothing else is knowable.
            last = err.text().strip().splitlines()[-1:] or [""]
            oom_killed = ("memory:rlimit-as" in labels and exit_code not in (None, 0)
                          and last[0].startswith("MemoryError"))
            if oom_killed:
                details["oom"] = "heuristic: MemoryError under RLIMIT_AS"
            peak = rusage.ru_maxrss / 1024 if rusage is not None else None
            details["peak_memory"] = "ru_maxrss: largest single process, approximate"
        if oom_killed and exit_code == 128 + signal.SIGKILL:
            exit_code = None
        return result(exit_code, timed_out=timed_out, oom_killed=oom_killed, wall_s=wall_s, peak_memory_mb=peak)
    finally:
        if cgroup is not None:
            left = cgroup.remove()
            if left:  # `details` is the dict the returned RunResult holds
                details["cgroup_left"] = ", ".join(left)
