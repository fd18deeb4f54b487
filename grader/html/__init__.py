"""HTML pages of gradings and rounds: self-contained files (inline CSS and SVG, no script, a strict
Content-Security-Policy), every report string escaped. See docs/html-reports.md."""
from .pages import render_submission, render_summary, write_round_pages, write_submission_page, write_summary_page

__all__ = ["render_submission", "render_summary", "write_round_pages", "write_submission_page", "write_summary_page"]
