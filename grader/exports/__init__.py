"""`mlgrade export DIR --format csv|jsonl|gradescope|junit`: a graded round in other tools' formats.

One module per format renders files from the round's rows (rows.py, read through
grader.batch.layout.read_round only); writing.py puts them in place atomically; command.py is the
sub-command. docs/exports.md describes each format.
"""
