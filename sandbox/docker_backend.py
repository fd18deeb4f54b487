"""The `docker` backend: one fresh, hardened container per run, through the Docker SDK.

Each run creates a container from the sandbox image (`mlgrade image build`), attaches to its
stdin, stdout and stderr before starting it, writes `stdin` and closes it, reads both output
streams under the cap, enforces the wall clock from the host (and, as a backstop should the
grader die, with `timeout` inside), and removes the container in a `finally` (Ctrl-C and the
CLI's SIGTERM included; both wait for a create call in flight, so its id is known, and for the
removal itself). Containers carry labels naming the grader process that owns them;
the first use of the backend in a process removes labelled containers whose owner is gone,
so a grader killed with SIGKILL leaves nothing behind past the next mlgrade command.

Defaults (see `DockerBackend.container_config`): no network, every capability dropped,
no-new-privileges, the seccomp profile `sandbox/seccomp.json` that bwrap applies too (it
replaces Docker's default profile; docs/security.md says what that trades), a read-only root,
size-capped tmpfs on /tmp and /dev/shm, pids, memory (= memory + swap: no swap) and CPU
limits in the container's cgroup, ulimits nofile, fsize and core=0, uid/gid 65534, a private
IPC namespace, an init process that reaps orphans, no log driver (output reaches only the
attach stream), never privileged, never the Docker socket. The caller's mounts are read-only
unless marked writable. Docker binds them without nosuid (its API has no such option):
no-new-privileges is what keeps a setuid file there from raising privileges.

The command's environment is exactly what the caller gives (`env -i` inside: Docker itself
would add HOSTNAME and HOME). Peak memory is not known: the container's cgroup is gone by the
time its exit is reported.
"""
from __future__ import annotations

import math
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import _seccomp
from ._proc import _Capture, check_mounts, command_env
from .api import BackendUnavailable, Device, Limits, Mount, RunResult, SandboxError

DEFAULT_IMAGE = "mlgrade-sandbox:cpu"
DEFAULT_GPU_IMAGE = "mlgrade-sandbox:gpu"
PYTHON = "/opt/mlgrade/venv/bin/python"  # where both Dockerfiles put the pinned lock
SANDBOX_USER = "65534:65534"
HOSTNAME = "sandbox"
LABEL = "mlgrade.sandbox"  # every container this backend creates has LABEL=1
OWNER_PID, OWNER_START, OWNER_BOOT, OWNER_HOST = (f"{LABEL}.owner.{k}" for k in ("pid", "start", "boot", "host"))
GRACE_S = 10  # the in-container `timeout` fires this long after the host's wall clock
GPU_CHECK_EXIT = 86  # the GPU preflight's exit code when no GPU is visible
GPU_CHECK_TAG = "mlgrade-gpu-check:"
_MiB = 2**20
_DRAIN_S = 2.0
_HARDENING = ("network=none, cap_drop=ALL, no-new-privileges, seccomp=mlgrade (sandbox/seccomp.json), "
              "read-only root, ipc=private, init, user 65534, no log driver")

# Runs inside the container before the command when device="cuda": is a GPU visible through the
# driver API? Then exec the command (same pid, stdin untouched). Nothing of the candidate's runs
# before it.
GPU_CHECK = f"""
import ctypes, os, sys
why = None
try:
    cuda = ctypes.CDLL("libcuda.so.1")
    count = ctypes.c_int(0)
    rc = cuda.cuInit(0)
    if rc != 0:
        why = f"cuInit failed with CUDA error {{rc}}"
    elif cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        why = "the CUDA driver sees no GPU"
except OSError as e:
    why = f"libcuda.so.1 is not in the container ({{e}})"
if why:
    sys.stderr.write("{GPU_CHECK_TAG} " + why + "\\n")
    sys.exit({GPU_CHECK_EXIT})
os.execvp(sys.argv[1], sys.argv[1:])
"""

ENGINE_FIX = ("start it (systemctl start docker, or dockerd &), or point DOCKER_HOST at one; "
              "without Docker use --backend bwrap")


def image_fix(image: str, gpu: bool = False) -> str:
    """One line saying how to get a missing sandbox image."""
    flag = " --gpu" if gpu else ""
    return (f"build it with `mlgrade image build{flag}` (no registry: sandbox/images/offline-base.sh, then "
            f"`mlgrade image build{flag} --base mlgrade-base:bookworm --wheelhouse DIR`), or set "
            f"{'MLGRADE_GPU_IMAGE' if gpu else 'MLGRADE_IMAGE'} to an image you have")


