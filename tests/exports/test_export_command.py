"""mlgrade export: bad input is one line and exit 2; an export is written whole or not at all."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from export_testlib import copy_round, export, mlgrade


def _one_line_exit_2(run, problem: str) -> None:
    assert run.returncode == 2, run.stdout + run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr, run.stderr
    assert problem in run.stderr, run.stderr
    assert run.stdout == ""


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("args,problem", [
    (["ROUND", "--format", "xlsx"], "invalid choice: 'xlsx'"),
    (["ROUND"], "the following arguments are required: --format"),
    (["NOWHERE", "--format", "csv"], "not a round folder (no ledger.sqlite3"),
    (["ROUND", "--format", "junit", "--view", "candidate"], "the junit export is always the grader view"),
    (["ROUND", "--format", "csv", "--out", "ROUND/candidates/alice-ref/x.csv"], "is inside the round's candidate reports"),
    (["ROUND", "--format", "junit", "--out", "ROUND/candidates"], "is inside the round's candidate reports"),
    (["ROUND", "--format", "gradescope", "--out", "ROUND/.."], "contains the round folder"),
    (["ROUND", "--format", "csv", "--out", "TMP/scores.txt"], "a .csv file name is expected"),
    (["ROUND", "--format", "jsonl", "--out", "TMP"], "a .jsonl file name is expected"),
    (["ROUND", "--format", "csv", "--out", "/proc/x.csv"], "not a place for an export"),
])
def test_bad_input_is_one_line_and_exit_2(round_dir: Path, tmp_path: Path, args: list[str], problem: str) -> None:
    before = _tree(round_dir)
    args = [a.replace("ROUND", str(round_dir)).replace("NOWHERE", str(tmp_path / "nowhere"))
            .replace("TMP", str(tmp_path)) for a in args]
    _one_line_exit_2(mlgrade("export", *args), problem)
    assert _tree(round_dir) == before and list(tmp_path.iterdir()) == []


def test_a_folder_holding_other_files_is_refused_untouched(round_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "dashboards"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    _one_line_exit_2(mlgrade("export", round_dir, "--format", "junit", "--out", out),
                     "holds notes.txt, which an earlier export did not write")
    (out / "notes.txt").rename(out / "alice-ref.xml")  # a junit export's name, but not in a gradescope export
    _one_line_exit_2(mlgrade("export", round_dir, "--format", "gradescope", "--out", out), "holds alice-ref.xml")
    assert _tree(out) == {"alice-ref.xml": b"mine\n"}


def test_export_again_replaces_the_earlier_one_whole(round_dir: Path, tmp_path: Path) -> None:
    folder = copy_round(round_dir, tmp_path)
    export(folder, "--format", "junit")
    junit = folder / "exports" / "junit"
    assert "alice-ref.xml" in _tree(junit)
    with sqlite3.connect(folder / "ledger.sqlite3") as db:
        db.execute("DELETE FROM submissions WHERE candidate = 'alice-ref'")
    export(folder, "--format", "junit")
    assert sorted(_tree(junit)) == ["bob.no-edge.xml", "carol_hostile.xml", "dave-crash.xml", "erin-badzip.xml",
                                    "frank-infra.xml"]
    assert sorted(p.name for p in (folder / "exports").iterdir()) == ["junit"]  # no temporary folder left


@pytest.mark.parametrize("fmt,name", [("gradescope", "gradescope"), ("junit", "junit"), ("csv", "scores.csv"),
                                      ("jsonl", "reports.jsonl")])
def test_a_bad_report_leaves_the_earlier_export_as_it_was(round_dir: Path, tmp_path: Path, fmt: str,
                                                          name: str) -> None:
    folder = copy_round(round_dir, tmp_path)
    export(folder, "--format", fmt)
    exports = folder / "exports"
    before = _tree(exports)
    report = folder / "candidates" / "carol_hostile" / "report.json"
    broken = json.loads(report.read_text())
    broken["score"]["percent"] = 140.0
    report.write_text(json.dumps(broken))
    _one_line_exit_2(mlgrade("export", folder, "--format", fmt),
                     "candidate carol_hostile: grader-view report: report does not follow mlgrade.report/1 at "
                     "$.score.percent")
    assert _tree(exports) == before and sorted(p.name for p in exports.iterdir()) == [name]
    fresh = tmp_path / "fresh" / "deeper" / name  # nor are the folders it would have made
    _one_line_exit_2(mlgrade("export", folder, "--format", fmt, "--out", fresh), "$.score.percent")
    assert not (tmp_path / "fresh").exists()


@pytest.mark.parametrize("problem,change", [
    ("is missing, yet the ledger says graded", lambda c: (c / "report.json").unlink()),
    ("cannot be read", lambda c: (c / "report.json").write_text("{not json")),
    ("says view 'candidate'", lambda c: (c / "report.json").write_bytes((c / "candidate" / "report.json").read_bytes())),
])
def test_a_round_folder_that_does_not_add_up_is_bad_input(round_dir: Path, tmp_path: Path, problem: str,
                                                          change) -> None:
    folder = copy_round(round_dir, tmp_path)
    change(folder / "candidates" / "alice-ref")
    _one_line_exit_2(mlgrade("export", folder, "--format", "csv"), f"candidate alice-ref: grader-view report {problem}")
    assert not (folder / "exports").exists()


def test_gradescope_needs_the_candidate_view(round_dir: Path, tmp_path: Path) -> None:
    folder = copy_round(round_dir, tmp_path)
    with sqlite3.connect(folder / "ledger.sqlite3") as db:  # a crash graded as a candidate failure, with a report
        assert db.execute("SELECT state FROM submissions WHERE candidate = 'dave-crash'").fetchone() == (
            "candidate_failure",)
    (folder / "candidates" / "dave-crash" / "candidate" / "report.json").unlink()
    _one_line_exit_2(mlgrade("export", folder, "--format", "gradescope"),
                     "candidate dave-crash: candidate-view report is missing (the grader view is there)")
    assert not (folder / "exports").exists()


def test_a_candidate_id_that_is_not_a_folder_name_is_refused(round_dir: Path, tmp_path: Path) -> None:
    folder = copy_round(round_dir, tmp_path)
    with sqlite3.connect(folder / "ledger.sqlite3") as db:
        db.execute("UPDATE submissions SET candidate = '../../escape' WHERE candidate = 'gina-waiting'")
    _one_line_exit_2(mlgrade("export", folder, "--format", "junit"), "names a candidate ../../escape")
    assert not (folder / "exports").exists() and not (tmp_path / "escape.xml").exists()


def test_listed_in_help() -> None:
    run = mlgrade("--help")
    assert run.returncode == 0 and "export" in run.stdout


def test_a_candidate_view_naming_a_hidden_test_stops_the_gradescope_export(round_dir: Path, tmp_path: Path) -> None:
    """Defence in depth: were the candidate view ever to carry a hidden test's node id, nothing is exported."""
    folder = copy_round(round_dir, tmp_path)
    grader = json.loads((folder / "candidates" / "bob.no-edge" / "report.json").read_text())
    nodeid = next(t["nodeid"] for c in grader["checks"] if c["visibility"] == "hidden" for t in c["tests"])
    path = folder / "candidates" / "bob.no-edge" / "candidate" / "report.json"
    view = json.loads(path.read_text())
    view["warnings"].append(f"see {nodeid}")
    path.write_text(json.dumps(view))
    run = mlgrade("export", folder, "--format", "gradescope")
    assert run.returncode == 3 and f"candidate bob.no-edge: the candidate view names hidden test '{nodeid}'" in run.stderr
    assert not (folder / "exports").exists()


def test_a_write_that_fails_midway_keeps_the_earlier_folder(tmp_path: Path) -> None:
    from grader.errors import InfraError
    from grader.exports.writing import write_file, write_folder
    dest = tmp_path / "exports" / "junit"
    write_folder(dest, {"a.xml": b"first\n"})
    with pytest.raises(InfraError, match="cannot write the export to .*junit: File exists"):
        write_folder(dest, {"b.xml": b"second\n", "b.xml/c.xml": b"a file cannot hold a file\n"})
    assert _tree(tmp_path) == {"exports/junit/a.xml": b"first\n"}  # no staging folder, the earlier export back
    with pytest.raises(InfraError, match="cannot write the export to"):
        write_file(tmp_path / "exports" / "junit" / "a.xml" / "new" / "scores.csv", b"x\n")
    assert _tree(tmp_path) == {"exports/junit/a.xml": b"first\n"}
    write_folder(dest, {"b.xml": b"second\n"})
    assert _tree(tmp_path) == {"exports/junit/b.xml": b"second\n"}
