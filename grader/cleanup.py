"""Removing a folder a sandbox could write: iterative, never follows links, any depth.

`shutil.rmtree` (Python 3.11) recurses once per level and builds paths, so a tree 3000 levels
deep left in the out folder raises RecursionError (or ENAMETOOLONG) and stays on disk. Here
every directory is emptied by moving its children up into the top folder and then removed,
with two file descriptors open at a time and names relative to them.
"""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def remove_tree(path: Path) -> None:
    """Remove path and everything below it; a missing path is fine. Links are removed, not followed."""
    try:
        top = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        return
    except NotADirectoryError:  # a link or a file where a folder was expected
        os.unlink(path)
        return
    try:
        while True:
            with os.scandir(top) as entries:
                names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
            if not names:
                break
            for name, is_dir in names:
                if not is_dir:
                    os.unlink(name, dir_fd=top)
                    continue
                _lift_children(top, name)
                os.rmdir(name, dir_fd=top)
    finally:
        os.close(top)
    os.rmdir(path)


def _lift_children(top: int, name: str) -> None:
    """Move every entry of top/name into top itself (under fresh names), leaving top/name empty."""
    child = os.open(name, _DIR_FLAGS, dir_fd=top)
    try:
        os.chmod(child, stat.S_IRWXU)  # a folder the sandbox made unreadable or unwritable
        with os.scandir(child) as entries:
            inner = [e.name for e in entries]
        for entry in inner:
            os.rename(entry, f".rm-{secrets.token_hex(8)}", src_dir_fd=child, dst_dir_fd=top)
    finally:
        os.close(child)
