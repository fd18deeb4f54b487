"""The sandbox images: build them (`mlgrade image build`) and look at them (`mlgrade image check`).

    python -m sandbox.image requirements     # the dependency list the images install (pinned by the lock)
    python -m sandbox.image current [--gpu]  # exit 0 when the image is there and built from this checkout

An image is `sandbox/images/Dockerfile` (CPU) or `Dockerfile.gpu` with the base image as the
build argument BASE, and a context assembled here: the Dockerfile, `requirements.txt` (the
project's runtime dependencies from pyproject.toml, not mlgrade itself: the harness is mounted
at run time), `constraints.txt` (the lock) and `wheels/` (the optional wheelhouse; with it the
build installs with `--no-index --find-links` and runs with no network at all).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .api import Limits, SandboxError
from .docker_backend import PYTHON, DockerBackend, connect, default_image, image_fix

IMAGES = Path(__file__).resolve().parent / "images"
PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_BASES = {False: "python:3.11-slim", True: "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"}


INPUTS_LABEL = "mlgrade.inputs"  # inputs_hash() of the checkout an image was built from


class ImageError(SandboxError):
    """Building or inspecting a sandbox image failed (an infrastructure problem)."""


def requirements(project: Path = PROJECT) -> list[str]:
    """The project's runtime dependencies, as pyproject.toml lists them (the lock pins them)."""
    try:
        with open(project / "pyproject.toml", "rb") as f:
            return list(tomllib.load(f)["project"]["dependencies"])
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise ImageError(f"cannot read the dependency list from {project / 'pyproject.toml'} ({exc}); "
                         "build images from a source checkout of mlgrade") from None


def inputs_hash(gpu: bool = False, project: Path = PROJECT) -> str:
    """A short hash of what decides an image's contents: its Dockerfile, the lock, the dependency list."""
    digest = hashlib.sha256()
    digest.update((IMAGES / ("Dockerfile.gpu" if gpu else "Dockerfile")).read_bytes())
    digest.update((project / "constraints.txt").read_bytes())
    digest.update("\n".join(requirements(project)).encode())
    return digest.hexdigest()[:16]


def make_context(dest: Path, *, gpu: bool, wheelhouse: Path | None, project: Path = PROJECT) -> None:
    """Fill dest with the build context: Dockerfile, requirements.txt, constraints.txt, wheels/."""
    constraints = project / "constraints.txt"
    if not constraints.is_file():
        raise ImageError(f"{constraints} is missing; build images from a source checkout of mlgrade")
    shutil.copy2(IMAGES / ("Dockerfile.gpu" if gpu else "Dockerfile"), dest / "Dockerfile")
    shutil.copy2(constraints, dest / "constraints.txt")
    (dest / "requirements.txt").write_text("\n".join(requirements(project)) + "\n")
    wheels = dest / "wheels"
    wheels.mkdir()
    if wheelhouse is not None:
        found = sorted(p for p in wheelhouse.iterdir() if p.suffix == ".whl" or p.name.endswith(".tar.gz"))
        if not found:
            raise ValueError(f"--wheelhouse {wheelhouse}: no wheels in it (make one with: pip download -d "
                             f"{wheelhouse} -c constraints.txt -r <(python -m sandbox.image requirements))")
        for path in found:
            try:
                os.link(path, wheels / path.name)  # same filesystem: no copy
            except OSError:
                shutil.copy2(path, wheels / path.name)


def build(*, gpu: bool = False, base: str | None = None, wheelhouse: Path | None = None, tag: str | None = None,
          log: Callable[[str], None] = lambda line: None) -> str:
    """Build the CPU (or GPU) sandbox image and return its id.

    Raises ValueError for bad arguments, BackendUnavailable when no engine answers, and
    ImageError when the build fails (with the failing step's last line).
    """
    if wheelhouse is not None and not wheelhouse.is_dir():
        raise ValueError(f"--wheelhouse {wheelhouse}: not a folder")
    client = connect()
    tag = tag or default_image(gpu)
    base = base or DEFAULT_BASES[gpu]
    try:
        previous = client.api.inspect_image(tag)["Id"]
    except Exception:  # noqa: BLE001 - not there yet
        previous = None
    with tempfile.TemporaryDirectory(prefix="mlgrade-image-") as tmp:
        context = Path(tmp)
        make_context(context, gpu=gpu, wheelhouse=wheelhouse)
        log(f"building {tag} from {base}" + (f" with the wheelhouse {wheelhouse} (no network)" if wheelhouse else ""))
        kwargs: dict[str, Any] = dict(path=str(context), tag=tag, buildargs={"BASE": base}, rm=True, forcerm=True,
                                      pull=False, decode=True,
                                      labels={"mlgrade.base": base, "mlgrade.wheelhouse": "yes" if wheelhouse else "no",
                                              INPUTS_LABEL: inputs_hash(gpu)})
        if wheelhouse is not None:
            kwargs["network_mode"] = "none"  # air-gapped: nothing may come from outside
        last = ""
        try:
            for chunk in client.api.build(**kwargs):
                if "error" in chunk:
                    detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                    raise ImageError(f"building {tag} failed: {detail.strip().splitlines()[-1]} (after: {last})")
                text = chunk.get("stream", "").strip()
                if text:
                    last = text.splitlines()[-1][:300]
                    if text.startswith("Step ") or "Successfully" in text:
                        log(text)
        except ImageError:
            raise
        except Exception as exc:  # noqa: BLE001 - the engine or the SDK failed mid-build
            message = getattr(exc, "explanation", None) or str(exc)
            raise ImageError(f"building {tag} failed: {message.strip().splitlines()[-1] if message else exc!r}") from None
    try:  # the build stage (with the wheels, if any) is left untagged by the classic builder
        client.api.prune_images(filters={"dangling": True, "label": "mlgrade.stage=build"})
    except Exception:  # noqa: BLE001 - only disk space is at stake
        pass
    image_id = client.api.inspect_image(tag)["Id"]
    if previous not in (None, image_id):
        try:  # the image this build replaced, now untagged (kept if a container or another tag uses it)
            client.api.remove_image(previous)
        except Exception:  # noqa: BLE001
            pass
    return image_id


