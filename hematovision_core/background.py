"""Long work that outlives a page run: one thread per key, shared by every session in the process.

The explorer's first pass over a split takes minutes (PBC's test split: about 2 min 40 s). Run in
the page's own script run, any click (a View button, a tab) stopped it and the next run started
over. Here it runs in a thread of its own, registered under a key (the split's cache folder), so
every session asking for the same model and split watches the same run, and reruns only read
its progress. The result itself goes to disk (`split_predictions.compute`); a finished job is
forgotten, a failed one is kept until someone starts it again, so its error can be shown.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable

Progress = Callable[[int, int], None]


@dataclass
class Job:
    """A running (or failed) piece of work and how far it got."""

    key: Hashable
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    def report(self, done: int, total: int) -> None:
        """The work's progress callback: `done` of `total` items."""
        self.done, self.total = done, total

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds; True once the job has ended (well or not)."""
        return self.finished.wait(timeout)


_jobs: dict[Hashable, Job] = {}
_lock = threading.Lock()


def start(key: Hashable, work: Callable[[Progress], object]) -> Job:
    """Run `work(progress)` in a daemon thread under `key`, unless a job with that key is already
    running: then return that one. A failed job under the key is replaced (a new try)."""
    with _lock:
        job = _jobs.get(key)
        if job is not None and job.error is None:
            return job
        job = _jobs[key] = Job(key)

    def run() -> None:
        try:
            work(job.report)
        except BaseException as error:  # shown to the user by whoever watches the job
            job.error = error
        else:
            with _lock:
                if _jobs.get(key) is job:
                    del _jobs[key]
        finally:
            job.finished.set()

    threading.Thread(target=run, name=f"background-{key}", daemon=True).start()
    return job


def get(key: Hashable) -> Job | None:
    """The job running (or failed) under `key`, if any."""
    with _lock:
        return _jobs.get(key)


def forget(key: Hashable) -> None:
    """Drop a failed job once its error has been shown."""
    with _lock:
        _jobs.pop(key, None)