def default_image(gpu: bool = False) -> str:
    """The sandbox image name: MLGRADE_IMAGE / MLGRADE_GPU_IMAGE, else mlgrade-sandbox:cpu / :gpu."""
    if gpu:
        return os.environ.get("MLGRADE_GPU_IMAGE") or DEFAULT_GPU_IMAGE
    return os.environ.get("MLGRADE_IMAGE") or DEFAULT_IMAGE


# -- the engine ----------------------------------------------------------------------------

_clients: dict[str, Any] = {}
_swept: set[str] = set()


def _engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect() -> Any:
    """A DockerClient for the engine at DOCKER_HOST (or the local socket), cached per process.

    Raises BackendUnavailable with the fix when the SDK is missing or no engine answers. The
    first successful connection in a process removes containers left by dead graders.
    """
    address = _engine_address()
    if address not in _clients:
        try:
            import docker
        except ImportError:
            raise BackendUnavailable("the docker SDK for Python is not installed: pip install docker") from None
        try:
            client = docker.from_env(timeout=120)
            client.ping()
        except Exception as exc:  # noqa: BLE001 - the SDK raises many types for "no engine"
            detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise BackendUnavailable(f"no Docker engine answers at {address} ({detail}): {ENGINE_FIX}") from None
        _clients[address] = client
    client = _clients[address]
    if address not in _swept:
        _swept.add(address)
        sweep(client)
    return client


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def process_start(pid: int) -> str | None:
    """The start time of pid (clock ticks since boot, from /proc), or None when no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(b")", 1)[1].split()[19].decode()


def owner_labels(pid: int | None = None) -> dict[str, str]:
    """The labels that tie a container to this grader process (pid reuse is caught by the start time)."""
    pid = os.getpid() if pid is None else pid
    return {LABEL: "1", OWNER_PID: str(pid), OWNER_START: process_start(pid) or "?",
            OWNER_BOOT: boot_id(), OWNER_HOST: socket.gethostname()}


def owner_gone(labels: dict[str, str]) -> bool:
    """True when the grader process named in labels is certainly gone (on this host)."""
    if labels.get(OWNER_HOST) != socket.gethostname():
        return False  # another machine's grader on a shared engine: not ours to judge
    if labels.get(OWNER_BOOT) != boot_id():
        return True  # this host rebooted since
    try:
        pid = int(labels.get(OWNER_PID, ""))
    except ValueError:
        return True
    if labels.get(OWNER_START) == "?":  # no /proc where that grader ran: the pid alone must do
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return process_start(pid) != labels.get(OWNER_START)


def sweep(client: Any) -> list[str]:
    """Remove labelled containers whose grader process is gone; returns their names."""
    removed = []
    try:
        leftovers = client.api.containers(all=True, filters={"label": f"{LABEL}=1"})
    except Exception:  # noqa: BLE001 - best effort: a failed sweep must not stop a grading
        return removed
    for info in leftovers:
        if owner_gone(info.get("Labels") or {}):
            try:
                client.api.remove_container(info["Id"], force=True)
                removed.append((info.get("Names") or [info["Id"][:12]])[0].lstrip("/"))
            except Exception:  # noqa: BLE001 - gone meanwhile, or being removed by its engine
                pass
    return removed


def gpu_device_request(gpus: str = "all", cdi: bool = True) -> Any:
    """The SDK device request for `gpus` ("all", or indices such as "0" or "0,2").

    CDI (the default): driver "cdi" with CDI device names nvidia.com/gpu=..., what Docker >= 25
    does for `--device nvidia.com/gpu=all`; needs the NVIDIA Container Toolkit's CDI spec on the
    host. Legacy (cdi=False): the "nvidia" driver with the gpu capability, what `--gpus` does.
    """
    from docker.types import DeviceRequest

    ids = [g.strip() for g in gpus.split(",") if g.strip()] if gpus != "all" else []
    if gpus != "all" and (not ids or not all(g.isdigit() for g in ids)):
        raise SandboxError(f"MLGRADE_GPUS={gpus!r}: use 'all' or GPU indices such as '0' or '0,2'")
    if cdi:
        return DeviceRequest(driver="cdi", device_ids=[f"nvidia.com/gpu={g}" for g in ids or ["all"]])
    if ids:
        return DeviceRequest(driver="nvidia", device_ids=ids, capabilities=[["gpu"]])
    return DeviceRequest(driver="nvidia", count=-1, capabilities=[["gpu"]])


def _raw(sock: Any) -> socket.socket:
    return getattr(sock, "_sock", sock)


def _pump(sock: socket.socket, out: _Capture, err: _Capture) -> None:
    """Read Docker's multiplexed attach stream (8-byte frame headers) into the two captures."""
    buf = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        buf += chunk
        while len(buf) >= 8:
            size = int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + size:
                break
            (err if buf[0] == 2 else out).feed(bytes(buf[8:8 + size]))
            del buf[:8 + size]


