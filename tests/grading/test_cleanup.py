"""remove_tree removes what a sandbox could leave in its out folder: any depth, links, odd files."""
from __future__ import annotations

import os
import socket
from pathlib import Path

from grader.cleanup import remove_tree


def _deep(root: Path, depth: int) -> None:
    """A chain of `depth` folders made relative to each other's descriptors (paths too long to name)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d" * 200, dir_fd=fd)
        inner = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "w") as leaf:
        leaf.write("x")
    os.close(fd)


def test_a_tree_3000_levels_deep_is_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _deep(out, 3000)  # 600 KB of path: shutil.rmtree fails on it
    remove_tree(out)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_links_are_removed_not_followed_and_odd_files_go_too(tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "precious").write_text("host data")
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "to-keep").symlink_to(keep)
    (out / "sub" / "to-file").symlink_to(keep / "precious")
    os.mkfifo(out / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(out / "sock"))
    (out / "locked").mkdir()
    (out / "locked" / "f").write_text("x")
    (out / "locked").chmod(0)
    remove_tree(out)
    assert not out.exists()
    assert (keep / "precious").read_text() == "host data"


def test_a_missing_folder_is_fine(tmp_path: Path) -> None:
    remove_tree(tmp_path / "nothing")
