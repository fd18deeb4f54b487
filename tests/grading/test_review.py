"""The review kind (grader/checks/review.py): reading review.json, matching it to an answer key,
scoring, and what each view shows. Pure host-side code: no sandbox is involved in a review check."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from grader.checks.review import AnswerKey, ReviewCheck, judge, load_answer_key, markdown, read_review
from grader.errors import BadInput
from grader.report import candidate_view, validate_report

KEY = AnswerKey.model_validate({
    "risk": [
        {"id": "stats-leak", "tier": "must", "category": "leakage", "related": ["data-quality"],
         "title": "stats fitted on all rows", "evidence": [{"file": "svc/features.py", "lines": [10, 14]}]},
        {"id": "no-eval", "tier": "should", "category": "evaluation", "title": "no eval mode",
         "evidence": [{"file": "svc/evaluate.py", "lines": [30, 30]}, {"file": "svc/serve.py", "lines": [5, 6]}]},
        {"id": "pickle-load", "tier": "nice", "category": "security", "title": "pickle on a user path",
         "evidence": [{"file": "svc/serve.py", "lines": [40, 42]}]},
    ],
    "decoy": [{"id": "seeded-split", "evidence": [{"file": "svc/data.py", "lines": [20, 25]}]}],
})
CHECK = ReviewCheck(id="review", title="review", kind="review", visibility="hidden", points=60,
                    answer_key="tests/hidden/key.toml")


def finding(file: str, first: int, last: int, category: str, title: str = "a finding") -> dict:
    return {"file": file, "lines": [first, last], "category": category, "severity": "high", "title": title,
            "fix": "fix it"}


def review(tmp_path: Path, findings: list[dict], **extra) -> Path:
    path = tmp_path / "review.json"
    path.write_text(json.dumps({"version": 1, "findings": findings, **extra}))
    return path


def test_exact_findings_score_everything(tmp_path: Path) -> None:
    path = review(tmp_path, [finding("svc/features.py", 12, 12, "leakage"), finding("svc/serve.py", 5, 5, "evaluation"),
                             finding("svc/serve.py", 41, 44, "security")])
    outcome = judge(CHECK, KEY, path)
    assert outcome.score.earned == 60 and outcome.score.reasons() == []
    assert outcome.section["tiers"] == {"must": {"found": 1, "total": 1}, "should": {"found": 1, "total": 1},
                                        "nice": {"found": 1, "total": 1}}


@pytest.mark.parametrize("found, quality", [
    (finding("svc/features.py", 14, 20, "leakage"), 1.0),  # overlapping lines, same category
    (finding("svc/features.py", 11, 11, "data-quality"), 0.75),  # overlapping, a related category
    (finding("svc/features.py", 17, 18, "leakage"), 0.75),  # same category, 3 lines away
    (finding("svc/features.py", 22, 30, "leakage"), 0.5),  # same category, 8 lines away
    (finding("svc/features.py", 26, 30, "leakage"), 0.0),  # 12 lines away: no match
    (finding("svc/features.py", 12, 12, "security"), 0.0),  # right lines, unrelated category
    (finding("svc/train.py", 12, 12, "leakage"), 0.0),  # another file
    (finding("./svc/features.py", 12, 12, "leakage"), 1.0),  # a leading ./ is the same file
])
def test_match_quality(tmp_path: Path, found: dict, quality: float) -> None:
    outcome = judge(CHECK, KEY, review(tmp_path, [found]))
    assert outcome.score.earned == pytest.approx(60 * 3 / 6 * quality)  # must weighs 3 of 6; precision 1 or 0


def test_matching_is_one_to_one_and_best_first(tmp_path: Path) -> None:
    # Two findings on one risk count once; the better one is matched, the other goes to a human.
    path = review(tmp_path, [finding("svc/features.py", 20, 21, "leakage", "near"),
                             finding("svc/features.py", 10, 10, "leakage", "exact")])
    section = judge(CHECK, KEY, path).section
    assert [(m["risk"], m["finding"], m["quality"]) for m in section["matched"]] == [("stats-leak", 2, 1.0)]
    assert [u["finding"] for u in section["unmatched"]] == [1]
    # one finding whose lines cover two risks' evidence matches only one of them
    wide = review(tmp_path, [finding("svc/serve.py", 1, 50, "evaluation")])
    assert len(judge(CHECK, KEY, wide).section["matched"]) == 1


def test_decoys_are_false_positives_and_the_rest_goes_to_a_human(tmp_path: Path) -> None:
    path = review(tmp_path, [finding("svc/features.py", 12, 12, "leakage"), finding("svc/data.py", 22, 22, "leakage"),
                             finding("svc/model.py", 3, 4, "training", "unknown to the key")])
    section = judge(CHECK, KEY, path).section
    assert [(f["finding"], f["decoy"]) for f in section["false_positives"]] == [(2, "seeded-split")]
    assert [(u["finding"], u["file"], u["lines"]) for u in section["unmatched"]] == [(3, "svc/model.py", [3, 4])]
    assert [m["risk"] for m in section["missed"]] == ["no-eval", "pickle-load"]
    assert section["false_positive_count"] == 1 and section["unmatched_count"] == 1


def test_flagging_everything_does_not_pay(tmp_path: Path) -> None:
    # Every risk found, among 25 findings: precision 3/25, so the factor is 0.24 of full marks.
    noise = [finding("svc/other.py", 10 * i + 1, 10 * i + 2, "reliability") for i in range(22)]
    exact = [finding("svc/features.py", 12, 12, "leakage"), finding("svc/serve.py", 5, 5, "evaluation"),
             finding("svc/serve.py", 41, 44, "security")]
    outcome = judge(CHECK, KEY, review(tmp_path, noise + exact))
    assert outcome.score.earned == pytest.approx(60 * (3 / 25) / 0.5)
    assert any("precision 12%" in r for r in outcome.score.reasons())
    # half the findings unconfirmed costs nothing
    half = judge(CHECK, KEY, review(tmp_path, noise[:3] + exact))
    assert half.score.earned == 60


@pytest.mark.parametrize("content, problem", [
    (b"{not json", "review.json: not valid JSON"),
    (b"\xff\xfe", "review.json: not UTF-8 text"),
    (b"[" * 100 + b"]" * 100, "review.json: nested too deeply"),
    (b"[]", "review.json: (top level): Input should be a valid dictionary"),
    (json.dumps({"findings": []}).encode(), "review.json: version: Field required"),
    (json.dumps({"version": 2, "findings": []}).encode(), "review.json: version: Input should be 1"),
    (json.dumps({"version": 1, "findings": [finding("a.py", 1, 2, "vibes")]}).encode(),
     "review.json: findings.0.category: Input should be 'leakage'"),
    (json.dumps({"version": 1, "findings": [finding("a.py", 5, 2, "leakage")]}).encode(),
     "review.json: findings.0: Value error, lines must be [first, last] with first <= last"),
    (json.dumps({"version": 1, "findings": [finding("a.py", 0, 2, "leakage")]}).encode(),
     "review.json: findings.0.lines.0: Input should be greater than or equal to 1"),
    (json.dumps({"version": 1, "findings": [{**finding("a.py", 1, 2, "leakage"), "confidence": 0.9}]}).encode(),
     "review.json: findings.0.confidence: Extra inputs are not permitted"),
    (json.dumps({"version": 1, "findings": [finding("a.py", 1, 2, "leakage")] * 26}).encode(),
     "review.json: 26 findings, over the limit of 25"),
    (b" " * (300 * 1024), "review.json: over 256 KiB"),
])
def test_a_malformed_review_scores_zero_with_one_line_naming_the_problem(tmp_path: Path, content: bytes,
                                                                         problem: str) -> None:
    path = tmp_path / "review.json"
    path.write_bytes(content)
    findings, error = read_review(path, 25)
    assert findings == [] and error is not None and error.startswith(problem), error
    assert "\n" not in error and len(error) <= 300
    outcome = judge(CHECK, KEY, path)
    assert outcome.score.earned == 0 and outcome.score.reasons()[0] == f"-60.00 pts: {error}"
    assert outcome.section["error"] == error


def test_a_missing_review_scores_zero(tmp_path: Path) -> None:
    outcome = judge(CHECK, KEY, tmp_path / "review.json")
    assert outcome.score.earned == 0 and "review.json: not in the submission" in outcome.score.reasons()[0]


def test_a_link_is_not_followed(tmp_path: Path) -> None:
    target = review(tmp_path, [finding("svc/features.py", 12, 12, "leakage")])
    link = tmp_path / "linked" / "review.json"
    link.parent.mkdir()
    os.symlink(target, link)
    assert read_review(link, 25)[1].startswith("review.json: cannot be read")


def _report(outcome, check: ReviewCheck = CHECK) -> dict:
    """A minimal grader-view report around one review outcome, as the pipeline folds it."""
    score = outcome.score
    return {
        "schema": "mlgrade.report/1", "view": "grader",
        "exercise": {"id": "x", "title": "x", "version_hash": "0" * 64},
        "submission": {"source": "s", "sha256": "0" * 64, "files": ["review.json"]},
        "environment": {"backend": "bwrap", "sandboxed": True, "device": "cpu", "seed": 0, "mlgrade": "0",
                        "python": "3", "torch": "2", "triton": "3", "host": "h", "enforced_limits": [],
                        "details": {}},
        "timing": {"started_at": "2026-11-27T00:00:00+00:00", "finished_at": "2026-11-27T00:00:01+00:00",
                   "duration_s": 1.0},
        "score": {"points": score.earned, "max_points": check.points, "percent": 100 * score.earned / check.points},
        "checks": [{"id": check.id, "title": check.title, "kind": "review", "visibility": "hidden",
                    "points": score.earned, "max_points": check.points, "partial_credit": True,
                    "status": score.status, "passed": score.passed, "total": len(score.tests),
                    "reasons": score.reasons(),
                    "tests": [{"nodeid": t.nodeid, "outcome": t.outcome, "duration_s": t.duration_s,
                               "message": t.message} for t in score.tests]}],
        "run": {"exit_code": None, "timed_out": False, "oom_killed": False, "wall_s": 0.0, "peak_memory_mb": None,
                "complete": True, "malformed_lines": 0, "runs": []},
        "warnings": [], "review": [outcome.section],
    }


def test_the_grader_view_lists_everything_and_the_candidate_view_only_counts(tmp_path: Path) -> None:
    path = review(tmp_path, [finding("svc/features.py", 12, 12, "leakage"), finding("svc/data.py", 22, 22, "leakage"),
                             finding("svc/model.py", 3, 4, "training")])
    report = _report(judge(CHECK, KEY, path))
    validate_report(report)
    text = "\n".join(markdown(report["review"][0]))
    for shown in ("`stats-leak` by finding 1", "`no-eval` at `svc/evaluate.py:30-30`", "decoy `seeded-split`",
                  "finding 3 (training) at `svc/model.py:3-4`"):
        assert shown in text, text
    view = candidate_view(report)
    validate_report(view)
    assert view["checks"][0]["tests"] == []
    assert view["checks"][0]["reasons"][0].endswith("pts: planted risks found, by tier: 1 of 1 must, 0 of 1 should, "
                                                    "0 of 1 nice (which ones were missed is not shown)")
    assert view["review"][0]["tiers"]["should"] == {"found": 0, "total": 1}
    for secret in ("no-eval", "pickle-load", "seeded-split", "no eval mode", "evaluate.py", "stats-leak"):
        assert secret not in json.dumps(view), secret


def test_answer_key_problems_name_the_file(tmp_path: Path) -> None:
    key = tmp_path / "key.toml"
    key.write_text('[[risk]]\nid = "x"\ntier = "urgent"\ncategory = "leakage"\ntitle = "t"\n'
                   'evidence = [{file = "a.py", lines = [1, 2]}]\n')
    with pytest.raises(BadInput, match=r"key.toml: risk.0.tier: Input should be 'must', 'should' or 'nice'"):
        load_answer_key(key)
    with pytest.raises(BadInput, match="answer key not found"):
        load_answer_key(tmp_path / "nope.toml")


@pytest.mark.parametrize("changes, problem", [
    ({"answer_key": "tests/public/key.toml"}, "must be a path under tests/hidden/"),
    ({"answer_key": "tests/hidden/../../key.toml"}, "must be a path under tests/hidden/"),
    ({"visibility": "public"}, "a review check is hidden"),
])
def test_a_review_check_keeps_its_key_hidden(changes: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ReviewCheck.model_validate({**CHECK.model_dump(), **changes})
