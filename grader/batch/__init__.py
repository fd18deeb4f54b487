"""Grading a round: many submissions of one exercise into one folder, resumable (see layout.py)."""
