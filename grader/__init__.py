"""mlgrade's trusted side: exercises, intake, the grading pipeline, scoring, reports and the CLI."""
