"""Which host uid the sandbox is, and what setuid files can do there, on bwrap and docker.

A grader running as root must not have its sandbox write root-owned files (a setuid copy of
/bin/sh in the out folder would be a root-owned mode 4755 file on the host), and a setuid-root
file that reaches a mount must not raise the sandbox's privileges (nosuid mounts and
no_new_privs).
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from sandbox import Limits, Mount, SandboxError
from sandbox.bwrap import SANDBOX_UID
from sandbox_testlib import bwrap_or_skip, docker_or_skip


@pytest.fixture(params=["bwrap", "docker"])
def isolating(request: pytest.FixtureRequest):
    """The bwrap and docker backends in turn (skipped where they cannot run, outside CI)."""
    return docker_or_skip() if request.param == "docker" else bwrap_or_skip()


def _expected_owner(backend) -> tuple[int, int] | None:
    """The host (uid, gid) the sandbox must have here, or None where bwrap falls back (root
    grader without libseccomp or setpriv: the sandbox is host root, as the details say)."""
    if backend.name == "docker":
        return SANDBOX_UID, SANDBOX_UID  # the container user; Docker does not remap uids by default
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()  # bwrap maps the sandbox ids to the grader's own
    return (SANDBOX_UID, SANDBOX_UID) if backend.unprivileged_host()[0] is not None else None


def test_files_the_sandbox_writes_are_not_host_root(isolating, tmp_path):
    # Like the grader: the mount sources live in a mode-0700 folder of the grader's.
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    (base / "config").mkdir()
    (base / "config" / "c.json").write_text('{"k": 1}')
    (base / "out").mkdir()
    (base / "out").chmod(0o777)
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    script = "cat /cfg/c.json && cp /bin/sh /out/sh && chmod 4755 /out/sh && echo x > /out/f && mkdir /out/d"
    r = isolating.run(["sh", "-c", script], limits=Limits(wall_s=60),
                      mounts=[Mount(base / "config", "/cfg"), Mount(base / "out", "/out", writable=True)])
    assert r.exit_code == 0 and r.stdout == '{"k": 1}', r.stderr
    sh = (base / "out" / "sh").stat()
    assert sh.st_mode & stat.S_ISUID  # the bit is kept, on a file that is not root's
    owners = {name: ((base / "out" / name).stat().st_uid, (base / "out" / name).stat().st_gid)
              for name in ("sh", "f", "d")}
    expected = _expected_owner(isolating)
    if expected is None:
        pytest.skip(f"bwrap's fallback: the sandbox is host root here ({isolating.run(['true']).details['uid']})")
    assert set(owners.values()) == {expected}
    assert expected[0] != 0


@pytest.mark.skipif(os.geteuid() != 0, reason="making a setuid-root file needs root")
def test_a_setuid_root_file_in_a_mount_raises_nothing(isolating):
    place = Path(tempfile.mkdtemp(dir="/tmp", prefix="mlgrade-suid-"))
    try:
        place.chmod(0o755)
        (place / "in").mkdir()
        (place / "out").mkdir()
        (place / "out").chmod(0o777)
        shutil.copy2("/usr/bin/id", place / "in" / "id")
        os.chown(place / "in" / "id", 0, 0)
        os.chmod(place / "in" / "id", 0o4755)
        if not os.statvfs(place).f_flag & os.ST_NOSUID:
            # Control: on the host the copy is a working setuid-root program.
            seen = subprocess.run(["setpriv", "--reuid", str(SANDBOX_UID), "--regid", str(SANDBOX_UID),
                                   "--clear-groups", str(place / "in" / "id")], capture_output=True, text=True)
            assert "euid=0(" in seen.stdout, seen
        script = ("/in/id; cp /in/id /out/id && chmod 4755 /out/id && /out/id; "
                  "grep -E ' /(in|out) ' /proc/self/mountinfo; grep NoNewPrivs /proc/self/status")
        r = isolating.run(["sh", "-c", script], limits=Limits(wall_s=60),
                          mounts=[Mount(place / "in", "/in"), Mount(place / "out", "/out", writable=True)])
        lines = r.stdout.splitlines()
        if r.exit_code != 0 or len(lines) < 5:
            pytest.fail(f"exit {r.exit_code}: {r.stdout} {r.stderr}")
        assert lines[0].startswith(f"uid={SANDBOX_UID}(") and "euid=" not in lines[0]  # not raised
        assert lines[1].startswith(f"uid={SANDBOX_UID}(") and "euid=" not in lines[1]
        assert lines[-1].split() == ["NoNewPrivs:", "1"]
        options = {line.split()[4]: set(line.split()[5].split(",")) for line in lines[2:-1]}
        if isolating.name == "bwrap":  # bwrap binds nosuid,nodev as well
            assert {"nosuid", "nodev"} <= options["/in"] and {"nosuid", "nodev"} <= options["/out"], options
        # docker binds have no nosuid (the API offers none): no_new_privs above is what holds there
    finally:
        shutil.rmtree(place)


def test_bwrap_command_holds_no_live_descriptor():
    """Only stdin, stdout and stderr are live in the command; anything else bwrap leaves (the
    user-namespace block pipe in unprivileged-host mode) reads EOF at once."""
    backend = bwrap_or_skip()
    code = ("import json, os\nfds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\nseen = {}\n"
            "for fd in fds:\n"
            "    try:\n        target = os.readlink(f'/proc/self/fd/{fd}')\n    except OSError:\n        continue\n"
            "    if fd < 3:\n        continue\n"
            "    os.set_blocking(fd, False)\n"
            "    try:\n        seen[fd] = [target, os.read(fd, 1).decode()]\n"
            "    except BlockingIOError:\n        seen[fd] = [target, 'LIVE']\n"
            "    except OSError as e:\n        seen[fd] = [target, e.strerror]\n"
            "print(json.dumps(seen))")
    r = backend.run([*backend.python(), "-c", code], limits=Limits(wall_s=30))
    assert r.exit_code == 0, r.stderr
    seen = json.loads(r.stdout)
    assert all(target.startswith("pipe:") and got == "" for target, got in seen.values()), seen


def test_bwrap_reports_the_host_uid():
    backend = bwrap_or_skip()
    r = backend.run(["true"], limits=Limits(wall_s=20))
    expected = _expected_owner(backend)
    assert f"host uid {0 if expected is None else expected[0]} (" in r.details["uid"]


def test_bwrap_names_a_mount_the_sandbox_user_cannot_use(tmp_path):
    backend = bwrap_or_skip()
    if os.geteuid() != 0 or backend.unprivileged_host()[0] is None:
        pytest.skip("only where bwrap maps the sandbox to host uid 65534 (a root grader)")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(SandboxError, match=f"cannot read the mount source {private} .*mode 700"):
        backend.run(["true"], mounts=[Mount(private, "/in")], limits=Limits(wall_s=20))
    out = tmp_path / "out"
    out.mkdir(mode=0o755)
    with pytest.raises(SandboxError, match=f"cannot write the mount source {out} .*chmod 0777"):
        backend.run(["true"], mounts=[Mount(out, "/out", writable=True)], limits=Limits(wall_s=20))


def test_bwrap_command_has_no_capabilities():
    backend = bwrap_or_skip()
    code = ("import json, os, signal\n"
            "status = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)\n"
            "seen = {k: status[k].strip() for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs')}\n"
            "init = dict(l.split(':', 1) for l in open('/proc/1/status') if ':' in l)\n"
            "seen['init_uid'] = int(init['Uid'].split()[0])\n"
            "try:\n    os.kill(1, 0); seen['kill_init'] = 'allowed'\n"
            "except PermissionError:\n    seen['kill_init'] = 'EPERM'\n"
            "print(json.dumps(seen))")
    r = backend.run([*backend.python(), "-c", code], limits=Limits(wall_s=30))
    assert r.exit_code == 0, r.stderr
    seen = json.loads(r.stdout)
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(seen[caps], 16) == 0, (caps, seen)
    assert seen["NoNewPrivs"] == "1"
    if os.geteuid() == 0 and backend.unprivileged_host()[0] is not None:
        # bwrap's pid 1 keeps bwrap's own uid (inside root): the command cannot signal it
        assert (seen["init_uid"], seen["kill_init"]) == (0, "EPERM")
