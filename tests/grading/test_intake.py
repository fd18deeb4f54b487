"""Intake refuses unsafe or malformed submissions with one clear line, and copies good ones."""
from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from grader import intake as intake_mod
from grader.errors import BadInput
from grader.intake import intake
from tests.conftest import TOY_HOME

REFERENCE = TOY_HOME / "reference" / "toy"
GOOD = (REFERENCE / "calc.py").read_bytes()


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info in members:
            payload = (data or {}).get(info.name)
            if payload is not None:
                info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def _dest(tmp_path: Path) -> Path:
    dest = tmp_path / "dest"
    dest.mkdir(parents=True)
    return dest


def test_folder_zip_and_tar_give_the_same_files(tmp_path: Path) -> None:
    zipped = _zip(tmp_path / "s.zip", {"calc.py": GOOD, "notes/readme.txt": b"hi"})
    tarred = _tar(tmp_path / "s.tar.gz", [tarfile.TarInfo("calc.py"), tarfile.TarInfo("notes/readme.txt")],
                  {"calc.py": GOOD, "notes/readme.txt": b"hi"})
    for source in (zipped, tarred):
        got = intake(source, _dest(tmp_path / ("out-" + source.name)), ["calc.py"])
        assert got.files == ("calc.py", "notes/readme.txt")
        assert (got.root / "calc.py").read_bytes() == GOOD
        assert len(got.sha256) == 64
    folder = intake(REFERENCE, _dest(tmp_path / "dir"), ["calc.py"])
    assert folder.files == ("calc.py",)


def test_single_top_folder_is_looked_into(tmp_path: Path) -> None:
    zipped = _zip(tmp_path / "s.zip", {"mywork/calc.py": GOOD})
    got = intake(zipped, _dest(tmp_path), ["calc.py"])
    assert got.files == ("calc.py",)


def test_pycache_and_git_are_dropped(tmp_path: Path) -> None:
    zipped = _zip(tmp_path / "s.zip", {"calc.py": GOOD, "__pycache__/calc.cpython-311.pyc": b"x", ".git/HEAD": b"x"})
    assert intake(zipped, _dest(tmp_path), ["calc.py"]).files == ("calc.py",)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name,problem", [
    ("../evil.py", "escapes the submission"),
    ("/etc/evil.py", "absolute path"),
    ("a/../../evil.py", "escapes the submission"),
    ("a\\..\\evil.py", "unsafe path"),
])
def test_zip_paths_that_escape_are_refused(tmp_path: Path, name: str, problem: str) -> None:
    zipped = _zip(tmp_path / "s.zip", {"calc.py": GOOD, name: b"boom"})
    with pytest.raises(BadInput) as caught:
        intake(zipped, _dest(tmp_path), ["calc.py"])
    assert problem in _one_line(caught)
    assert not (tmp_path / "evil.py").exists() and not Path("/etc/evil.py").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_tar_links_and_devices_are_refused(tmp_path: Path, kind: bytes) -> None:
    odd = tarfile.TarInfo("calc2.py")
    odd.type = kind
    odd.linkname = "/etc/passwd"
    tarred = _tar(tmp_path / "s.tar.gz", [tarfile.TarInfo("calc.py"), odd], {"calc.py": GOOD})
    with pytest.raises(BadInput) as caught:
        intake(tarred, _dest(tmp_path), ["calc.py"])
    assert "not a regular file" in _one_line(caught)


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("calc.py", GOOD)
        link = zipfile.ZipInfo("link.py")
        link.external_attr = (0o120777 << 16)
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(BadInput, match="not a regular file"):
        intake(path, _dest(tmp_path), ["calc.py"])


def test_folder_with_symlink_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "calc.py").write_bytes(GOOD)
    os.symlink("/etc/passwd", folder / "passwd.py")
    with pytest.raises(BadInput, match="not a regular file"):
        intake(folder, _dest(tmp_path), ["calc.py"])


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    zipped = _zip(tmp_path / "s.zip", {"calc.py": GOOD, "zeros.bin": bytes(15 * 1024 * 1024)})
    assert zipped.stat().st_size < 100_000
    with pytest.raises(BadInput, match="ratio|limit"):
        intake(zipped, _dest(tmp_path), ["calc.py"])


def test_oversize_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake_mod, "MAX_FILE_BYTES", 1000)
    zipped = _zip(tmp_path / "s.zip", {"calc.py": GOOD, "big.bin": os.urandom(5000)}, zipfile.ZIP_STORED)
    with pytest.raises(BadInput, match="over the 1000-byte limit"):
        intake(zipped, _dest(tmp_path), ["calc.py"])


def test_too_many_files_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake_mod, "MAX_FILES", 3)
    zipped = _zip(tmp_path / "s.zip", {f"f{i}.txt": b"x" for i in range(5)} | {"calc.py": GOOD})
    with pytest.raises(BadInput, match="more than 3 files"):
        intake(zipped, _dest(tmp_path), ["calc.py"])


def test_missing_required_file_and_syntax_error(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="missing required file: calc.py"):
        intake(_zip(tmp_path / "a.zip", {"other.py": b"x = 1"}), _dest(tmp_path / "a"), ["calc.py"])
    with pytest.raises(BadInput) as caught:
        intake(_zip(tmp_path / "b.zip", {"calc.py": b"def f(:\n"}), _dest(tmp_path / "b"), ["calc.py"])
    assert "calc.py:1: syntax error" in _one_line(caught)


@pytest.mark.parametrize("name,content,problem", [
    ("s.rar", b"x", "a submission is a folder"),
    ("s.zip", b"not a zip", "not a readable zip"),
    ("s.tar.gz", b"not a tar", "not a readable tar"),
])
def test_unreadable_inputs(tmp_path: Path, name: str, content: bytes, problem: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(BadInput, match=problem):
        intake(tmp_path / name, _dest(tmp_path), ["calc.py"])


def test_missing_submission(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file or folder"):
        intake(tmp_path / "nope", _dest(tmp_path), ["calc.py"])
