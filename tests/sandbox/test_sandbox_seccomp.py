"""The seccomp profile (`sandbox/seccomp.json`), checked from inside real bwrap and docker sandboxes.

Each denied syscall is made directly (`ctypes.CDLL(None).syscall`) and must come back -1 with
EPERM (clone3: ENOSYS, so that glibc falls back to clone, whose flags the filter can read). The
same probe run unfiltered by the process backend shows the kernel would have answered
otherwise, so the sandbox results are the filter's. Ordinary work (fork, subprocess, threads,
a fork pool, NumPy, torch DataLoader workers, the Triton interpreter, pytest) still runs.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pytest

import sandbox._seccomp as seccomp
from sandbox import Limits, Mount
from sandbox.bwrap import BwrapBackend
from sandbox.process import ProcessBackend
from sandbox_testlib import bwrap_or_skip, docker_or_skip

# The syscalls the profile must refuse (issue 8); the probe below makes the first group directly.
REQUIRED = ["keyctl", "add_key", "request_key", "bpf", "perf_event_open", "io_uring_setup", "io_uring_enter",
            "io_uring_register", "userfaultfd", "kexec_load", "kexec_file_load", "init_module", "finit_module",
            "delete_module", "reboot", "swapon", "swapoff", "acct", "mount", "umount2", "pivot_root", "unshare",
            "setns", "open_by_handle_at", "name_to_handle_at", "ptrace", "process_vm_readv", "process_vm_writev",
            "lookup_dcookie", "fanotify_init", "quotactl", "syslog", "uselib", "iopl", "ioperm", "vmsplice"]

PROBE = r'''
import ctypes, errno, json, os, platform
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {"x86_64": dict(keyctl=250, add_key=248, request_key=249, bpf=321, perf_event_open=298, io_uring_setup=425,
                     userfaultfd=323, unshare=272, setns=308, ptrace=101, process_vm_readv=310,
                     open_by_handle_at=304, mount=165, kexec_load=246, init_module=175, clone=56, clone3=435,
                     socket=41),
      "aarch64": dict(keyctl=219, add_key=217, request_key=218, bpf=280, perf_event_open=241, io_uring_setup=425,
                      userfaultfd=282, unshare=97, setns=268, ptrace=117, process_vm_readv=270,
                      open_by_handle_at=265, mount=40, kexec_load=104, init_module=105, clone=220, clone3=435,
                      socket=198)}[platform.machine()]
L = ctypes.c_long
# Arguments an unfiltered kernel answers with something other than EPERM where it can, and
# that change nothing even for root (the control below runs them unfiltered, as the grader).
CALLS = [
    ("keyctl", NR["keyctl"], 0, L(-3), 0),  # KEYCTL_GET_KEYRING_ID of the session keyring
    ("add_key", NR["add_key"], 0, 0, 0, 0, 0),
    ("request_key", NR["request_key"], 0, 0, 0, 0),
    ("bpf", NR["bpf"], 9999, 0, 0),
    ("perf_event_open", NR["perf_event_open"], 0, 0, L(-1), L(-1), 0),
    ("io_uring_setup", NR["io_uring_setup"], 0, 0),
    ("userfaultfd", NR["userfaultfd"], 0),
    ("clone_newuser", NR["clone"], 0x10000000 | 17, 0, 0, 0, 0),  # CLONE_NEWUSER | SIGCHLD
    ("clone3", NR["clone3"], 0, 0),
    ("unshare_newuser", NR["unshare"], 0x10000000),
    ("setns", NR["setns"], L(-1), 0),
    ("ptrace", NR["ptrace"], 3, L(-1), 0, 0),  # PTRACE_PEEKUSER of no process
    ("process_vm_readv", NR["process_vm_readv"], os.getpid(), 0, 0, 0, 0, 0),
    ("open_by_handle_at", NR["open_by_handle_at"], L(-1), 0, 0),
    ("mount", NR["mount"], 0, 0, 0, 0, 0),
    ("kexec_load", NR["kexec_load"], 0, 0, 0, 0x80),  # an undefined flag: EINVAL, never an unload
    ("init_module", NR["init_module"], 0, 0, 0),
    ("socket_vsock", NR["socket"], 40, 1, 0),  # AF_VSOCK, SOCK_STREAM
]
out = {}
for name, *args in CALLS:
    ctypes.set_errno(0)
    r = libc.syscall(*args)
    if r == 0 and name == "clone_newuser":
        os._exit(0)  # the child of a clone that should have been refused
    out[name] = [r, errno.errorcode.get(ctypes.get_errno(), "?") if r == -1 else None]
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
out["Seccomp"] = status["Seccomp"].strip()
print(json.dumps(out))
'''

WORK = r'''
import json, os, subprocess, sys, tempfile, threading
seen = {}
pid = os.fork()
if pid == 0:
    os._exit(7)
seen["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
seen["subprocess"] = subprocess.run([sys.executable, "-c", "print('child')"], capture_output=True, text=True).stdout
box = []
threads = [threading.Thread(target=box.append, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
seen["threads"] = sorted(box)
import multiprocessing as mp
with mp.get_context("fork").Pool(2) as pool:
    seen["pool"] = pool.map(abs, [-1, -2, -3])
import numpy as np
seen["numpy"] = float(np.arange(10.0) @ np.arange(10.0))
import torch
from torch.utils.data import DataLoader, TensorDataset
ds = TensorDataset(torch.arange(100.0).reshape(50, 2))
seen["dataloader"] = sum(b[0].sum().item() for b in DataLoader(ds, batch_size=5, num_workers=2))
import triton, triton.language as tl
@triton.jit
def add(x, y, out, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out + i, tl.load(x + i, mask=i < n) + tl.load(y + i, mask=i < n), mask=i < n)
x = torch.arange(100.0)
o = torch.empty(100)
add[(4,)](x, x, o, 100, BLOCK=32)
seen["triton_interpreter"] = float(o.sum())
d = tempfile.mkdtemp()
with open(os.path.join(d, "test_x.py"), "w") as f:
    f.write("def test_ok():\n    assert 1 + 1 == 2\n")
import pytest
seen["pytest"] = int(pytest.main(["-q", "-p", "no:cacheprovider", d]))
print("RESULT " + json.dumps(seen))
'''

# x86-64 code that makes keyctl(KEYCTL_GET_KEYRING_ID, session) through the 32-bit syscall
# table (int 0x80, i386 number 288), past a filter written for x86-64 numbers if it only knew those.
I386 = r'''
import ctypes, mmap
code = bytes.fromhex("53" "b820010000" "bb00000000" "b9fdffffff" "31d2" "cd80" "5b" "c3")
page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(code)
print("returned", ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))(), flush=True)
'''


@pytest.fixture(params=["bwrap", "docker"])
def isolating(request: pytest.FixtureRequest):
    """The bwrap and docker backends in turn (skipped where they cannot run, outside CI)."""
    return docker_or_skip() if request.param == "docker" else bwrap_or_skip()


def _program(tmp_path: Path, name: str, text: str) -> Mount:
    (tmp_path / name).write_text(text)
    tmp_path.chmod(0o755)  # the sandbox uid reads it
    return Mount(tmp_path, "/in")


def _needs_seccomp(backend) -> None:
    if backend.name == "bwrap" and seccomp.unavailable_reason() is not None:
        pytest.skip(f"bwrap runs without the filter here: {seccomp.unavailable_reason()}")


def test_profile_names_every_required_syscall_and_compiles():
    profile = seccomp.profile()
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert not set(REQUIRED) - set(seccomp.denied_names())
    assert [r.get("errnoRet") for r in profile["syscalls"] if r["names"] == ["clone3"]] == [38]  # ENOSYS
    # clone is refused only with a namespace flag: every one of them, each alone
    flags = sorted(a["value"] for r in profile["syscalls"] if r["names"] == ["clone"] for a in r["args"])
    assert sum(flags) == 0x7E020000 and len(flags) == 7
    if seccomp.unavailable_reason() is None:
        program = seccomp.bpf_program()
        assert program and len(program) % 8 == 0  # struct sock_filter is 8 bytes


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="syscall numbers for x86_64/aarch64")
def test_denied_syscalls_fail_with_eperm(isolating, tmp_path):
    _needs_seccomp(isolating)
    r = isolating.run([*isolating.python(), "/in/probe.py"], mounts=[_program(tmp_path, "probe.py", PROBE)],
                      limits=Limits(wall_s=60))
    assert r.exit_code == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen.pop("Seccomp") == "2"  # a filter is in force
    expected = {name: [-1, "ENOSYS" if name == "clone3" else "EPERM"] for name in seen}
    assert seen == expected
    assert seccomp.LABEL in r.enforced


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="syscall numbers for x86_64/aarch64")
def test_the_probe_sees_other_answers_without_the_filter(tmp_path):
    """Control: the process backend has no filter; the kernel's own answers are not EPERM."""
    r = ProcessBackend().run([*ProcessBackend().python(), "/in/probe.py"],
                             mounts=[_program(tmp_path, "probe.py", PROBE)], limits=Limits(wall_s=60))
    assert r.exit_code == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen.pop("Seccomp") == "0"
    assert seen["keyctl"][0] > 0  # the session keyring's id
    assert seen["perf_event_open"] == [-1, "EFAULT"]  # the kernel read the (null) attributes
    assert seen["clone3"] == [-1, "EINVAL"]  # clone3 exists and checked its (null) arguments
    if os.geteuid() == 0:  # for root nothing is refused for lack of privilege: no EPERM at all
        assert not [name for name, (_, err) in seen.items() if err == "EPERM"], seen


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the 32-bit syscall table of x86-64")
def test_the_32_bit_syscall_table_is_no_way_around(isolating, tmp_path):
    _needs_seccomp(isolating)
    mount = _program(tmp_path, "i386.py", I386)
    control = ProcessBackend().run([*ProcessBackend().python(), "/in/i386.py"], mounts=[mount],
                                   limits=Limits(wall_s=30))
    if control.exit_code != 0 or not control.stdout.startswith("returned ") or int(control.stdout.split()[1]) <= 0:
        pytest.skip(f"no 32-bit syscalls on this kernel (unfiltered: exit {control.exit_code}, {control.stdout!r})")
    r = isolating.run([*isolating.python(), "/in/i386.py"], mounts=[mount], limits=Limits(wall_s=30))
    assert r.exit_code == 128 + 31 and "returned" not in r.stdout  # SIGSYS: the filter kills a foreign ABI