@dataclass
class ImageReport:
    """What `mlgrade image check` prints about one image."""

    image: str
    present: bool
    image_id: str | None = None
    digest: str | None = None
    created: str | None = None
    size_mb: float | None = None
    python: str | None = None
    torch: str | None = None
    triton: str | None = None
    problem: str | None = None  # None: usable

    def lines(self) -> list[str]:
        if not self.present:
            return [f"{self.image} is missing; {self.problem}"]
        out = [f"{self.image} is present", f"  id      {self.image_id}", f"  digest  {self.digest}",
               f"  created {self.created}", f"  size    {self.size_mb:.0f} MiB",
               f"  python  {self.python}", f"  torch   {self.torch}", f"  triton  {self.triton}"]
        if self.problem:
            out.append(f"  problem {self.problem}")
        return out


VERSIONS = ("import json, platform\nfrom importlib import metadata\n"
            "def v(d):\n    try:\n        return metadata.version(d)\n    except metadata.PackageNotFoundError:\n"
            "        return None\n"
            "print(json.dumps({'python': platform.python_version(), 'torch': v('torch'), 'triton': v('triton')}))")


def check(*, gpu: bool = False, image: str | None = None) -> ImageReport:
    """Is the image there, which id and digest, which python/torch/triton inside (asked in a sandbox run)."""
    import json

    import docker.errors

    image = image or default_image(gpu)
    client = connect()
    try:
        attrs = client.api.inspect_image(image)
    except docker.errors.ImageNotFound:
        return ImageReport(image, False, problem=image_fix(image, gpu))
    report = ImageReport(image, True, image_id=attrs["Id"],
                         digest=(attrs.get("RepoDigests") or ["none (built locally, never pushed)"])[0],
                         created=attrs.get("Created", "?")[:19], size_mb=attrs.get("Size", 0) / 2**20)
    backend = DockerBackend(image=image)
    run = backend.run([PYTHON, "-c", VERSIONS], limits=Limits(wall_s=60, memory_mb=512))
    try:
        found = json.loads(run.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (run.stderr.strip().splitlines() or ["no output"])[-1]
        report.problem = f"{PYTHON} does not run in it (exit {run.exit_code}: {tail}); rebuild it"
        return report
    report.python, report.torch, report.triton = found["python"], found["torch"], found["triton"]
    missing = [name for name in ("torch", "triton") if not found[name]]
    if missing:
        report.problem = f"{', '.join(missing)} missing inside; rebuild it"
    elif not is_current(attrs, gpu):
        report.problem = ("built from another Dockerfile, lock or dependency list than this checkout's; "
                          f"rebuild it with `mlgrade image build{' --gpu' if gpu else ''}`")
    return report


def is_current(attrs: dict[str, Any], gpu: bool = False) -> bool:
    """Whether an image (its inspect attributes) was built from this checkout's inputs."""
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    try:
        return labels.get(INPUTS_LABEL) == inputs_hash(gpu)
    except (OSError, ImageError):
        return True  # no source checkout to compare with: nothing to say


def main(argv: list[str]) -> int:
    if argv == ["requirements"]:
        print("\n".join(requirements()))
        return 0
    if argv and argv[0] == "current":  # exit 0 when the image exists and was built from this checkout
        import docker.errors
        gpu = "--gpu" in argv
        try:
            attrs = connect().api.inspect_image(default_image(gpu))
        except docker.errors.ImageNotFound:
            return 1
        return 0 if is_current(attrs, gpu) else 1
    print("usage: python -m sandbox.image requirements | current [--gpu]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
