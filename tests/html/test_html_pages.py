"""The HTML pages in a real headless Chromium (Selenium 4 driving Debian's chromium + chromedriver).

Round folders are built from real gradings of the toy fixture exercises (bwrap or Docker): a toy
round (full marks, a calibration, a hostile submission whose output and folder name carry markup,
plus ledger rows with no report) and a toy-latency round (two gradings with a latency section).
Each page must load from file:// with no console error and nothing fetched, show the numbers
report.json holds (read back from data-value attributes), show hostile strings as text and run
nothing, and, in the candidate view, name no hidden test. A full-page screenshot of every page is
written under $MLGRADE_TEST_ARTIFACTS (default test-artifacts/) and its path attached to the test.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import unquote

import pytest

from grader.batch.layout import CANDIDATE_VIEW, CANDIDATES, LEDGER, LEDGER_SCHEMA, SUMMARY, read_round
from grader.errors import InfraError
from grader.html import write_round_pages
from grader.pipeline import Grader
from grader.report import candidate_view
from grader.scrub import HiddenText
from sandbox import available_backends
from tests.conftest import FIXTURES, PROJECT, TOY_HOME, load_fixture_exercise

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
_usable = [name for name, reason in available_backends().items() if reason is None]
BACKEND = "bwrap" if "bwrap" in _usable else (_usable[0] if _usable else None)

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
HOSTILE_ID = "eve<img src=x onerror=alert(3)>"      # a candidate id (and folder name) holding markup
HOSTILE_REASON = "bad archive: <script>alert(4)</script><b onmouseover=alert(5)>x</b>"
HOSTILE_CALC = f'''import sys

HOSTILE = {SCRIPT + IMG!r}
print(HOSTILE, file=sys.stderr)


def add(a, b):
    if a == 2:
        return HOSTILE
    return a + b


def mean(xs):
    return sum(xs) / len(xs)
'''


@dataclass(frozen=True)
class Pair:
    """A similar pair as grader.similarity hands it to the summary: a, b, score and detail."""
    a: str
    b: str
    score: float
    detail: str | None = None


# -- browser ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if path is None]
    if missing:
        message = f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI installs the browser: {message}")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: Chromium refuses to start as root with its own sandbox (CI runs as root); the
    # pages are ours and carry no script.
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,900", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _artifacts() -> Path:
    folder = Path(os.environ.get("MLGRADE_TEST_ARTIFACTS") or PROJECT / "test-artifacts") / "html"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def open_page(browser: Any, request: pytest.FixtureRequest,
              record_property: Callable[[str, object], None]) -> Callable[[Path, str], Any]:
    """Load a page from file://, fail on any SEVERE console entry, an alert or a fetched resource,
    and save a full-page screenshot as a test artifact."""
    from selenium.common.exceptions import NoAlertPresentException

    def load(page: Path, shot: str) -> Any:
        browser.get_log("browser")  # drop what an earlier page logged
        browser.get(page.resolve().as_uri())
        assert browser.execute_script("return document.readyState") == "complete"
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == [], f"{page}: console errors: {severe}"
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018 (an alert() that ran would be open here)
        # Nothing fetched: no network at view time (the CSP would refuse it, but nothing asks).
        assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
        size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        png = browser.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{request.node.name}-{shot}")[:150] + ".png"
        path = _artifacts() / name
        path.write_bytes(base64.b64decode(png["data"]))
        print(f"screenshot: {path}")
        record_property(f"screenshot:{shot}", str(path))
        return browser
    return load


# -- round folders from real gradings ------------------------------------------------------------

def _grade(grader: Grader, exercise: Any, submission: Path) -> dict[str, Any]:
    """One grading. A latency check whose clean run is too noisy to time is an infrastructure
    failure by design (exit 3, retried by mlgrade batch): retried here the same way, twice at most."""
    for attempt in range(3):
        try:
            return grader.grade(exercise, submission)
        except InfraError as exc:
            if "too noisy" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _write_round(folder: Path, exercise: Any, graded: dict[str, dict[str, Any]],
                 failed: dict[str, tuple[str, str]], similar: list[Pair] | None = None) -> None:
    """A round folder as mlgrade batch leaves it (the ledger, each report in both views), then its
    pages: each report's and the summary."""
    hidden = HiddenText.from_exercise(exercise)
    folder.mkdir(parents=True)
    rows = []
    for candidate, report in graded.items():
        home = folder / CANDIDATES / candidate
        (home / CANDIDATE_VIEW).mkdir(parents=True)
        view = candidate_view(report, hidden)
        (home / "report.json").write_text(json.dumps(report, indent=2))
        (home / CANDIDATE_VIEW / "report.json").write_text(json.dumps(view, indent=2))
        rows.append((candidate, report["submission"]["source"], "graded", "", report["score"]["percent"], 1, 1))
    for candidate, (state, reason) in failed.items():
        rows.append((candidate, f"/submissions/{candidate}.zip", state, reason, None,
                     0 if state == "pending" else 1, 0 if state == "pending" else 1))
    with sqlite3.connect(folder / LEDGER) as db:
        db.executescript(LEDGER_SCHEMA)
        db.executemany("INSERT INTO round (name, value) VALUES (?, ?)", [
            ("exercise", exercise.id), ("exercise_version", next(iter(graded.values()))["exercise"]["version_hash"]),
            ("backend", str(BACKEND)), ("device", "cpu"), ("seed", "0"), ("created_at", "2026-01-01T00:00:00+00:00")])
        db.executemany(
            "INSERT INTO submissions (candidate, source, content_hash, exercise_version, image_id, key, state, attempts,"
            " gradings, reason, percent, updated_at) VALUES (?, ?, 'c', 'v', 'i', 'k', ?, ?, ?, ?, ?, 'now')",
            [(c, src, state, attempts, gradings, reason, pct) for c, src, state, reason, pct, gradings, attempts in rows])
    db.close()
    write_round_pages(folder, similar=similar)  # write_submission_page for each report, then write_summary_page


