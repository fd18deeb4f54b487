"""Error types the CLI maps to exit codes: BadInput -> 2, InfraError -> 3."""


class BadInput(Exception):
    """The user's input is wrong (submission, manifest, arguments). One clear line; exit 2."""


class InfraError(Exception):
    """The grader or sandbox could not do its job. One clear line with a fix; exit 3."""


class SubmissionRefused(BadInput):
    """The submission itself was refused at intake (bad archive, unsafe path, missing required file,
    syntax error): the candidate's failure, where any other BadInput of a grading is the exercise's."""
