"""The round folder read back (grader/batch/layout.py) when its path or its files are not what a
plain round has: characters a SQLite URI would cut at ('#', '?', '%', a space), a report.json that is
a FIFO, a link, too large, too deep or holds NaN. Real rounds (`mlgrade batch` on the toy exercise,
bwrap or the process backend where bwrap cannot run), real CLI runs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader.batch.layout import MAX_JSON_BYTES, MAX_JSON_DEPTH, RoundFileError, read_json, read_round, sqlite_uri
from sandbox import available_backends
from tests.conftest import PROJECT, TOY_HOME

BACKEND = "bwrap" if available_backends().get("bwrap") is None or os.environ.get("CI") == "true" else "process"


def mlgrade(*args: str | os.PathLike[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLGRADE_HOME": str(TOY_HOME), "MLGRADE_RETRY_DELAY": "0.05"}
    return subprocess.run([sys.executable, "-m", "grader", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=PROJECT, timeout=timeout)


@pytest.mark.parametrize("name", ["round#2 a", "r?mode=rw&x=%41%"])
def test_a_round_folder_named_with_uri_characters_grades_resumes_and_exports(tmp_path: Path, name: str) -> None:
    source = tmp_path / "source"
    source.mkdir()
    shutil.copytree(TOY_HOME / "reference" / "toy", source / "ref")
    parent = tmp_path / "rounds"
    parent.mkdir()
    out = parent / name
    first = mlgrade("batch", "toy", source, "--out", out, "--backend", BACKEND)
    assert first.returncode == 0, first.stderr
    assert (out / "summary.html").is_file() and (out / "similarity.json").is_file()
    assert [p.name for p in parent.iterdir()] == [name]  # no stray file named by a cut-off URI
    again = mlgrade("batch", "toy", source, "--out", out, "--backend", BACKEND)
    assert again.returncode == 0, again.stderr
    assert "1 candidates, 0 to grade, 1 already final" in again.stderr
    for fmt in ("csv", "jsonl", "gradescope", "junit"):
        run = mlgrade("export", out, "--format", fmt)
        assert run.returncode == 0 and run.stderr == "", run.stderr
    assert "ref,graded,100.0" in (out / "exports" / "scores.csv").read_text()
    assert [(e.candidate, e.state) for e in read_round(out).entries] == [("ref", "graded")]
    assert [p.name for p in parent.iterdir()] == [name]


def test_sqlite_uri_quotes_what_would_end_or_change_the_path(tmp_path: Path) -> None:
    uri = sqlite_uri(tmp_path / "a#b?c%d e" / "ledger.sqlite3", mode="ro")
    assert uri.startswith("file:/") and uri.endswith("/a%23b%3Fc%25d%20e/ledger.sqlite3?mode=ro")


def _refused(path: Path, problem: str) -> None:
    with pytest.raises(RoundFileError) as caught:
        read_json(path)
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_read_json_refuses_what_mlgrade_does_not_write(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # opened without O_NONBLOCK, reading it would wait for a writer forever
    _refused(fifo, "not a regular file")
    target = tmp_path / "target.json"
    target.write_text("{}")
    (tmp_path / "link.json").symlink_to(target)
    _refused(tmp_path / "link.json", "not a regular file")
    _refused(tmp_path, "")  # a folder
    big = tmp_path / "big.json"
    with open(big, "wb") as handle:
        handle.truncate(MAX_JSON_BYTES + 1)  # sparse: nothing is read
    _refused(big, "over 64 MiB")
    for name, text, problem in [("deep", "[" * 200_000 + "]" * 200_000, "nested deeper"),
                                ("deep-object", '{"a": ' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1),
                                 "nested deeper"),
                                ("nan", '{"percent": NaN}', "NaN is not JSON"),
                                ("inf", '{"points": [-Infinity]}', "-Infinity is not JSON"),
                                ("cut", '{"schema": ', "not JSON"), ("latin1", '{"a": "\xe9"}', "not JSON")]:
        path = tmp_path / f"{name}.json"
        path.write_bytes(text.encode("latin-1"))
        _refused(path, problem)
    assert read_json(tmp_path / "missing.json") is None
    nested = '{"a": ' * (MAX_JSON_DEPTH - 1) + "1.5" + "}" * (MAX_JSON_DEPTH - 1)
    (tmp_path / "ok.json").write_text(nested)
    assert read_json(tmp_path / "ok.json") is not None
