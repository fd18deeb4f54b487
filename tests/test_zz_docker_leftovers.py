"""Runs last (pytest collects tests/ in name order): the suite left no mlgrade container behind.

A leftover is a labelled container whose grader process is gone (a test's subprocess that
was killed and never swept) or that belongs to this pytest process (a run that failed to
remove its container). Containers of graders still running elsewhere on this engine are not ours.
"""
from __future__ import annotations

import os

import pytest

from sandbox.api import BackendUnavailable
from sandbox.docker_backend import LABEL, OWNER_PID, connect, owner_gone, sweep


def test_no_mlgrade_container_is_left_after_the_suite() -> None:
    try:
        client = connect()
    except BackendUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"docker must be available in CI: {exc}")
        pytest.skip(f"docker unavailable: {exc}")
    left = [c for c in client.api.containers(all=True, filters={"label": f"{LABEL}=1"})
            if owner_gone(c["Labels"]) or c["Labels"].get(OWNER_PID) == str(os.getpid())]
    names = [f"{c['Names'][0]} ({c['Status']}, owner pid {c['Labels'].get(OWNER_PID)})" for c in left]
    sweep(client)  # do not leave them for the next run either
    assert names == []
