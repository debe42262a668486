"""Many writer processes at once, and a writer killed mid-transaction (tests/answer_writer.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from answer_writer import answer

from hematovision_core import storage

WRITER = Path(__file__).parent / "answer_writer.py"
PROCESSES, ANSWERS = 20, 50
WAIT_SECONDS = 240  # for all writers together


def start_writer(url: str, session: str, count: int, go_file: Path, hang: bool = False):
    command = [sys.executable, str(WRITER), url, session, str(count), str(go_file)]
    return subprocess.Popen(command + (["--hang"] if hang else []), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(writers: list[subprocess.Popen], deadline: float) -> None:
    """Wait for every writer until the deadline; kill the ones still running (ours, by PID)."""
    try:
        for writer in writers:
            writer.wait(timeout=max(deadline - time.monotonic(), 0.1))
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    for writer in writers:
        output, errors = writer.communicate()
        assert writer.returncode == 0 and "done" in output, errors[-2000:]


def numbers_by_session(url: str) -> dict[str, list[int]]:
    found = defaultdict(list)
    for answer in storage.load_answers(url, quiz_code="WRITERS"):
        found[answer.session_id].append(answer.question_number)
    return found


@pytest.mark.postgres
def test_twenty_processes_writing_fifty_answers_each_lose_nothing(postgres_url, tmp_path):
    go = tmp_path / "go"
    writers = [start_writer(postgres_url, f"p{n}", ANSWERS, go) for n in range(PROCESSES)]
    go.touch()
    finish(writers, time.monotonic() + WAIT_SECONDS)
    stored = numbers_by_session(postgres_url)
    assert sum(len(numbers) for numbers in stored.values()) == PROCESSES * ANSWERS
    assert all(stored[f"p{n}"] == list(range(1, ANSWERS + 1)) for n in range(PROCESSES))


def test_a_writer_killed_mid_transaction_loses_only_its_unfinished_answer(database_url, tmp_path):
    go = tmp_path / "go"
    go.touch()
    victim = start_writer(database_url, "victim", 3, go, hang=True)
    try:
        for expected in ("done", "inserted"):  # its 3 answers committed, a 4th in flight
            line = victim.stdout.readline().strip()
            assert line == expected, victim.stderr.read()[-2000:]
        # Another student answers meanwhile (on SQLite it waits for the victim's write lock).
        bystander = start_writer(database_url, "bystander", 5, go)
        time.sleep(1.0)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finish([bystander], time.monotonic() + 120)
    storage.save_answer(database_url, answer("late", 1))  # no lock or transaction left behind
    stored = numbers_by_session(database_url)
    assert stored["victim"] == [1, 2, 3]  # its unfinished 4th answer, and only that, is gone
    assert stored["bystander"] == [1, 2, 3, 4, 5]
    assert stored["late"] == [1]