@dataclass(frozen=True)
class Rounds:
    toy: Path
    latency: Path
    hostile_submission: Path


@pytest.fixture(scope="module")
def rounds(tmp_path_factory: pytest.TempPathFactory) -> Rounds:
    if BACKEND is None:
        pytest.skip("no sandbox backend can run here")
    base = tmp_path_factory.mktemp("html")
    hostile = base / "submissions" / f"sub{IMG}"  # the report's submission.source carries markup too
    hostile.mkdir(parents=True)
    (hostile / "calc.py").write_text(HOSTILE_CALC)
    grader = Grader(BACKEND)
    toy = load_fixture_exercise("toy")
    graded = {"alice": _grade(grader, toy, TOY_HOME / "reference" / "toy"),
              "bob": _grade(grader, toy, toy.calibration("no-edge")),
              HOSTILE_ID: _grade(grader, toy, hostile)}
    failed = {"mallory": ("candidate_failure", HOSTILE_REASON), "trent": ("infra_failure", "sandbox image missing"),
              "peggy": ("pending", "")}
    similar = [Pair("alice", HOSTILE_ID, 0.93, f"calc.py: 12 lines shared {SCRIPT}"), Pair("alice", "bob", 0.5)]
    _write_round(base / "toy-round", toy, graded, failed, similar)
    latency = load_fixture_exercise("toy-latency")
    timed = {"ref": _grade(grader, latency, TOY_HOME / "reference" / "toy-latency"),
             "slow": _grade(grader, latency, FIXTURES / "submissions" / "toy-latency" / "calls-baseline")}
    _write_round(base / "latency-round", latency, timed, {})
    return Rounds(toy=base / "toy-round", latency=base / "latency-round", hostile_submission=hostile)


# -- reading numbers back ----------------------------------------------------------------------

def _value(scope: Any, field: str) -> Any:
    from selenium.webdriver.common.by import By
    (element,) = scope.find_elements(By.CSS_SELECTOR, f'[data-field="{field}"]')
    return json.loads(element.get_attribute("data-value"))


