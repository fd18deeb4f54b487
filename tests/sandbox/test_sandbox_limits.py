"""Limits and results that every backend must honour, run for real against each backend."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox import Limits, Mount
from sandbox._proc import DEFAULT_PATH
from sandbox.process import ProcessBackend
from sandbox_testlib import kill_all, processes_with, wait_gone


def py(backend, code: str) -> list[str]:
    return [*backend.python(), "-c", code]


def test_echo_output_and_exit_code(backend):
    r = backend.run(["sh", "-c", "echo out; echo err >&2; exit 7"], limits=Limits(wall_s=20))
    assert (r.stdout, r.stderr, r.exit_code) == ("out\n", "err\n", 7)
    assert not (r.timed_out or r.oom_killed or r.stdout_truncated or r.stderr_truncated)
    assert r.backend == backend.name and r.isolated == backend.isolated
    assert "wall:kill" in r.enforced and "output:cap" in r.enforced


def test_signal_state_does_not_depend_on_how_the_grader_was_started(backend):
    """A grader started in the background (nohup, `&`) ignores SIGINT, and one may hold signals back:
    neither reaches the command, whose signals start at their defaults, unblocked."""
    code = ("import signal\n"
            "blocked = [l.split()[1] for l in open('/proc/self/status') if l.startswith('SigBlk')][0]\n"
            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, int(blocked, 16))\n")
    inherited = signal.signal(signal.SIGINT, signal.SIG_IGN)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGHUP})
    try:
        r = backend.run(py(backend, code), limits=Limits(wall_s=60))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, inherited)
    assert (r.stdout, r.exit_code) == ("True 0\n", 0), r.stderr


def test_missing_command_is_exit_127(backend):
    r = backend.run(["no-such-command-xyz"], limits=Limits(wall_s=20))
    assert r.exit_code == 127 and "no-such-command-xyz" in r.stderr


def test_stdin_is_fed_then_closed(backend):
    echo = "import sys; data = sys.stdin.buffer.read(); print(len(data), data[-3:].decode())"
    r = backend.run(py(backend, echo), stdin=b"k" * (1 << 20) + b"end", limits=Limits(wall_s=20))
    assert r.stdout == f"{(1 << 20) + 3} end\n"  # more than a pipe holds: written as the command reads
    assert backend.run(py(backend, echo), limits=Limits(wall_s=20)).stdout == "0 \n"  # no stdin: EOF
    # A command that never reads its stdin does not block the run.
    r = backend.run(["true"], stdin=b"x" * (1 << 20), limits=Limits(wall_s=20))
    assert r.exit_code == 0 and r.wall_s < 5


def test_env_is_exactly_what_was_given(backend, monkeypatch):
    monkeypatch.setenv("MLGRADE_HOST_SECRET", "must-not-leak")
    r = backend.run(["env"], env={"FOO": "bar baz", "LANG": "C.UTF-8"}, limits=Limits(wall_s=20))
    seen = dict(line.split("=", 1) for line in r.stdout.splitlines())
    if backend.name == "bwrap":
        assert seen.pop("PWD") == "/"  # bwrap always sets PWD to the workdir after --chdir
    # PATH is the only addition, and only because none was given.
    assert seen == {"FOO": "bar baz", "LANG": "C.UTF-8", "PATH": DEFAULT_PATH}
    r = backend.run(["env"], env={"PATH": "/usr/bin"}, limits=Limits(wall_s=20))
    assert r.stdout.replace("PWD=/\n", "") == "PATH=/usr/bin\n"  # no HOME, USER, ... of the grader


def test_output_cap_truncates_and_run_finishes(backend):
    code = "import sys; sys.stdout.write('x' * 10_000_000); sys.stdout.flush(); sys.stderr.write('done')"
    r = backend.run(py(backend, code), limits=Limits(wall_s=30, output_bytes=64 * 1024))
    assert r.exit_code == 0 and not r.timed_out
    assert r.stdout == "x" * 64 * 1024 and r.stdout_truncated
    assert r.stderr == "done" and not r.stderr_truncated


KILLED_GRADER = """import sys
from sandbox import Limits, get_backend
get_backend(sys.argv[1]).run(["sleep", sys.argv[2]], limits=Limits(wall_s=300))
"""


def test_a_grader_killed_with_sigkill_takes_its_sandbox_along(backend, token):
    """kill -9 of the process running a sandbox (a batch worker, say) ends the sandboxed command too: the
    command is started with a parent-death signal, which is all the process backend has (bwrap also has
    --die-with-parent, which takes effect only once bwrap has set up)."""
    if backend.name == "docker":
        pytest.skip("a container outlives its client by design: the next mlgrade command sweeps it "
                    "(test_sandbox_docker.py)")
    grader = subprocess.Popen([sys.executable, "-c", KILLED_GRADER, backend.name, token],
                              cwd=Path(__file__).resolve().parents[2], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120  # only a bound: the loop ends as soon as sleep runs
        while not processes_with(token, exclude=(grader.pid,), program="sleep") and time.monotonic() < deadline:
            assert grader.poll() is None, "the grader ended before its sandbox started"
            time.sleep(0.05)
        assert processes_with(token, exclude=(grader.pid,), program="sleep"), "the sandboxed sleep never started"
    finally:
        os.kill(grader.pid, 9)
        grader.wait()
    survivors = wait_gone(token, timeout=10)
    kill_all(survivors)
    assert survivors == []


def test_wall_timeout_kills_loop_and_forked_children(backend, token):
    code = f"import subprocess\nsubprocess.Popen(['sleep', '{token}'])\nwhile True: pass"
    start = time.monotonic()
    r = backend.run(py(backend, code), limits=Limits(wall_s=1.5))
    assert r.timed_out and r.exit_code is None
    assert 1.5 <= r.wall_s < 3 and time.monotonic() - start < 5
    survivors = wait_gone(token)
    kill_all(survivors)
    assert survivors == []


@pytest.mark.parametrize("launch", ["sleep {t} &", "setsid sleep {t} &"], ids=["background", "setsid"])
def test_background_child_does_not_keep_run_alive(backend, token, launch):
    # The sleeper inherits stdout, so a runner that waits for EOF would hang until the deadline.
    r = backend.run(["sh", "-c", launch.format(t=token) + " echo started"], limits=Limits(wall_s=30))
    assert r.exit_code == 0 and r.stdout == "started\n" and not r.timed_out
    assert r.wall_s < 5
    survivors = wait_gone(token)
    kill_all(survivors)
    if launch.startswith("setsid") and not any(e.startswith("pids:cgroup") for e in r.enforced):
        pytest.skip("without a cgroup a child that leaves the session escapes the kill (documented)")
    assert survivors == []


def test_memory_limit_oom(backend):
    r = backend.run(py(backend, "b = bytearray(1 << 30); print(len(b))"),
                    limits=Limits(wall_s=30, memory_mb=256))
    assert r.oom_killed and not r.timed_out and r.stdout == ""
    assert any(e.startswith("memory:") for e in r.enforced)
    if any(e.startswith("memory:cgroup") for e in r.enforced):
        assert r.exit_code is None  # SIGKILLed by the kernel OOM killer


def test_peak_memory_is_reported(backend):
    if backend.name == "docker":
        pytest.skip("docker reports no peak memory: the container's cgroup is gone when its exit is reported")
    r = backend.run(py(backend, "b = bytearray(200 << 20); print(len(b))"), limits=Limits(wall_s=30))
    assert r.exit_code == 0
    assert r.peak_memory_mb is not None and 190 <= r.peak_memory_mb < 1024


def test_fork_bomb_stopped_by_pids_limit(backend, token):
    # Bounded: at most 64 sleeping children even if no limit held.
    code = (f"import os, time  # {token}\n"
            "n = 0\n"
            "for _ in range(64):\n"
            "    try:\n"
            "        pid = os.fork()\n"
            "    except BlockingIOError:\n"
            "        print('limited', n); break\n"
            "    if pid == 0:\n"
            "        time.sleep(30); os._exit(0)\n"
            "    n += 1\n")
    r = backend.run(py(backend, code), limits=Limits(wall_s=20, pids=16))
    survivors = wait_gone(token)
    kill_all(survivors)
    if not any(e.startswith("pids:") for e in r.enforced):
        pytest.skip("no pids limit enforceable here (no pids cgroup, and RLIMIT_NPROC does not bind root)")
    assert r.exit_code == 0 and r.stdout.startswith("limited ")
    assert 0 < int(r.stdout.split()[1]) < 16
    assert survivors == []  # the children are killed with the run


def test_file_size_limit(backend, tmp_path):
    tmp_path.chmod(0o777)  # the docker sandbox user is not the host user (the grader does the same)
    code = "import sys; open(sys.argv[1], 'wb').write(b'x' * (3 << 20))"
    r = backend.run([*py(backend, code), "/out/big"], mounts=[Mount(tmp_path, "/out", writable=True)],
                    limits=Limits(wall_s=20, file_size_mb=1))
    assert r.exit_code == 1 and "File too large" in r.stderr
    assert (tmp_path / "big").stat().st_size <= 1 << 20
    assert "fsize:rlimit" in r.enforced


def test_process_rewrites_mount_targets_to_sources(tmp_path):
    (tmp_path / "in.txt").write_text("hello")
    r = ProcessBackend().run(
        ["sh", "-c", 'cat "$1"; echo " $DATA $OTHER $(pwd)"', "sh", "/data/in.txt"],
        mounts=[Mount(tmp_path, "/data")], env={"DATA": "/data/in.txt", "OTHER": "/database"},
        workdir="/data", limits=Limits(wall_s=20),
    )
    assert r.stdout == f"hello {tmp_path}/in.txt /database {tmp_path}\n"  # /database is no mount
    assert not r.isolated


def test_process_fallback_without_cgroups(token):
    backend = ProcessBackend(use_cgroups=False)
    r = backend.run(py(backend, "b = bytearray(1 << 30)"), limits=Limits(wall_s=20, memory_mb=256))
    assert "memory:rlimit-as" in r.enforced and r.oom_killed and r.exit_code == 1
    # torch reserves a lot of address space; it must still import under the default 2 GiB RLIMIT_AS.
    r = backend.run(py(backend, "import torch; print(torch.ones(3).sum().item())"), limits=Limits(wall_s=60))
    assert r.exit_code == 0 and r.stdout == "3.0\n", r.stderr
    assert r.peak_memory_mb is not None and r.peak_memory_mb > 50
    # A child that leaves the session survives the kill here, but must not hold the run open.
    r = backend.run(["sh", "-c", f"setsid sleep {token} & echo started"], limits=Limits(wall_s=30))
    kill_all(processes_with(token))
    assert r.stdout == "started\n" and r.wall_s < 5


def test_cpu_quota(backend):
    # Two busy processes for 1.5 s of wall time use ~3 s of CPU on two cores, ~1.5 s under cpus=1.
    code = ("import os, time\n"
            "def spin():\n    end = time.time() + 1.5\n    while time.time() < end: pass\n"
            "pids = [os.fork() for _ in range(1)]\n"
            "if pids[0] == 0:\n    spin(); os._exit(0)\n"
            "spin(); os.waitpid(pids[0], 0)\n"
            "t = os.times(); print(t.user + t.system + t.children_user + t.children_system)")
    r = backend.run(py(backend, code), limits=Limits(wall_s=20, cpus=1))
    if not any(e.startswith("cpu:") for e in r.enforced):
        pytest.skip("no cpu cgroup here")
    assert r.exit_code == 0, r.stderr
    assert float(r.stdout) < 2.2
