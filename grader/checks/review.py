"""Kind `review`: a code review scored against a grader-only answer key, on the host.

The candidate hands in `review.json` (findings: file, line range, category, severity, title, fix).
Nothing of the candidate's runs: the file is read (size-capped, schema-checked) and matched
one-to-one to the exercise's planted risks, best matches first:

  1.0   same category and overlapping lines
  0.75  a related category and overlapping lines, or the same category within NEAR lines
  0.5   the same category within WIDE lines

A finding on a decoy (code that looks wrong but is right) is a false positive; any other unmatched
finding is listed for a human reviewer. Score = points x weighted recall x precision factor, where
weighted recall = sum(tier weight x match quality) / sum(tier weights of all risks) and the precision
factor = min(1, P / precision_full_at) with P = matched findings / all findings.
"""
from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import BadInput
from ..harness.wire import too_deep
from ..results import TestResult, read_capped
from ..scoring import CheckScore
from .base import CheckSpec, Context, Kind, Outcome, ReportPart

CATEGORIES = ("leakage", "training-serving-skew", "training", "evaluation", "serving", "reliability", "security",
              "privacy", "reproducibility", "data-quality")
SEVERITIES = ("high", "medium", "low")
TIERS = ("must", "should", "nice")
NEAR, WIDE = 3, 10  # lines between a finding and a risk's evidence for the weaker matches
MAX_BYTES = 256 * 1024  # of review.json
Category = Literal[CATEGORIES]  # type: ignore[valid-type]
Lines = Annotated[tuple[Annotated[int, Field(ge=1, le=1_000_000)], Annotated[int, Field(ge=1, le=1_000_000)]],
                  Field(description="[first, last], 1-based, inclusive")]


class ReviewCheck(CheckSpec):
    """Points for the findings of review.json that match the hidden answer key (computed on the host)."""

    kind: Literal["review"]
    answer_key: str  # a TOML file under tests/hidden/ of the exercise (hidden material)
    file: str = "review.json"  # the submission's file holding the findings
    max_findings: int = Field(25, ge=1, le=500)
    weights: dict[Literal["must", "should", "nice"], float] = {"must": 3.0, "should": 2.0, "nice": 1.0}
    precision_full_at: float = Field(0.5, gt=0, le=1)  # P at or above this costs nothing

    @model_validator(mode="after")
    def _hidden_key(self) -> "ReviewCheck":
        parts = Path(self.answer_key).parts
        if self.answer_key.startswith("/") or ".." in parts or parts[:2] != ("tests", "hidden"):
            raise ValueError(f"answer_key {self.answer_key!r} must be a path under tests/hidden/ (hidden material)")
        if self.visibility != "hidden":
            raise ValueError("a review check is hidden: its answer key names what a candidate must find")
        return self


# -- the answer key (trusted, the exercise's) ------------------------------------------------

