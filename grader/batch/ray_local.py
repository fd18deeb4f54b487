"""A local Ray instance that does not outlive the batch that started it, however the batch ends.

`ray.init()` in the batch itself would start gcs_server and raylet as its children with
PR_SET_PDEATHSIG, but a `kill -9` of the batch then leaves the raylet's agents running for up to a
minute (seen with Ray 2.60). So the batch starts a *sitter*, `python -m grader.batch.ray_local`, in
a session of its own: the sitter starts the instance (every Ray daemon, worker and sandbox launcher
lands in the sitter's session, and orphans become the sitter's children: it is a subreaper),
prints the instance's address and blocks reading a pipe from the batch. End of file on that pipe,
whether the batch closed it or died however it died, makes the sitter SIGKILL everything in its
session and below it (the sandboxes have sessions of their own), reap it, remove sandbox containers whose grader is gone, remove its folder (Ray's session
files and the tasks' scratch folders) and exit.

Should the sitter be killed too, the next start cleans up: each instance's folder
(TMPDIR/mlgrade-ray-*) records the batch's and the sitter's pid and start time, and a folder whose
batch is gone has its session killed and is removed.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox.docker_backend import boot_id, process_start

from ..cleanup import remove_tree
from ..errors import InfraError
from ..outdir import one_line


@dataclass(frozen=True)
class LocalRaySettings:
    start_timeout_s: float = 120.0   # from spawning the sitter to the instance's address
    stop_timeout_s: float = 40.0     # the batch waits this long for the sitter to finish stopping
    folder_prefix: str = "mlgrade-ray-"
    orphan_folder_age_s: float = 3600.0  # a folder without a readable owner record is removed after this


SETTINGS = LocalRaySettings()
NODE_RESOURCE = "mlgrade_node"  # one unit per node that grades; see engine_ray.py
OWNER = "owner.json"
SITTER_LOG = "sitter.log"
TASKS = "tasks"  # the instance's folder for its tasks' scratch folders
SCRATCH_ENV = "MLGRADE_RAY_SCRATCH"  # where grade_on_node makes its scratch folder (default: TMPDIR)
PR_SET_CHILD_SUBREAPER = 36


# -- processes ---------------------------------------------------------------------------------

def _stat_fields(pid: int) -> list[bytes] | None:
    """/proc/PID/stat after the command name: [state, ppid, pgrp, session, ..., starttime at 19]."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def session_members(sid: int, since: int = 0, zombies: bool = False) -> list[int]:
    """Processes of session sid that started at or after `since` (ticks), this one excluded; zombies
    (dead, not yet reaped) only when asked for."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        fields = _stat_fields(int(name))
        if fields and len(fields) > 19 and (zombies or fields[0] != b"Z") and int(fields[3]) == sid and int(fields[19]) >= since:
            found.append(int(name))
    return found


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def descendants(root: int) -> list[int]:
    """Live processes below root in the process tree (by parent pid)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields and len(fields) > 1 and fields[0] != b"Z":
                children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_session(sid: int, since: int = 0, tree: bool = True) -> None:
    """SIGKILL every process of session sid (started at or after `since`) and, with `tree`, every
    process below sid in the process tree (sandboxes run in sessions of their own), until none is left.

    No grace: a grading cut off here leaves nothing that outlives it (bwrap dies with its parent,
    the sitter sweeps containers afterwards, and a task's temporary files are under the
    instance's folder, see engine_ray.grade_on_node)."""
    for _ in range(100):  # processes may still fork while we kill: go round until none is left
        left = sorted((set(session_members(sid, since)) | set(descendants(sid) if tree else ())) - {os.getpid()})
        if not left:
            return
        _signal(left, signal.SIGKILL)
        time.sleep(0.05)


