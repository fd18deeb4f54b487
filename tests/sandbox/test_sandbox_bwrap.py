"""What the bwrap sandbox hides and forbids, checked from inside a real sandbox."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox import Limits, Mount
from sandbox.bwrap import SANDBOX_UID, BwrapBackend, python_roots
from sandbox_testlib import bwrap_or_skip, kill_all, processes_with, wait_gone

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bwrap() -> BwrapBackend:
    return bwrap_or_skip()


def run_py(backend: BwrapBackend, code: str, **kwargs):
    kwargs.setdefault("limits", Limits(wall_s=60))
    r = backend.run([*backend.python(), "-c", code], **kwargs)
    assert r.exit_code == 0, r.stderr
    return r


def test_no_network_only_loopback(bwrap):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = ("import json, socket\n"
                "s = socket.socket(); s.settimeout(3)\n"
                f"try:\n    s.connect(('127.0.0.1', {port})); ok = True\n"
                "except OSError:\n    ok = False\n"
                "print(json.dumps([ok, [n for _, n in socket.if_nameindex()]]))")
        connected, interfaces = json.loads(run_py(bwrap, code).stdout)
    assert connected is False  # the host's listener is in another network namespace
    assert interfaces == ["lo"]


def test_only_writable_mount_tmp_and_shm_are_writable(bwrap, tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "rw").mkdir()
    (tmp_path / "rw").chmod(0o777)  # the sandbox uid may not be the host user (the grader does the same)
    places = ["/", "/usr", "/etc", "/dev", "/proc", "/ro", "/rw", "/tmp", "/dev/shm", *python_roots()]
    code = ("import json, sys\nw = []\n"
            "for d in sys.argv[1:]:\n"
            "    try:\n        open(d.rstrip('/') + '/probe', 'w').close(); w.append(d)\n"
            "    except OSError:\n        pass\n"
            "print(json.dumps(w))")
    r = bwrap.run([*bwrap.python(), "-c", code, *places], limits=Limits(wall_s=30),
                  mounts=[Mount(tmp_path / "ro", "/ro"), Mount(tmp_path / "rw", "/rw", writable=True)])
    assert json.loads(r.stdout) == ["/rw", "/tmp", "/dev/shm"], r.stderr
    assert (tmp_path / "rw" / "probe").exists() and not (tmp_path / "ro" / "probe").exists()


def test_proc_has_nothing_writable(bwrap):
    # Run as host root, the sandbox uid is host uid 0 and procfs checks owner bits of global
    # sysctls by uid alone: kernel.core_pattern would be a host root escape if writable.
    code = ("import json, os\nhits = []\n"
            "for root, dirs, files in os.walk('/proc'):\n"
            "    if root == '/proc':\n"
            "        dirs[:] = [d for d in dirs if not d.isdigit() and d not in ('self', 'thread-self')]\n"
            "    for f in files:\n"
            "        try:\n            os.close(os.open(os.path.join(root, f), os.O_WRONLY | os.O_NONBLOCK))\n"
            "        except OSError:\n            continue\n"
            "        hits.append(os.path.join(root, f))\n"
            "print(json.dumps(hits))")
    assert json.loads(run_py(bwrap, code).stdout) == []


def test_host_paths_not_mounted_are_invisible(bwrap, tmp_path):
    (tmp_path / "secret").write_text("host only")
    candidates = [str(tmp_path / "secret"), "/root/.ssh", str(REPO / "pyproject.toml"), str(REPO / "sandbox"),
                  os.path.join(os.getcwd(), "x"), "/etc/shadow", "/home", "/var", "/opt", "/sys/fs/cgroup"]
    code = "import json, os, sys; print(json.dumps([p for p in sys.argv[1:] if os.path.exists(p)]))"
    r = bwrap.run([*bwrap.python(), "-c", code, *candidates], limits=Limits(wall_s=30))
    assert json.loads(r.stdout) == [], r.stderr
    # The host's /etc is not there either: only the few files the sandbox provides.
    r = run_py(bwrap, "import json, os; print(json.dumps(os.listdir('/etc')))")
    assert set(json.loads(r.stdout)) <= {"ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "nsswitch.conf",
                                   "hosts", "localtime", "os-release", "passwd", "group"}


def test_runs_as_unprivileged_uid(bwrap):
    code = "import os, pwd; print(os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name)"
    assert run_py(bwrap, code).stdout == f"{SANDBOX_UID} {SANDBOX_UID} nobody\n"


def test_torch_and_dataloader_workers(bwrap):
    # DataLoader workers need multiprocessing and shared memory in /dev/shm.
    code = ("import torch\n"
            "from torch.utils.data import DataLoader, TensorDataset\n"
            "ds = TensorDataset(torch.arange(100.0).reshape(50, 2))\n"
            "print(sum(b[0].sum().item() for b in DataLoader(ds, batch_size=5, num_workers=2)))")
    r = run_py(bwrap, code, limits=Limits(wall_s=60, memory_mb=2048, cpus=2))
    assert r.stdout == "4950.0\n"


def test_sandbox_dies_with_its_parent(token):
    bwrap_or_skip()
    helper = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
              "from sandbox.bwrap import BwrapBackend\nfrom sandbox.api import Limits\n"
              # no cgroup: the killed helper could not remove it
              f"BwrapBackend(use_cgroups=False).run(['sleep', '{token}'], limits=Limits(wall_s=60))")
    parent = subprocess.Popen([sys.executable, "-c", helper])
    try:
        # Wait for the command itself: bwrap has a short window during its own set-up in which
        # the death of its parent is missed (documented in docs/security-sandbox.md).
        end = time.monotonic() + 15
        while not processes_with(token, program="sleep") and time.monotonic() < end:
            time.sleep(0.02)
        assert processes_with(token, program="sleep"), "the sandboxed sleep never started"
    finally:
        parent.kill()
        parent.wait()
    survivors = wait_gone(token)
    kill_all(survivors)
    assert survivors == []


def test_cuda_argv_binds_nvidia_devices():
    """Argv only: no GPU is available where these tests run, so CUDA inside bwrap is untested."""
    backend = BwrapBackend()
    backend.bwrap = backend.bwrap or "/usr/bin/bwrap"
    fake = ["/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"]
    kwargs = dict(mounts=[], env={"PATH": "/usr/bin"}, workdir="/", limits=Limits(), data_fds=(3, 4, 5))
    argv = backend.build_argv(["nvidia-smi"], device="cuda", nvidia_devices=fake, **kwargs)
    pairs = list(zip(argv, argv[1:], argv[2:]))
    for dev in fake:
        assert ("--dev-bind", dev, dev) in pairs
    assert ("--ro-bind", "/sys", "/sys") in pairs
    assert argv.index("--dev-bind") < argv.index("--remount-ro")  # bound before /dev turns read-only
    cpu = backend.build_argv(["true"], device="cpu", nvidia_devices=fake, **kwargs)
    assert "--dev-bind" not in cpu and "/sys" not in cpu


def test_python_prefixes_are_bound_after_the_tmp_tmpfs(monkeypatch):
    """A checkout under /tmp (CI clones there) keeps its venv visible inside the sandbox."""
    import sandbox.bwrap as bwrap_mod
    backend = BwrapBackend()
    backend.bwrap = backend.bwrap or "/usr/bin/bwrap"
    monkeypatch.setattr(bwrap_mod, "python_roots", lambda: ["/tmp/clone/.venv"])
    argv = backend.build_argv(["true"], mounts=[], env={}, workdir="/", limits=Limits(), device="cpu",
                              data_fds=(3, 4, 5))
    tmpfs = [i for i, a in enumerate(argv) if a == "--tmpfs" and argv[i + 1] == "/tmp"][0]
    bind = [i for i, a in enumerate(argv[:-2]) if a == "--ro-bind" and argv[i + 1] == "/tmp/clone/.venv"][0]
    assert bind > tmpfs
