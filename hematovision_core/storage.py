"""Quiz answers in SQLite: one row per answer, written the moment it is given.

The file is `Settings.db_path` (`HEMATOVISION_DB`, default `var/quiz.sqlite3`). Every operation
opens its own short-lived connection, so no connection is shared across Streamlit's threads;
the database runs in WAL mode (readers never block the writer) with a generous busy timeout, so
a lecture hall answering at once queues for the write lock instead of failing.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Iterator, Sequence

from hematovision_core.quiz import ANSWER_FIELDS, Answer

BUSY_TIMEOUT_SECONDS = 30.0
LOCKED_RETRIES = 5  # extra tries when even the busy timeout runs out (e.g. WAL being switched on)

COLUMN_TYPES = {
    "question_number": "INTEGER NOT NULL",
    "model_confidence": "REAL",
    "correct": "INTEGER NOT NULL",
    "hint_used": "INTEGER NOT NULL",
    "seconds": "REAL NOT NULL",
    "model_answer": "TEXT",
}
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS answers (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    + ", ".join(f"{name} {COLUMN_TYPES.get(name, 'TEXT NOT NULL')}" for name in ANSWER_FIELDS)
    + ");\nCREATE INDEX IF NOT EXISTS answers_by_code ON answers (quiz_code, session_id);"
)


class StorageError(RuntimeError):
    """The answers database cannot be read or written; the message is meant for the user."""


@dataclass(frozen=True)
class QuizCodeSummary:
    quiz_code: str
    students: int  # distinct sessions
    answers: int
    first_answer: str  # ISO 8601, UTC
    last_answer: str


@contextmanager
def connect(db_path: str | Path) -> Iterator[sqlite3.Connection]:
    """A short-lived WAL-mode connection with the schema in place; commits on success, always closes."""
    path = Path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")  # safe in WAL; a crash loses no commit
        connection.executescript(SCHEMA)
        yield connection
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        connection.close()


def _retry_locked(operation):
    """Run `operation`, retrying while SQLite reports a lock; StorageError when it cannot."""
    for attempt in range(LOCKED_RETRIES + 1):
        try:
            return operation()
        except sqlite3.OperationalError as error:
            transient = "locked" in str(error) or "busy" in str(error)
            if not transient or attempt == LOCKED_RETRIES:
                raise StorageError(f"The quiz database could not be used: {error}") from error
            time.sleep(0.05 * 2 ** attempt)
        except (sqlite3.Error, OSError) as error:
            raise StorageError(f"The quiz database could not be used: {error}") from error


def save_answer(db_path: str | Path, answer: Answer) -> None:
    """Append one answer (durable once this returns)."""
    save_answers(db_path, [answer])


def save_answers(db_path: str | Path, answers: Sequence[Answer]) -> None:
    """Append several answers in one transaction."""
    columns = ", ".join(ANSWER_FIELDS)
    marks = ", ".join("?" for _ in ANSWER_FIELDS)
    rows = [astuple(a) for a in answers]

    def write():
        with connect(db_path) as connection:
            connection.executemany(f"INSERT INTO answers ({columns}) VALUES ({marks})", rows)

    _retry_locked(write)


def _to_answer(row: tuple) -> Answer:
    values = dict(zip(ANSWER_FIELDS, row))
    values["correct"] = bool(values["correct"])
    values["hint_used"] = bool(values["hint_used"])
    return Answer(**values)


def load_answers(db_path: str | Path, quiz_code: str | None = None,
                 session_id: str | None = None) -> list[Answer]:
    """Answers in the order given, optionally of one quiz code and/or one session."""
    if not Path(db_path).exists():
        return []
    conditions, parameters = [], []
    for column, value in (("quiz_code", quiz_code), ("session_id", session_id)):
        if value is not None:
            conditions.append(f"{column} = ?")
            parameters.append(value)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""

    def read():
        with connect(db_path) as connection:
            return connection.execute(
                f"SELECT {', '.join(ANSWER_FIELDS)} FROM answers{where} ORDER BY id", parameters
            ).fetchall()

    return [_to_answer(row) for row in _retry_locked(read)]


def quiz_codes(db_path: str | Path) -> list[QuizCodeSummary]:
    """Every quiz code with answers, the most recently used first."""
    if not Path(db_path).exists():
        return []

    def read():
        with connect(db_path) as connection:
            return connection.execute(
                "SELECT quiz_code, COUNT(DISTINCT session_id), COUNT(*), MIN(answered_at), "
                "MAX(answered_at) FROM answers GROUP BY quiz_code ORDER BY MAX(id) DESC"
            ).fetchall()

    return [QuizCodeSummary(*row) for row in _retry_locked(read)]
