"""grader/scrub.py and the candidate view built with it: hidden material never goes back to the candidate.

Real hidden material: the bundled data-loader exercise's hidden tests and reference; the toy's
for the sources. No sandbox runs here (tests/grading/test_grade_toy.py grades the leak-hidden
fixture end to end).
"""
from __future__ import annotations

import ast
import base64
import codecs
import copy
import json
import os
import random
import textwrap
import time
from pathlib import Path

import pytest

from grader.exercises import load_exercise
from grader.report import candidate_view, validate_report
from grader.scoring import first_line
from grader.scrub import ELLIPSIS, WITHHELD_ENCODED, WITHHELD_HIDDEN, HiddenText, clean, scrub, stitched
from tests.conftest import load_fixture_exercise

ORDINARY = [
    "assert 3 == 4",
    "AssertionError: expected 10 samples, got 9",
    "AssertionError: assert 6 == 5\n +  where 6 = add(2, 3)",
    "assert [(1, [2, 3], [4])] == [(1, [2, 3], [5])]\n  At index 0 diff: (1, [2, 3], [4]) != (1, [2, 3], [5])",
    "AssertionError: assert tensor([[ 883,  194,  789, 5000, 5000, 5000, 5000, 5000, 5000,  418,   13, 5000]]) == "
    "tensor([[1, 2]])",
    "assert torch.equal(tensor([0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.]), tensor([1.]))",
    "IndexError: index 10 is out of bounds for dimension 0 with size 10",
    "NotImplementedError",
    "TypeError: ShardedTokenDataset.__init__() got an unexpected keyword argument 'seed'",
    "ModuleNotFoundError: No module named 'loader'",
    "[setup] fixture 'make_data' not found",
    "RuntimeError: stack expects each tensor to be equal size, but got [3] at entry 0 and [5] at entry 1",
    # the reference's own error messages: its string literals are not indexed
    "ValueError: world_size must be >= 1, got 0",
    "ValueError: cannot collate an empty batch",
    "TypeError: token ids must be integers, got torch.float32",
    "FileNotFoundError: /mlgrade/submission/some/very/long/path/without/any/dots/in/it/whatsoever/at/all",
    # grader flags that name what candidate code patched (a calibration does the same; it is not indexed)
    "replaced after the candidate's import: time.monotonic, time.perf_counter, time.perf_counter_ns",
    "ShardedTokenDatasetWithAVeryLongCamelCaseNameThatGoesOnAndOnForeverAndEverAndEver",
    "sample ids: " + ", ".join(str(n) for n in random.Random(0).sample(range(150000), 35)),
    "0" * 120,
]


def _bundled(name: str):
    """A bundled exercise (exercises/<name>), whatever MLGRADE_HOME says."""
    previous = os.environ.pop("MLGRADE_HOME", None)
    try:
        return load_exercise(name)
    finally:
        if previous is not None:
            os.environ["MLGRADE_HOME"] = previous


@pytest.fixture(scope="module")
def data_loader():
    return _bundled("data-loader")


@pytest.fixture(scope="module")
def hidden(data_loader) -> HiddenText:
    return HiddenText.from_exercise(data_loader)