def _rows(driver: Any, attribute: str) -> dict[str, Any]:
    from selenium.webdriver.common.by import By
    return {row.get_attribute(attribute): row for row in driver.find_elements(By.CSS_SELECTOR, f"tr[{attribute}]")}


def _assert_report_numbers(driver: Any, report: dict[str, Any]) -> None:
    assert _value(driver, "view") == report["view"]
    for key in ("percent", "points", "max_points"):
        assert _value(driver, f"score.{key}") == report["score"][key]
    rows = _rows(driver, "data-check")
    assert list(rows) == [c["id"] for c in report["checks"]]
    for check in report["checks"]:
        row = rows[check["id"]]
        for key in ("points", "max_points", "passed", "total", "status"):
            assert _value(row, key) == check[key], (check["id"], key)


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _no_markup_ran(driver: Any) -> None:
    from selenium.webdriver.common.by import By
    assert driver.find_elements(By.CSS_SELECTOR, "script, img, iframe, object, embed") == []
    assert driver.execute_script(
        "return [...document.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name))"
        ".filter(n => n.startsWith('on'))") == []


# -- the tests -----------------------------------------------------------------------------------

def test_grader_view_pages_show_report_json_numbers(rounds: Rounds, open_page: Callable) -> None:
    for folder in (rounds.toy, rounds.latency):
        for entry in read_round(folder).entries:
            page = entry.folder / "report.html"
            if entry.report() is None:
                assert not page.exists()
                continue
            report = _load(entry.folder / "report.json")
            driver = open_page(page, f"{folder.name}-{entry.candidate}-grader")
            _assert_report_numbers(driver, report)
            tests = _rows(driver, "data-test")
            assert set(tests) == {t["nodeid"] for c in report["checks"] for t in c["tests"]}
            for check in report["checks"]:
                for test in check["tests"]:
                    assert _value(tests[test["nodeid"]], "outcome") == test["outcome"]


def test_latency_numbers_and_interval_plot(rounds: Rounds, open_page: Callable) -> None:
    from selenium.webdriver.common.by import By
    for entry in read_round(rounds.latency).entries:
        report = entry.report()
        (section,) = report["latency"]
        driver = open_page(entry.folder / "report.html", f"latency-{entry.candidate}")
        rows = driver.find_elements(By.CSS_SELECTOR, "tr[data-latency-check]")
        assert [(r.get_attribute("data-latency-check"), r.get_attribute("data-case")) for r in rows] == [
            (section["check"], case["case"]) for case in section["cases"]]
        for row, case in zip(rows, section["cases"]):
            assert _value(row, "speedup") == case["speedup"]
            assert [_value(row, "speedup_ci.0"), _value(row, "speedup_ci.1")] == case["speedup_ci"]
            assert _value(row, "reference_speedup") == case["reference_speedup"]
        marks = driver.find_elements(By.CSS_SELECTOR, "svg g[data-row]")
        assert [json.loads(m.get_attribute("data-value")) for m in marks] == [c["speedup"] for c in section["cases"]]


def test_candidate_view_page_names_no_hidden_test(rounds: Rounds, open_page: Callable) -> None:
    from selenium.webdriver.common.by import By
    for entry in read_round(rounds.toy).entries:
        grader_view, view = entry.report("grader"), entry.report("candidate")
        if view is None:
            continue
        page = entry.folder / CANDIDATE_VIEW / "report.html"
        driver = open_page(page, f"candidate-{entry.candidate}")
        _assert_report_numbers(driver, view)
        hidden = [c for c in grader_view["checks"] if c["visibility"] == "hidden"]
        secrets = [t["nodeid"] for c in hidden for t in c["tests"]] + \
                  [t["message"] for c in hidden for t in c["tests"] if t["message"]] + ["test_add_edge", "test_mean"]
        source = page.read_text()
        text = driver.find_element("tag name", "body").text
        assert [s for s in secrets if s in source or s in text] == []
        assert set(_rows(driver, "data-test")) == {t["nodeid"] for c in view["checks"] for t in c["tests"]}
        assert "stdout (tail)" not in text and "Integrity" not in text
        hints = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "li[data-hint]")]
        assert hints == [h for c in view["checks"] for h in c.get("hints", [])]
    bob = _load(rounds.toy / CANDIDATES / "bob" / "report.json")
    assert any(t["message"] for c in bob["checks"] if c["visibility"] == "hidden" for t in c["tests"]), \
        "the calibration must fail hidden tests with messages, or this test checks nothing"


