"""Background jobs: one thread per key shared by every caller, progress readable meanwhile."""

from __future__ import annotations

import threading

import pytest

from hematovision_core import background


def test_callers_asking_for_the_same_key_share_one_run_and_see_its_progress():
    release, calls = threading.Event(), []

    def work(progress):
        calls.append(1)
        progress(3, 10)
        release.wait(5)
        progress(10, 10)

    first = background.start("split-a", work)
    second = background.start("split-a", work)  # e.g. another session, or a rerun
    assert second is first
    assert not first.wait(0.2)
    assert (first.done, first.total) == (3, 10) and background.get("split-a") is first
    release.set()
    assert first.wait(5) and first.error is None
    assert calls == [1] and (first.done, first.total) == (10, 10)
    assert background.get("split-a") is None  # finished: its result is wherever work put it


def test_a_failed_job_is_kept_to_be_shown_and_replaced_by_a_new_try():
    def failing(progress):
        raise OSError("disk full")

    job = background.start("split-b", failing)
    assert job.wait(5)
    assert isinstance(job.error, OSError) and background.get("split-b") is job
    again = background.start("split-b", lambda progress: None)
    assert again is not job and again.wait(5) and again.error is None
    assert background.get("split-b") is None


@pytest.fixture(autouse=True)
def no_leftover_jobs():
    yield
    for key in ("split-a", "split-b"):
        background.forget(key)