def _feed(sock: socket.socket, data: bytes) -> None:
    """Write stdin, then half-close: the engine closes the command's stdin (stdin_once)."""
    try:
        sock.sendall(data)
    except OSError:
        return  # the command exited without reading it all
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class DockerBackend:
    """Runs each command in a fresh hardened container; see the module docstring."""

    name = "docker"
    isolated = True

    def __init__(self, image: str | None = None, gpu_image: str | None = None, gpus: str | None = None,
                 cdi: bool | None = None) -> None:
        self.image = image or default_image()
        self.gpu_image = gpu_image or default_image(gpu=True)
        self.gpus = gpus or os.environ.get("MLGRADE_GPUS") or "all"
        self.cdi = cdi if cdi is not None else os.environ.get("MLGRADE_GPU_CDI", "1") != "0"

    # -- availability --------------------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        """None when an engine answers and the CPU image is there, else why not and the fix."""
        try:
            self._image_id(connect(), self.image)
        except BackendUnavailable as exc:
            return str(exc)
        return None

    def python(self) -> list[str]:
        """The image's interpreter, with exactly the project's pinned lock."""
        return [PYTHON]

    @staticmethod
    def _image_id(client: Any, image: str, gpu: bool = False) -> tuple[str, str]:
        """(image id, repo digest or a note) for image; BackendUnavailable with the fix when missing."""
        import docker.errors

        try:
            attrs = client.api.inspect_image(image)
        except docker.errors.ImageNotFound:
            raise BackendUnavailable(f"the sandbox image {image} is not there: {image_fix(image, gpu)}") from None
        except docker.errors.APIError as exc:
            raise BackendUnavailable(f"the Docker engine failed to inspect {image}: {exc.explanation}") from None
        digests = attrs.get("RepoDigests") or []
        return attrs["Id"], digests[0] if digests else "none (built locally, never pushed)"

    # -- the container -------------------------------------------------------------------
    def container_config(
        self,
        argv: Sequence[str],
        *,
        mounts: Sequence[Mount],
        env: dict[str, str],
        workdir: str,
        limits: Limits,
        device: Device,
        image: str,
        stdin: bool,
        labels: dict[str, str] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(create_container kwargs without host_config, create_host_config kwargs) for one run.

        Pure: talks to no engine, so the hardening and the GPU request can be tested anywhere.
        """
        from docker.types import LogConfig, Ulimit
        from docker.types import Mount as DockerMount

        for key in env:
            if not key or "=" in key or "\0" in key:
                raise SandboxError(f"invalid environment variable name: {key!r}")
        for mount in mounts:
            if _is_docker_socket(mount.source):
                raise SandboxError(f"refusing to mount the Docker socket into the sandbox ({mount.source})")
        deadline = math.ceil(limits.wall_s) + GRACE_S
        command = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()),
                   "/usr/bin/timeout", "-s", "KILL", str(deadline)]
        if device == "cuda":
            command += [PYTHON, "-c", GPU_CHECK]
        command += list(argv)
        memory = limits.memory_mb * _MiB
        tmpfs_opts = f"rw,nosuid,nodev,size={limits.memory_mb}m,mode=1777"
        host: dict[str, Any] = dict(
            network_mode="none",
            cap_drop=["ALL"],
            # The engine takes the profile's content; it replaces Docker's default profile.
            security_opt=["no-new-privileges:true", "seccomp=" + _seccomp.profile_text()],
            privileged=False,
            read_only=True,
            tmpfs={"/tmp": tmpfs_opts},
            shm_size=memory,
            ipc_mode="private",
            init=True,
            pids_limit=limits.pids,
            mem_limit=memory,
            memswap_limit=memory,
            nano_cpus=int(limits.cpus * 1e9),
            ulimits=[Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile),
                     Ulimit(name="fsize", soft=limits.file_size_mb * _MiB, hard=limits.file_size_mb * _MiB),
                     Ulimit(name="core", soft=0, hard=0)],
            log_config=LogConfig(type="none"),
            mounts=[DockerMount(target=m.target, source=str(os.path.abspath(m.source)), type="bind",
                                read_only=not m.writable) for m in mounts],
        )
        if device == "cuda":
            host["device_requests"] = [gpu_device_request(self.gpus, self.cdi)]
        create: dict[str, Any] = dict(
            image=image,
            command=command,
            user=SANDBOX_USER,
            working_dir=workdir,
            hostname=HOSTNAME,
            environment={},
            labels=labels if labels is not None else owner_labels(),
            network_disabled=True,
            stdin_open=stdin,  # with detach=False the SDK also sets StdinOnce: EOF once we half-close
            tty=False,
        )
        return create, host

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
        """Run argv in a fresh container; see `sandbox.api.Backend.run`."""
        if not argv:
            raise SandboxError("empty argv")
        check_mounts(mounts)
        client = connect()
        image = self.gpu_image if device == "cuda" else self.image
        image_id, digest = self._image_id(client, image, gpu=device == "cuda")
        create, host = self.container_config(argv, mounts=mounts, env=command_env(env), workdir=workdir,
                                             limits=limits, device=device, image=image_id, stdin=stdin is not None)
        details = {"device": device, "image": image, "image_id": image_id, "image_digest": digest,
                   "engine": _engine_version(client), "uid": f"{SANDBOX_USER.split(':')[0]} (container user)",
                   "hardening": _HARDENING, "peak_memory": "not measured (docker)"}
        if device == "cuda":
            details["gpus"] = f"{self.gpus} ({'cdi' if self.cdi else 'nvidia driver'})"
        enforced = ["memory:cgroup-docker", "swap:cgroup-docker", "pids:cgroup-docker", "cpu:cgroup-docker",
                    "fsize:rlimit", "nofile:rlimit", "wall:kill", "output:cap", "tmpfs:size", _seccomp.LABEL]
        out, err = _Capture(limits.output_bytes), _Capture(limits.output_bytes)
        container: str | None = None
        name: str | None = None
        sock: socket.socket | None = None
        try:
            try:
                # Ctrl-C or SIGTERM (a batch worker whose batch was killed) waits for the create call:
                # interrupting it leaves no id here while the engine may still create the container
                # after a removal by name came too early (seen as a left-behind container). The name
                # still serves the clean-up when the call itself fails after the engine acted.
                name = f"mlgrade-{secrets.token_hex(6)}"
                created: list[str] = []
                try:
                    _uninterrupted(lambda: created.append(client.api.create_container(
                        host_config=client.api.create_host_config(**host), name=name, **create)["Id"]))
                finally:
                    container = created[0] if created else None
                params = {"stdout": 1, "stderr": 1, "stream": 1, "stdin": 1 if stdin is not None else 0}
                sock = _raw(client.api.attach_socket(container, params=params))
                sock.settimeout(None)
            except Exception as exc:  # noqa: BLE001
                raise SandboxError(f"docker could not create the container: {_explain(exc)}") from None
            reader = threading.Thread(target=_pump, args=(sock, out, err), daemon=True, name="docker-output")
            reader.start()
            start = time.monotonic()
            try:
                client.api.start(container)
            except Exception as exc:  # noqa: BLE001
                raise SandboxError(f"docker could not start the container: {_explain(exc)}") from None
            if stdin is not None:
                threading.Thread(target=_feed, args=(sock, stdin), daemon=True, name="docker-stdin").start()
            try:
                timed_out = not self._wait(client, container, start + limits.wall_s)
                ended = time.monotonic()
                if timed_out:
                    ended = min(ended, start + limits.wall_s)
                    try:
                        client.api.kill(container)
                    except Exception:  # noqa: BLE001 - it may have exited just now
                        pass
                    self._wait(client, container, time.monotonic() + 30)
                reader.join(_DRAIN_S)
                state = client.api.inspect_container(container)["State"]
            except Exception as exc:  # noqa: BLE001 - the engine failed us mid-run
                raise SandboxError(f"the Docker engine failed during the run: {_explain(exc)}") from None
        finally:
            _uninterrupted(lambda: _clean_up(client, sock, container or name))  # a second signal must not skip it
        oom = bool(state.get("OOMKilled"))
        code = state.get("ExitCode")
        exit_code: int | None = None if timed_out or (oom and code == 137) else code
        if device == "cuda" and code == GPU_CHECK_EXIT and GPU_CHECK_TAG in err.text().split("\n", 1)[0]:
            why = err.text().split(GPU_CHECK_TAG, 1)[1].strip().splitlines()[0]
            raise SandboxError(f"no GPU is visible inside the container ({why}); the host needs the NVIDIA driver "
                               "and the NVIDIA Container Toolkit >= 1.17.8 in CDI mode (docs/security.md)")
        if exit_code is not None and exit_code > 128:
            try:
                details["signal"] = signal.Signals(exit_code - 128).name
            except ValueError:
                pass
        return RunResult(backend=self.name, exit_code=exit_code, stdout=out.text(), stderr=err.text(),
                         stdout_truncated=out.truncated, stderr_truncated=err.truncated, timed_out=timed_out,
                         oom_killed=oom, wall_s=ended - start, peak_memory_mb=None, isolated=True,
                         enforced=enforced, details=details)

    @staticmethod
    def _wait(client: Any, container: str, deadline: float) -> bool:
        """Wait for the container to exit until deadline (monotonic); False when it is still running."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                client.api.wait(container, timeout=max(left, 0.05))
                return True
            except Exception:  # noqa: BLE001 - requests' read timeout, or the engine dropping the call
                state = client.api.inspect_container(container)["State"]
                if not state.get("Running"):
                    return True


def _is_docker_socket(path: os.PathLike | str) -> bool:
    try:
        real = os.path.realpath(path)
        if os.path.isdir(real):
            return any(os.path.exists(os.path.join(real, n)) and _is_socket(os.path.join(real, n))
                       for n in ("docker.sock", "run/docker.sock"))
        return _is_socket(real)
    except OSError:
        return False


def _is_socket(path: str) -> bool:
    import stat
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _uninterrupted(work: Callable[[], None]) -> None:
    """Run work to its end even when Ctrl-C (or SIGTERM, which the CLI and batch workers turn into
    Ctrl-C) arrives meanwhile, then raise the KeyboardInterrupt. Work runs in a thread of its own and
    the main thread waits out any interrupt: masking the signals instead does not hold when the
    process has other threads (rich's progress bar, the output readers), as the kernel then hands the
    signal to one of them and Python raises it in the main thread all the same."""
    if threading.current_thread() is not threading.main_thread():
        work()  # Python raises KeyboardInterrupt only in the main thread
        return
    failure: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            failure.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=run, name="docker-uninterrupted", daemon=True)
    interrupted: KeyboardInterrupt | None = None
    try:
        worker.start()
    except KeyboardInterrupt as exc:  # start() may or may not have launched the thread
        interrupted = exc
    unstarted_until = time.monotonic() + 1.0
    while not done.is_set():
        try:
            if worker.is_alive():
                done.wait()
            elif time.monotonic() > unstarted_until:
                break  # an interrupted start() that never launched it
            else:
                done.wait(0.01)
        except KeyboardInterrupt as exc:
            interrupted = exc
    if interrupted is not None:
        raise interrupted
    if failure:
        raise failure[0]


def _clean_up(client: Any, sock: socket.socket | None, container: str | None) -> None:
    """Close the attach socket and remove the container (by id or name; force: a running one is
    killed first; 404, never created, counts as removed)."""
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass
    if container is None:
        return
    for attempt in range(3):
        try:
            client.api.remove_container(container, force=True)
            return
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "status_code", None) == 404:
                return
            time.sleep(0.2 * (attempt + 1))


def _engine_version(client: Any) -> str:
    cached = getattr(client, "_mlgrade_version", None)
    if cached is None:
        try:
            cached = f"docker {client.api.version().get('Version', '?')}"
        except Exception:  # noqa: BLE001
            cached = "docker ?"
        client._mlgrade_version = cached
    return cached


def _explain(exc: Exception) -> str:
    return (getattr(exc, "explanation", None) or str(exc) or type(exc).__name__).splitlines()[0][:300]