def test_hostile_strings_are_shown_as_text_and_run_nothing(rounds: Rounds, open_page: Callable) -> None:
    from selenium.webdriver.common.by import By
    folder = rounds.toy / CANDIDATES / HOSTILE_ID
    report = _load(folder / "report.json")
    reason = next(r for c in report["checks"] for r in c["reasons"] if SCRIPT in r)
    for page, label in ((folder / "report.html", "grader"), (folder / CANDIDATE_VIEW / "report.html", "candidate")):
        driver = open_page(page, f"hostile-{label}")
        _no_markup_ran(driver)
        text = driver.find_element(By.TAG_NAME, "body").text
        assert SCRIPT + IMG in text and IMG in text  # the returned value, in a test message and a reason
        assert report["submission"]["source"] in text
        if label == "grader":
            reasons = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "li[data-reason]")]
            assert reason in reasons
            assert driver.title.startswith(report["exercise"]["title"])

    driver = open_page(rounds.toy / SUMMARY, "hostile-summary")
    _no_markup_ran(driver)
    rows = _rows(driver, "data-candidate")
    assert rows[HOSTILE_ID].find_element(By.TAG_NAME, "a").text == HOSTILE_ID
    assert HOSTILE_REASON in rows["mallory"].text
    pair = driver.find_element(By.CSS_SELECTOR, 'tr[data-pair="0"]')
    assert pair.find_element(By.CSS_SELECTOR, '[data-field="b"]').text == HOSTILE_ID and SCRIPT in pair.text
    # The link to the hostile candidate's page (its folder name is the id) resolves to that page.
    rows[HOSTILE_ID].find_element(By.TAG_NAME, "a").click()
    assert unquote(driver.current_url) == unquote((folder / "report.html").resolve().as_uri())
    assert driver.find_elements(By.CSS_SELECTOR, '[data-field="score.percent"]')
    _no_markup_ran(driver)