def test_ordinary_work_still_runs(isolating, tmp_path):
    _needs_seccomp(isolating)
    r = isolating.run([*isolating.python(), "/in/work.py"], mounts=[_program(tmp_path, "work.py", WORK)],
                      env={"TRITON_INTERPRET": "1", "HOME": "/tmp"},
                      limits=Limits(wall_s=240, cpus=2, memory_mb=3072))
    assert r.exit_code == 0, r.stderr[-3000:]
    seen = json.loads(r.stdout.split("RESULT ", 1)[1])
    assert seen == {"fork": 7, "subprocess": "child\n", "threads": [0, 1, 2, 3], "pool": [1, 2, 3],
                    "numpy": 285.0, "dataloader": 4950.0, "triton_interpreter": 9900.0, "pytest": 0}
    assert seccomp.LABEL in r.enforced


def test_bwrap_without_libseccomp_still_runs_and_says_so(monkeypatch):
    backend = bwrap_or_skip()

    def missing() -> bytes:
        raise seccomp.SeccompUnavailable("libseccomp (libseccomp.so.2) cannot be loaded: test")

    monkeypatch.setattr(seccomp, "bpf_program", missing)
    monkeypatch.setattr(seccomp, "unavailable_reason", lambda: "libseccomp (libseccomp.so.2) cannot be loaded: test")
    r = backend.run(["grep", "^Seccomp:", "/proc/self/status"], limits=Limits(wall_s=20))
    assert r.exit_code == 0 and r.stdout.split() == ["Seccomp:", "0"]
    assert seccomp.LABEL not in r.enforced
    assert r.details["seccomp"].startswith("not applied: libseccomp")
    if os.geteuid() == 0:  # no filter to refuse nested user namespaces: the old uid mapping, said so
        assert "host uid 0" in r.details["uid"] and "no seccomp filter" in r.details["uid"]


def test_bwrap_argv_in_unprivileged_host_mode():
    """Argv only: the filter goes to --seccomp, the user namespace waits for the grader's maps."""
    backend = BwrapBackend()
    backend.bwrap = backend.bwrap or "/usr/bin/bwrap"
    argv = backend.build_argv(["python3", "x.py"], mounts=[], env={}, workdir="/", limits=Limits(), device="cpu",
                              data_fds=(3, 4, 5), seccomp_fd=6, userns_fds=(7, 8), setpriv="/usr/bin/setpriv")
    pairs = list(zip(argv, argv[1:]))
    assert ("--seccomp", "6") in pairs and ("--info-fd", "7") in pairs and ("--userns-block-fd", "8") in pairs
    assert "--disable-userns" not in argv and "--uid" not in argv  # bwrap refuses the first with a block fd
    assert argv[argv.index("--") + 1:] == ["/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534",
                                           "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--",
                                           "python3", "x.py"]
    assert argv[argv.index("--cap-drop"):argv.index("--cap-drop") + 8] == [
        "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