class _Key(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Location(_Key):
    file: str = Field(min_length=1)
    lines: tuple[int, int]


class Risk(_Key):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    tier: Literal["must", "should", "nice"]
    category: Category
    related: list[Category] = []
    title: str = Field(min_length=1)
    evidence: list[Location] = Field(min_length=1)
    fix_test: str = ""  # the hidden test that fails until this risk is fixed ("" when none)
    explanation: str = ""


class Decoy(_Key):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    evidence: list[Location] = Field(min_length=1)
    explanation: str = ""


class AnswerKey(_Key):
    risk: list[Risk] = Field(min_length=1)
    decoy: list[Decoy] = []


def load_answer_key(path: Path) -> AnswerKey:
    """The exercise's answer key; BadInput naming the file and the problem when it is wrong."""
    try:
        return AnswerKey.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise BadInput(f"{path}: answer key not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise BadInput(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


# -- the candidate's review.json (untrusted) ------------------------------------------------

class Finding(_Key):
    file: str = Field(min_length=1, max_length=300)
    lines: Lines
    category: Category
    severity: Literal["high", "medium", "low"]
    title: str = Field(min_length=1, max_length=300)
    fix: str = Field("", max_length=4000)

    @model_validator(mode="after")
    def _ordered(self) -> "Finding":
        if self.lines[0] > self.lines[1]:
            raise ValueError("lines must be [first, last] with first <= last")
        return self


class ReviewFile(_Key):
    version: Literal[1]
    findings: list[Finding]


def read_review(path: Path, max_findings: int) -> tuple[list[Finding], str | None]:
    """The findings, or [] and one line naming what is wrong with the file."""
    name = path.name
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return [], f"{name}: not in the submission"
    except OSError as exc:
        return [], f"{name}: cannot be read ({exc.strerror or exc})"
    if not stat.S_ISREG(mode):
        return [], f"{name}: cannot be read (not a regular file)"
    data, truncated = read_capped(path, MAX_BYTES)  # no links followed, whatever changed since
    if truncated:
        return [], f"{name}: over {MAX_BYTES // 1024} KiB"
    try:
        text = data.decode("utf-8")
        if too_deep(text):
            return [], f"{name}: nested too deeply"
        raw = json.loads(text)
    except UnicodeDecodeError:
        return [], f"{name}: not UTF-8 text"
    except (json.JSONDecodeError, RecursionError) as exc:
        return [], f"{name}: not valid JSON: {getattr(exc, 'msg', 'too deep')} (line {getattr(exc, 'lineno', '?')})"
    if isinstance(raw, dict) and isinstance(raw.get("findings"), list) and len(raw["findings"]) > max_findings:
        return [], f"{name}: {len(raw['findings'])} findings, over the limit of {max_findings}"
    try:
        return ReviewFile.model_validate(raw).findings, None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return [], f"{name}: {where}: {err['msg']}{more}"[:300]


# -- matching ------------------------------------------------------------------------------

def _gap(finding: Finding, where: Location) -> int | None:
    """Lines between the finding and one evidence location (0 when they overlap); None: other file."""
    if finding.file.removeprefix("./") != where.file:
        return None
    first, last = finding.lines
    return max(0, where.lines[0] - last, first - where.lines[1])


def _quality(finding: Finding, risk: Risk) -> tuple[float, int]:
    """(match quality, gap in lines); quality 0 when the finding does not match the risk."""
    gaps = [g for g in (_gap(finding, w) for w in risk.evidence) if g is not None]
    if not gaps:
        return 0.0, 0
    gap = min(gaps)
    same = finding.category == risk.category
    if same and gap == 0:
        return 1.0, gap
    if (finding.category in risk.related and gap == 0) or (same and gap <= NEAR):
        return 0.75, gap
    if same and gap <= WIDE:
        return 0.5, gap
    return 0.0, gap


def match(findings: list[Finding], key: AnswerKey) -> dict[str, Any]:
    """One-to-one matching, best first (quality, then fewer lines apart, then the finding's order)."""
    pairs = sorted(((q, -gap, -i, i, j) for i, f in enumerate(findings) for j, r in enumerate(key.risk)
                    for q, gap in [_quality(f, r)] if q > 0), reverse=True)
    by_risk: dict[int, tuple[int, float]] = {}
    used: set[int] = set()
    for quality, _, _, i, j in pairs:
        if i not in used and j not in by_risk:
            by_risk[j] = (i, quality)
            used.add(i)
    decoys = {i: d.id for i, f in enumerate(findings) if i not in used
              for d in key.decoy if any(g == 0 for g in (_gap(f, w) for w in d.evidence))}
    return {"by_risk": by_risk, "decoys": decoys,
            "unmatched": [i for i in range(len(findings)) if i not in used and i not in decoys]}


# -- grading -------------------------------------------------------------------------------

def grade(ctx: Context, checks: list[ReviewCheck]) -> dict[str, Outcome]:
    return {check.id: judge(check, load_answer_key(ctx.exercise.root / check.answer_key),
                            ctx.workspace / check.file) for check in checks}


def judge(check: ReviewCheck, key: AnswerKey, path: Path) -> Outcome:
    """Score review.json at path against the key: the check's score and its report section."""
    findings, error = read_review(path, check.max_findings)
    matched = match(findings, key)
    weights = check.weights
    total_weight = sum(weights[r.tier] for r in key.risk)
    recall = sum(weights[key.risk[j].tier] * q for j, (_, q) in matched["by_risk"].items()) / total_weight
    precision = len(matched["by_risk"]) / len(findings) if findings else 0.0
    factor = min(1.0, precision / check.precision_full_at)
    earned = round(check.points * recall * factor, 4)

    tests, reasons = [], []
    for j, risk in enumerate(key.risk):
        nodeid = f"{check.id}::{risk.id}"
        share = check.points * weights[risk.tier] / total_weight
        if j in matched["by_risk"]:
            i, quality = matched["by_risk"][j]
            note = f"matched by finding {i + 1} (quality {quality:g})"
            tests.append(TestResult(nodeid, "passed", 0.0, f"{risk.tier}: {note}"))
            if quality < 1.0:
                reasons.append(f"-{share * (1 - quality):.2f} pts: {risk.tier} risk {risk.id}: {note}")
        else:
            tests.append(TestResult(nodeid, "failed", 0.0, f"{risk.tier}: missed: {risk.title}"))
            reasons.append(f"-{share:.2f} pts: {risk.tier} risk {risk.id} missed: {risk.title}")
    if error:
        reasons.insert(0, f"-{check.points:.2f} pts: {error}")
    elif factor < 1.0:
        reasons.append(f"-{check.points * recall * (1 - factor):.2f} pts: precision {precision:.0%} "
                       f"({len(matched['by_risk'])} of {len(findings)} findings matched a planted risk; "
                       f"{check.precision_full_at:.0%} costs nothing)")
    score = CheckScore(check, tuple(tests), earned, tuple(reasons) if reasons else ())
    return Outcome(score, section=_section(check, key, findings, matched, recall, precision, factor, error))


def _section(check: ReviewCheck, key: AnswerKey, findings: list[Finding], matched: dict[str, Any], recall: float,
             precision: float, factor: float, error: str | None) -> dict[str, Any]:
    def where(f: Finding) -> dict[str, Any]:
        return {"file": f.file, "lines": list(f.lines)}

    found = {key.risk[j].id for j in matched["by_risk"]}
    tiers = {t: {"found": sum(r.tier == t and r.id in found for r in key.risk),
                 "total": sum(r.tier == t for r in key.risk)} for t in TIERS}
    return {
        "check": check.id, "error": error, "findings": len(findings), "weighted_recall": round(recall, 4),
        "precision": round(precision, 4), "precision_factor": round(factor, 4), "tiers": tiers,
        "false_positive_count": len(matched["decoys"]), "unmatched_count": len(matched["unmatched"]),
        "matched": [{"risk": key.risk[j].id, "tier": key.risk[j].tier, "finding": i + 1, "quality": q,
                     **where(findings[i])} for j, (i, q) in sorted(matched["by_risk"].items())],
        "missed": [{"risk": r.id, "tier": r.tier, "title": r.title, "file": r.evidence[0].file,
                    "lines": list(r.evidence[0].lines)} for j, r in enumerate(key.risk) if j not in matched["by_risk"]],
        "false_positives": [{"finding": i + 1, "decoy": d, "title": findings[i].title, **where(findings[i])}
                            for i, d in sorted(matched["decoys"].items())],
        "unmatched": [{"finding": i + 1, "category": findings[i].category, "title": findings[i].title,
                       **where(findings[i])} for i in matched["unmatched"]],
    }


# -- report --------------------------------------------------------------------------------

class TierCount(ReportPart):
    found: Annotated[int, Field(ge=0)]
    total: Annotated[int, Field(ge=0)]


class ReviewSection(ReportPart):
    """One review check: what was matched, missed, wrongly flagged, and left for a human reviewer.
    The candidate view keeps the counts only."""

    check: str
    error: str | None = Field(description="why review.json could not be graded, if it could not")
    findings: Annotated[int, Field(ge=0)]
    weighted_recall: float
    precision: float
    precision_factor: float
    tiers: dict[Literal["must", "should", "nice"], TierCount]
    false_positive_count: Annotated[int, Field(ge=0)]
    unmatched_count: Annotated[int, Field(ge=0)]
    matched: list[dict[str, Any]] = Field(None, description="grader view only: risk, tier, finding, quality, file, "
                                                            "lines")
    missed: list[dict[str, Any]] = Field(None, description="grader view only: risk, tier, title, file, lines")
    false_positives: list[dict[str, Any]] = Field(None, description="grader view only: findings on decoys")
    unmatched: list[dict[str, Any]] = Field(None, description="grader view only: findings for human review")


def candidate_check(entry: dict[str, Any], hidden: Any = None) -> None:
    """The candidate learns how many risks of each tier were found, never which were missed."""
    counts = {t: [0, 0] for t in TIERS}
    for test in entry["tests"]:
        tier = test["message"].split(":", 1)[0]
        if tier in counts:
            counts[tier][1] += 1
            counts[tier][0] += test["outcome"] == "passed"
    found = ", ".join(f"{got} of {total} {tier}" for tier, (got, total) in counts.items() if total)
    lost = entry["max_points"] - entry["points"]
    file_or_precision = [r for r in entry["reasons"] if " risk " not in r]  # about the candidate's own file
    entry["tests"] = []
    entry["reasons"] = ([f"-{lost:.2f} pts: planted risks found, by tier: {found} (which ones were missed is "
                         "not shown)"] if lost > 0 else []) + file_or_precision


def candidate_section(section: dict[str, Any]) -> dict[str, Any]:
    """Counts only: the lists name risks, decoys and where they are."""
    return {k: v for k, v in section.items() if k not in ("matched", "missed", "false_positives", "unmatched")}


def markdown(section: dict[str, Any]) -> list[str]:
    """The section in report.md: every list with file and lines (the candidate view has counts only)."""
    tiers = ", ".join(f"{v['found']} of {v['total']} {t}" for t, v in section["tiers"].items() if v["total"])
    lines = [f"## Review: {section['check']}", "",
             f"{section['findings']} findings; risks found by tier: {tiers}; weighted recall "
             f"{section['weighted_recall']:.0%}, precision {section['precision']:.0%} (factor "
             f"{section['precision_factor']:.2f}); {section['false_positive_count']} on correct code, "
             f"{section['unmatched_count']} for human review."]
    if section.get("error"):
        lines += ["", f"review file: {section['error']}"]

    def at(row: dict[str, Any]) -> str:
        return f"`{row['file']}:{row['lines'][0]}-{row['lines'][1]}`"
    for title, key, row_text in (
            ("Matched", "matched", lambda r: f"{r['tier']} `{r['risk']}` by finding {r['finding']} "
                                            f"(quality {r['quality']:g}) at {at(r)}"),
            ("Missed (grader view only)", "missed", lambda r: f"{r['tier']} `{r['risk']}` at {at(r)}: {r['title']}"),
            ("False positives (findings on correct code)", "false_positives",
             lambda r: f"finding {r['finding']} on decoy `{r['decoy']}` at {at(r)}: {r['title']}"),
            ("For human review (matched nothing in the key)", "unmatched",
             lambda r: f"finding {r['finding']} ({r['category']}) at {at(r)}: {r['title']}")):
        if section.get(key):
            lines += ["", f"### {title}", ""] + [f"- {row_text(r)}" for r in section[key]]
    return lines


KIND = Kind(name="review", markdown=markdown, spec=ReviewCheck, grade=grade, section="review", section_model=ReviewSection,
            section_doc="one entry per review check: matched and missed risks, false positives and findings "
                        "left for human review (the candidate view keeps the counts)",
            candidate_check=candidate_check, candidate_section=candidate_section)