def test_summary_counts_pass_rates_and_links(rounds: Rounds, open_page: Callable) -> None:
    from selenium.webdriver.common.by import By
    round_ = read_round(rounds.toy)
    reports = {e.candidate: e.report() for e in round_.entries if e.report() is not None}
    driver = open_page(rounds.toy / SUMMARY, "summary-toy")
    assert _value(driver, "candidates.total") == len(round_.entries) == 6
    for state in ("graded", "candidate_failure", "infra_failure", "running", "pending"):
        assert _value(driver, f"candidates.{state}") == sum(e.state == state for e in round_.entries)
    rows = _rows(driver, "data-candidate")
    assert sorted(rows) == sorted(e.candidate for e in round_.entries)
    for entry in round_.entries:
        row = rows[entry.candidate]
        assert _value(row, "state") == entry.state
        report = reports.get(entry.candidate)
        assert _value(row, "percent") == (report["score"]["percent"] if report else None)
        links = row.find_elements(By.TAG_NAME, "a")
        assert len(links) == (2 if report else 0)
    checks = _rows(driver, "data-check")
    ids = list(dict.fromkeys(c["id"] for r in reports.values() for c in r["checks"]))
    assert list(checks) == ids
    for check_id in ids:
        statuses = [c["status"] for r in reports.values() for c in r["checks"] if c["id"] == check_id]
        row = checks[check_id]
        assert _value(row, "reports") == len(statuses)
        assert _value(row, "passed") == statuses.count("pass")
        assert _value(row, "pass_rate") == pytest.approx(statuses.count("pass") / len(statuses))
    assert _value(checks["add-public"], "pass_rate") == pytest.approx(2 / 3)  # the hostile one fails a public test
    percents = sorted(r["score"]["percent"] for r in reports.values())
    bins = {int(g.get_attribute("data-bin")): int(g.get_attribute("data-count"))
            for g in driver.find_elements(By.CSS_SELECTOR, "svg g[data-bin]")}
    assert bins == {i: sum(min(9, int(p // 10)) == i for p in percents) for i in range(10)}  # 100 is in 90-100
    assert [json.loads(p.find_element(By.CSS_SELECTOR, '[data-field="score"]').get_attribute("data-value"))
            for p in driver.find_elements(By.CSS_SELECTOR, "tr[data-pair]")] == [0.93, 0.5]
    rows["bob"].find_element(By.TAG_NAME, "a").click()
    _assert_report_numbers(driver, reports["bob"])


def test_summary_plots_latency_speedups_with_intervals(rounds: Rounds, open_page: Callable) -> None:
    from selenium.webdriver.common.by import By
    round_ = read_round(rounds.latency)
    driver = open_page(rounds.latency / SUMMARY, "summary-latency")
    expected = {e.candidate: e.report()["latency"][0]["cases"][0] for e in round_.entries}
    marks = {m.get_attribute("data-row"): m for m in driver.find_elements(By.CSS_SELECTOR, "[data-speedups] g[data-row]")}
    assert set(marks) == set(expected)
    for candidate, case in expected.items():
        mark = marks[candidate]
        got = [json.loads(mark.get_attribute(a)) for a in ("data-value", "data-low", "data-high", "data-reference")]
        assert got == [case["speedup"], *case["speedup_ci"], case["reference_speedup"]]
    # Drawn where the numbers say: the reference is far faster than calls-baseline's 1x.
    dots = {c: float(m.find_element(By.TAG_NAME, "circle").get_attribute("cx")) for c, m in marks.items()}
    assert dots["ref"] > dots["slow"]
    assert "Similar submissions" not in driver.find_element(By.TAG_NAME, "body").text  # similar not given


def test_pages_are_self_contained_and_escape_by_construction(rounds: Rounds) -> None:
    """Static checks of every written page: the CSP, no script, nothing outside the file, no |safe."""
    pages = sorted(rounds.toy.rglob("*.html")) + sorted(rounds.latency.rglob("*.html"))
    assert len(pages) == 2 + 2 * 3 + 2 * 2
    for page in pages:
        html = page.read_text()
        assert ('<meta http-equiv="Content-Security-Policy" content="default-src &#39;none&#39;; '
                'style-src &#39;unsafe-inline&#39;; img-src data:">') in html
        assert "<script" not in html and "<img" not in html
        assert re.findall(r'(?:src|href)="(?!data:|candidates/)[^"]*"', html) == []
        assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html
    templates = Path(__file__).parents[2] / "grader" / "html" / "templates"
    for template in templates.iterdir():
        assert "|safe" not in template.read_text().replace(" ", "") and "Markup" not in template.read_text()


def test_cli_grade_out_writes_the_page_of_the_view_asked_for(tmp_path: Path, rounds: Rounds,
                                                             open_page: Callable) -> None:
    out = tmp_path / "out"
    env = dict(os.environ, MLGRADE_HOME=str(TOY_HOME))
    run = subprocess.run([sys.executable, "-m", "grader", "grade", "toy", str(rounds.hostile_submission),
                          "--backend", str(BACKEND), "--view", "candidate", "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]
    report = _load(out / "report.json")
    assert report["view"] == "candidate"
    driver = open_page(out / "report.html", "cli-candidate")
    _assert_report_numbers(driver, report)
    _no_markup_ran(driver)
    assert SCRIPT in driver.find_element("tag name", "body").text
    assert "test_add_edge" not in (out / "report.html").read_text()