def _reap_children() -> None:
    """Reap exited children (the sitter is a subreaper: orphaned Ray processes become its children)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _sweep_containers() -> None:
    """Remove sandbox containers whose grader process is gone (the killed workers'), best effort."""
    if not (os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock")):
        return
    try:
        from sandbox.docker_backend import connect, sweep
        sweep(connect())
    except Exception:  # noqa: BLE001 - no engine, no SDK: nothing of ours can be there
        pass


# -- the record of an instance -----------------------------------------------------------------

def _write_owner(folder: Path, record: dict[str, object]) -> None:
    tmp = folder / f".{OWNER}.tmp"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, folder / OWNER)


def _owner_gone(record: dict[str, object]) -> bool:
    if record.get("boot") != boot_id():
        return True
    pid = record.get("batch_pid")
    return not isinstance(pid, int) or process_start(pid) != record.get("batch_start")


def sweep_stale(base: Path | None = None) -> list[Path]:
    """Stop and remove the local instances whose batch is gone (sitter killed too); returns their folders."""
    base = Path(tempfile.gettempdir()) if base is None else base
    removed = []
    for folder in base.glob(f"{SETTINGS.folder_prefix}*"):
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
            try:
                record = json.loads((folder / OWNER).read_text())
            except (OSError, ValueError):
                if time.time() - folder.stat().st_mtime < SETTINGS.orphan_folder_age_s:
                    continue  # being created right now by another batch
                record = {}
            if record and not _owner_gone(record):
                continue
            sitter = record.get("sitter_pid")
            if isinstance(sitter, int) and record.get("boot") == boot_id():
                since, now = int(str(record.get("sitter_start") or 0)), process_start(sitter)
                # A session id is not reused while the session has members; a live process with the
                # sitter's pid and another start time means the pid was reused: not ours to touch.
                if now is None or now == record.get("sitter_start"):
                    stop_session(sitter, since, tree=now is not None)
            remove_tree(folder)
            removed.append(folder)
        except OSError:
            continue
    return removed


# -- the batch's side --------------------------------------------------------------------------

class LocalRay:
    """A local instance run by a sitter process; `stop()` (or the batch's death) ends all of it."""

    def __init__(self, folder: Path, proc: subprocess.Popen, address: str, token: str) -> None:
        self.folder, self.proc, self.address, self.token = folder, proc, address, token

    @classmethod
    def start(cls, num_cpus: int, object_store_bytes: int) -> "LocalRay":
        sweep_stale()
        folder = Path(tempfile.mkdtemp(prefix=SETTINGS.folder_prefix))
        me = os.getpid()
        record: dict[str, object] = {"boot": boot_id(), "batch_pid": me, "batch_start": process_start(me)}
        _write_owner(folder, record)
        token = secrets.token_hex(32)
        config = {"num_cpus": num_cpus, "object_store_bytes": object_store_bytes, "temp_dir": str(folder / "ray")}
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
        env.pop("RAY_ADDRESS", None)
        with open(folder / SITTER_LOG, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "grader.batch.ray_local", json.dumps(config)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                                    start_new_session=True, cwd=folder)
        record.update(sitter_pid=proc.pid, sitter_start=process_start(proc.pid))
        try:
            _write_owner(folder, record)
            address = cls._read_address(proc, folder)
        except BaseException:
            cls._kill(proc, folder)
            raise
        return cls(folder, proc, address, token)

    @staticmethod
    def _read_address(proc: subprocess.Popen, folder: Path) -> str:
        assert proc.stdout is not None
        deadline = time.monotonic() + SETTINGS.start_timeout_s
        line = b""
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
        try:
            message = json.loads(line)
        except ValueError:
            message = {}
        if "address" in message:
            return str(message["address"])
        why = message.get("error") or _last_line(folder / SITTER_LOG) or (
            "no answer" if proc.poll() is None else f"the sitter exited with code {proc.returncode}")
        raise InfraError(f"cannot start a local Ray instance: {one_line(str(why))[:300]}")

    @staticmethod
    def _kill(proc: subprocess.Popen, folder: Path) -> None:
        since = int(process_start(proc.pid) or 0)
        stop_session(proc.pid, since)
        proc.kill()
        proc.wait()
        remove_tree(folder)

    def pids(self) -> list[int]:
        """The instance's processes (the sitter, Ray's daemons, workers, sandboxes they started)."""
        if self.proc.poll() is not None:
            return []
        members = session_members(self.proc.pid, int(process_start(self.proc.pid) or 0))
        return [self.proc.pid, *sorted(set(members) | set(descendants(self.proc.pid)))]

    def stop(self) -> None:
        """Close the sitter's pipe and wait for it to stop the instance; kill it all if it does not."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=SETTINGS.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self._kill(self.proc, self.folder)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            remove_tree(self.folder)


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


# -- the sitter --------------------------------------------------------------------------------

def _subreaper() -> None:
    """Become the parent of every orphaned descendant, so none is left a zombie that still looks alive."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def sitter_main(config: dict[str, object]) -> int:
    """Start the instance, print {"address": ...}, wait for end of file on stdin, stop the session."""
    folder = Path.cwd()
    me, since = os.getpid(), int(process_start(os.getpid()) or 0)
    _subreaper()
    (folder / TASKS).mkdir(exist_ok=True)
    os.environ[SCRATCH_ENV] = str(folder / TASKS)  # the workers inherit it: their tasks' files live in here

    def stop() -> None:
        stop_session(me, since)
        for _ in range(200):  # reaped, the killed workers are gone for the container sweep's owner check
            _reap_children()
            if not session_members(me, since, zombies=True):
                break
            time.sleep(0.05)
        _sweep_containers()
        remove_tree(folder)

    try:
        import ray
        ctx = ray.init(address="local", num_cpus=int(str(config["num_cpus"])), resources={NODE_RESOURCE: 1.0},
                       object_store_memory=int(str(config["object_store_bytes"])), include_dashboard=False,
                       _temp_dir=str(config["temp_dir"]), log_to_driver=False, logging_level=logging.WARNING,
                       namespace="mlgrade-sitter")
        address = ctx.address_info["gcs_address"]
    except BaseException as exc:  # noqa: BLE001 - said on stdout, in one line, for the batch
        sys.stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        sys.stdout.flush()
        stop()
        os._exit(1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop as on end of file
    try:
        sys.stdout.write(json.dumps({"address": address}) + "\n")
        sys.stdout.flush()
        while True:  # until end of file: the batch closed the pipe, or died
            readable, _, _ = select.select([sys.stdin], [], [], 1.0)
            if readable and not os.read(sys.stdin.fileno(), 4096):
                break
            _reap_children()
    finally:
        stop()
        os._exit(0)  # Ray's atexit hooks would talk to the daemons just killed


if __name__ == "__main__":
    sys.exit(sitter_main(json.loads(sys.argv[1])))