def _hidden_chunks(exercise, size: int = 200) -> list[str]:
    """Stretches of every hidden test file, a few per file."""
    chunks = []
    for path in sorted((exercise.tests / "hidden").glob("*.py")):
        text = path.read_text()
        chunks += [text[start:start + size] for start in range(0, len(text) - size, len(text) // 3)]
    return chunks


# -- what is hidden ----------------------------------------------------------------------

def test_sources_are_hidden_tests_and_reference_not_the_kit(data_loader, hidden) -> None:
    names = {os.path.relpath(s, data_loader.root.parent.parent) for s in hidden.sources}
    assert names == {f"exercises/data-loader/tests/hidden/{p.name}" for p in (data_loader.tests / "hidden").glob("*.py")} \
        | {"reference/data-loader/loader.py", "reference/data-loader/collate.py"}
    toy = load_fixture_exercise("toy")
    assert sorted(os.path.relpath(s, toy.root.parent.parent) for s in HiddenText.from_exercise(toy).sources) == [
        "exercises/toy/tests/hidden/test_add_edge.py", "exercises/toy/tests/hidden/test_mean.py", "reference/toy/calc.py"]


def test_the_kit_is_public_so_its_text_passes(data_loader, hidden) -> None:
    """Public tests and the shared conftest are in the candidate's kit: quoting them withholds nothing."""
    for path in [*sorted((data_loader.tests / "public").glob("*.py")), data_loader.tests / "conftest.py"]:
        text = path.read_text()
        for start in range(0, len(text) - 250, 250):
            assert scrub(text[start:start + 250], hidden) == clean(text[start:start + 250]), (path, start)


# -- scrub -------------------------------------------------------------------------------

def test_hidden_test_text_is_withheld_as_is_rewrapped_reindented_and_recased(data_loader, hidden) -> None:
    chunks = _hidden_chunks(data_loader)
    assert len(chunks) >= 15
    for chunk in chunks:
        for variant in (chunk, textwrap.fill(chunk, 37), textwrap.indent(chunk, "        "), chunk.lower(),
                        chunk.upper(), " ".join(chunk.split()), "".join(chunk.split()),
                        "AssertionError: " + chunk.replace("\n", " \\n ")):
            assert scrub(variant, hidden) == WITHHELD_HIDDEN, variant


def test_hidden_text_is_withheld_when_cheaply_disguised(data_loader, hidden) -> None:
    source = (data_loader.tests / "hidden" / "test_shuffling.py").read_text()
    at = source.index("def test_rows_within_shards_are_shuffled")
    short = source[at:at + 30]  # 30 characters: short encodings of it stay under the blob length
    disguised = {
        "reversed": source[900:1100][::-1],
        "rot13": codecs.encode(source[900:1100], "rot13"),
        "zero-width between letters": "\u200b".join(source[900:1000]),
        "fullwidth": "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in source[900:1000]),
        "cyrillic look-alikes": source[900:1000].replace("a", "\u0430").replace("e", "\u0435").replace("o", "\u043e"),
        "snake_case": source[900:1000].replace(" ", "_"),
        "re-rendered from the syntax tree": ast.unparse(ast.parse(source))[800:1000],
        "hex": short.encode().hex(),
        "spaced hex": " ".join(f"{b:02x}" for b in short.encode()),
        "base64": base64.b64encode(short.encode()).decode(),
        "urlsafe base64": base64.urlsafe_b64encode(short.encode()).decode(),
        "base32": base64.b32encode(short.encode()).decode(),
        "\\x escapes": "".join(f"\\x{b:02x}" for b in short.encode()),
        "\\u escapes": "".join(f"\\u{ord(c):04x}" for c in short),
        "character codes": str([ord(c) for c in short]),
    }
    for how, text in disguised.items():
        assert scrub("AssertionError: " + text, hidden) == WITHHELD_HIDDEN, how


def test_reference_code_is_withheld(hidden) -> None:
    reference = (hidden_path := next(s for s in hidden.sources if s.endswith("reference/data-loader/loader.py")))
    text = open(reference).read()
    assert scrub(text[3000:3300], hidden) == WITHHELD_HIDDEN, hidden_path


def test_ordinary_messages_pass_through(hidden) -> None:
    assert all(len(m) <= 300 for m in ORDINARY)
    for message in ORDINARY:
        assert scrub(message, hidden) == message, message
        assert scrub(message, HiddenText.empty()) == message, message


def test_grader_flags_about_candidate_code_pass_on_the_latency_exercise() -> None:
    """The inference-latency exercise has no hidden test files: its reference is the hidden material. Flags
    and messages about what a (timer-patching, say) submission did are not withheld."""
    hidden = HiddenText.from_exercise(_bundled("inference-latency"))
    assert [os.path.basename(s) for s in hidden.sources] == ["logits.py"]
    for flag in ["replaced after the candidate's import: time.monotonic, time.perf_counter, time.perf_counter_ns, "
                 "torch.cuda.Event.elapsed_time, triton.testing.do_bench",
                 "b16-v32000-f32-h1024-bench: timed call 3 returned a wrong output: returned a tensor on cpu, not on "
                 "the inputs' device (cuda)",
                 "the candidate's module failed to import: ModuleNotFoundError: No module named 'triton'"]:
        assert scrub(flag, hidden) == flag
    reference = open(hidden.sources[0]).read()
    assert scrub(reference[4000:4300], hidden) == WITHHELD_HIDDEN


def test_cap_ellipsis_and_control_characters() -> None:
    empty = HiddenText.empty()
    long = "AssertionError: " + "the value was wrong; " * 40
    out = scrub(long, empty)
    assert len(out) == 300 and out.endswith(ELLIPSIS) and out[:-1] == long[:299]
    assert len(scrub(long, empty, cap=50)) == 50
    assert scrub("\x1b[31mred\x1b[0m bell\x07 nul\x00 cr\r bidi\u202egnp.exe zw\u200bj\ud800 keep\n\ttabs", empty) == \
        "red bell nul cr bidignp.exe zwj keep\n\ttabs"
    assert scrub("", empty) == ""


def test_long_encoded_runs_are_withheld_whatever_they_hold() -> None:
    empty, rng = HiddenText.empty(), random.Random(1)
    data = bytes(rng.randrange(256) for _ in range(120))
    for blob in (base64.b64encode(data).decode(), data.hex(), data.hex().upper(), base64.b32encode(data).decode(),
                 base64.urlsafe_b64encode(data).decode(), "\n".join(textwrap.wrap(base64.b64encode(data).decode(), 40)),
                 " ".join(f"{b:02x}" for b in data)):
        assert scrub(f"AssertionError: {blob}", empty) == WITHHELD_ENCODED, blob
    assert scrub("sha256 " + "ab" * 20, empty) == "sha256 " + "ab" * 20  # 40 hex digits: short, and no text in it


def test_index_is_small_and_fast() -> None:
    """About 1 MB of hidden code (the standard library's): a few MB of index, built in seconds, checked in
    milliseconds per message."""
    texts, total = [], 0
    for path in sorted(Path(os.__file__).parent.glob("*.py")):
        texts.append(path.read_text(errors="replace"))
        total += len(texts[-1])
        if total > 1_000_000:
            break
    started = time.perf_counter()
    index = HiddenText.from_texts(texts)
    assert time.perf_counter() - started < 10
    assert index.nbytes < 4 * 2**20, index.nbytes
    messages = [text[start:start + 300] for text in texts[:20] for start in range(0, len(text) - 300, len(text) // 5)]
    messages = [m for m in messages if len(m.split()) > 20]
    started = time.perf_counter()
    assert all(scrub(m, index) == WITHHELD_HIDDEN for m in messages)
    assert all(scrub(m, index) == m for m in ORDINARY)
    assert (time.perf_counter() - started) / (len(messages) + len(ORDINARY)) < 0.05


# -- the candidate view ------------------------------------------------------------------

def _report(messages: list[str], hidden_ids: tuple[str, ...] = ("hidden/test_resume.py::test_state_is_plain_data",),
            **sections) -> dict:
    tests = [{"nodeid": f"public/test_iteration_basics.py::test_case_{i}", "outcome": "failed" if m else "passed",
              "duration_s": 0.01, "message": m} for i, m in enumerate(messages)]
    public = {"id": "basics", "title": "Basics", "kind": "pytest", "visibility": "public", "points": 0.0,
              "max_points": 2.0, "partial_credit": True, "status": "fail", "passed": sum(not m for m in messages),
              "total": len(tests), "tests": tests,
              "reasons": [f"-{2 / len(tests):.2f} pts: {t['nodeid']}: failed: {first_line(t['message'])}"
                          for t in tests if t["message"]]}
    secret = {"id": "resume", "title": "Resume", "kind": "pytest", "visibility": "hidden", "points": 0.0,
              "max_points": 3.0, "partial_credit": True, "status": "fail", "passed": 0, "total": len(hidden_ids),
              "tests": [{"nodeid": n, "outcome": "failed", "duration_s": 0.0, "message": "assert 1 == 2"}
                        for n in hidden_ids],
              "reasons": [f"-{3 / len(hidden_ids):.2f} pts: {n}: failed: assert 1 == 2" for n in hidden_ids]}
    report = {
        "schema": "mlgrade.report/1", "view": "grader",
        "exercise": {"id": "data-loader", "title": "Data loader", "version_hash": "a" * 64},
        "submission": {"source": "sub", "sha256": "b" * 64, "files": ["loader.py", "collate.py"]},
        "environment": {"backend": "bwrap", "sandboxed": True, "device": "cpu", "seed": 0, "mlgrade": "0.1.0",
                        "python": "3.11.7", "torch": "2.4.0", "triton": None, "host": "Linux", "enforced_limits": [],
                        "details": {}},
        "timing": {"started_at": "2025-01-01T00:00:00+00:00", "finished_at": "2025-01-01T00:00:01+00:00",
                   "duration_s": 1.0},
        "score": {"points": 0.0, "max_points": 5.0, "percent": 0.0},
        "checks": [public, secret],
        "run": {"exit_code": 0, "timed_out": False, "oom_killed": False, "wall_s": 1.0, "peak_memory_mb": None,
                "complete": True, "stdout_tail": "out", "stderr_tail": "err"},
        "warnings": sections.pop("warnings", []),
        **sections,
    }
    validate_report(report)
    return report


def _case(**extra) -> dict:
    return {"case": "small", "baseline_p50_us": 10.0, "candidate_p50_us": 5.0, "candidate_p90_us": 6.0,
            "candidate_p99_us": 7.0, "reference_p50_us": 4.0, "baseline_clean_p50_us": 10.0, "rounds": 20,
            "speedup": 2.0, "speedup_ci": [1.9, 2.1], "reference_speedup": 2.5, "gbs": 1.0,
            "pct_of_copy_bandwidth": 10.0, **extra}


def _model_case(**extra) -> dict:
    return {"case": "small", "modelled_us": 10.0, "reference_modelled_us": 5.0, "relative": 0.5, "kernels": 2,
            "syncs": 0, "traffic_mb": 1.0, "spill_mb": 0.0, "minimal_mb": 1.0, **extra}


def test_candidate_view_withholds_hidden_text_in_messages_and_their_reasons(data_loader, hidden) -> None:
    chunk = _hidden_chunks(data_loader)[0]
    report = _report(["AssertionError: " + chunk, "assert 3 == 4", ""])
    grader_view = copy.deepcopy(report)
    view = candidate_view(report, hidden)
    validate_report(view)
    assert report == grader_view  # the grader's report is not touched
    tests, reasons = view["checks"][0]["tests"], view["checks"][0]["reasons"]
    assert [t["message"] for t in tests] == [WITHHELD_HIDDEN, "assert 3 == 4", ""]
    assert reasons == [f"-0.67 pts: {tests[0]['nodeid']}: failed: {WITHHELD_HIDDEN}",
                       f"-0.67 pts: {tests[1]['nodeid']}: failed: assert 3 == 4"]
    assert view["checks"][1]["tests"] == [] and "hidden tests did not pass" in view["checks"][1]["reasons"][0]
    assert "stdout_tail" not in view["run"] and view["view"] == "candidate"


def test_candidate_view_withholds_hidden_text_split_over_tests(data_loader, hidden) -> None:
    """One short piece per test: each alone is too short to match; joined in report order (or reverse) they do."""
    chunk = " ".join(_hidden_chunks(data_loader)[3].split())[:96]
    pieces = [chunk[i:i + 8] for i in range(0, len(chunk), 8)]
    assert all(scrub(p, hidden) == p.strip() or scrub(p, hidden) == p for p in pieces)
    for ordered in (pieces, pieces[::-1]):
        view = candidate_view(_report([f"AssertionError: {p}" for p in ordered] + ["assert 3 == 4"]), hidden)
        validate_report(view)
        messages = [t["message"] for t in view["checks"][0]["tests"]]
        assert messages == [WITHHELD_HIDDEN] * len(pieces) + ["assert 3 == 4"]
        assert all(r.endswith(WITHHELD_HIDDEN) for r in view["checks"][0]["reasons"][:len(pieces)])
    assert stitched(["AssertionError: assert 3 == 4", "AssertionError: expected 10 samples, got 9"], hidden) == set()


def test_candidate_view_treats_hidden_test_names_as_hidden() -> None:
    nodeid = "hidden/test_secret.py::test_totally_unguessable_case[17-lambda-frobnicate]"
    report = _report([f"AssertionError: {nodeid}", "AssertionError: test_totally_unguessable_case[17-lambda-frobnicate]"],
                     hidden_ids=(nodeid,))
    view = candidate_view(report)  # no HiddenText: the names still come from the report
    assert [t["message"] for t in view["checks"][0]["tests"]] == [WITHHELD_HIDDEN] * 2
    assert "unguessable" not in json.dumps(view)


def test_candidate_view_scrubs_every_section_candidate_code_reaches(data_loader, hidden) -> None:
    chunk = _hidden_chunks(data_loader)[5]
    blob = base64.b64encode(bytes(range(200))).decode()
    report = _report(
        ["assert 3 == 4"],
        warnings=["the test runner did not report the end of the run", f"import failed: {chunk}"],
        latency=[{"check": "latency", "device": "cpu", "method": "x" * 800, "copy_gbs": 10.0,
                  "flags": [f"small: timed call 3 returned a wrong output: raised {chunk}", "small: fine flag"],
                  "cases": [_case(warmup_s={"baseline": 0.1, "candidate": 0.2, chunk[:40]: 0.3},
                                  warmup_calls={"baseline": 3, blob[:30]: 4})]}],
        model=[{"check": "gpu-model", "target": "H100", "label": "modelled, not measured", "entry": "logits:entry",
                "flags": [f"the module failed to import: {blob}"],
                "cases": [_model_case(parts=[{"kernel": chunk, "us": 1.0}, {"kernel": "softmax_kernel", "us": 2.0}])]}],
    )
    report["environment"]["torch"] = chunk[:100]
    report["checks"][0]["reasons"] += ["-2.00 pts: all-or-nothing check, 1 of 1 tests did not pass",
                                       f"also: small: raised {chunk}"]
    view = candidate_view(report, hidden)
    validate_report(view)
    assert view["checks"][0]["reasons"][-2:] == ["-2.00 pts: all-or-nothing check, 1 of 1 tests did not pass",
                                                 f"also: {WITHHELD_HIDDEN}"]
    assert view["warnings"] == ["the test runner did not report the end of the run", WITHHELD_HIDDEN]
    (latency,) = view["latency"]
    assert latency["flags"] == [WITHHELD_HIDDEN, "small: fine flag"]
    assert len(latency["method"]) == 500 and latency["method"].endswith(ELLIPSIS)
    assert latency["cases"][0]["warmup_s"] == {"baseline": 0.1, "candidate": 0.2}
    assert latency["cases"][0]["warmup_calls"] == {"baseline": 3}
    (model,) = view["model"]
    assert model["flags"] == [WITHHELD_ENCODED]
    assert [p["kernel"] for p in model["cases"][0]["parts"]] == [WITHHELD_HIDDEN, "softmax_kernel"]
    assert view["environment"]["torch"] == WITHHELD_HIDDEN and view["environment"]["python"] == "3.11.7"
    assert (view["exercise"], view["submission"]) == (report["exercise"], report["submission"])
    text = json.dumps(view)
    assert chunk[:20] not in text and blob[:20] not in text


def test_candidate_view_without_hidden_text_still_caps_and_drops_blobs() -> None:
    blob = bytes(range(100)).hex()
    long = "AssertionError: " + "wrong " * 200
    view = candidate_view(_report([long, f"AssertionError: {blob}", "assert 3 == 4"]))
    validate_report(view)
    messages = [t["message"] for t in view["checks"][0]["tests"]]
    assert len(messages[0]) == 300 and messages[1] == WITHHELD_ENCODED and messages[2] == "assert 3 == 4"
    assert all(len(r) < 400 for r in view["checks"][0]["reasons"])
