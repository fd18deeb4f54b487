"""Public: review.json (at the kit root) is well formed. It does not check what it says."""
from __future__ import annotations

import json
from pathlib import Path

import churnsvc

KIT = Path(churnsvc.__file__).resolve().parent.parent
CATEGORIES = {"leakage", "training-serving-skew", "training", "evaluation", "serving",
              "reliability", "security", "privacy", "reproducibility", "data-quality"}
FIELDS = {"file", "lines", "category", "severity", "title", "fix"}


def test_review_json_is_well_formed():
    review = json.loads((KIT / "review.json").read_text(encoding="utf-8"))
    assert review.get("version") == 1
    findings = review.get("findings")
    assert isinstance(findings, list) and len(findings) <= 25, "at most 25 findings"
    for i, finding in enumerate(findings):
        assert isinstance(finding, dict) and set(finding) >= FIELDS, (i, "missing fields")
        path = KIT / finding["file"]
        assert not Path(finding["file"]).is_absolute() and path.is_file(), (i, finding["file"])
        lines = finding["lines"]
        assert isinstance(lines, list) and len(lines) == 2 and all(type(n) is int for n in lines), (i, lines)
        assert 1 <= lines[0] <= lines[1], (i, lines)
        assert finding["category"] in CATEGORIES, (i, finding["category"])
        assert finding["severity"] in {"high", "medium", "low"}, (i, finding["severity"])
        assert isinstance(finding["title"], str) and finding["title"].strip(), (i, "title")
        assert isinstance(finding["fix"], str) and finding["fix"].strip(), (i, "fix")
