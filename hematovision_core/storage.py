"""Quiz answers in a database: one row per answer, written the moment it is given.

The database is `Settings.database` (`HEMATOVISION_DB`): a SQLite file on one machine, PostgreSQL
when several replicas serve one course. Every operation is one short transaction on a pooled
connection (`database.transaction`), retried after a lock, a serialization failure or a lost
connection, so a lecture hall answering at once queues instead of failing. Statements are built
with SQLAlchemy Core; the instructor's figures are computed in SQL (`class_report`).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Sequence

import sqlalchemy as sa

from hematovision_core.database import StorageError, transaction
from hematovision_core.quiz import ANSWER_FIELDS, Answer
from hematovision_core.schema import answers as answers_table

__all__ = ["StorageError", "QuizCodeSummary", "save_answer", "save_answers", "insert_answers",
           "load_answers", "quiz_codes", "prepare"]


@dataclass(frozen=True)
class QuizCodeSummary:
    quiz_code: str
    students: int  # distinct sessions
    answers: int
    first_answer: str  # ISO 8601, UTC
    last_answer: str


def prepare(database: str | Path) -> None:
    """Connect once and upgrade the schema now (at server start) rather than at the first answer."""
    transaction(database, lambda connection: None)


def insert_answers(connection: sa.Connection, answers: Sequence[Answer]) -> None:
    """The INSERT of `save_answers`, on a connection whose transaction the caller owns."""
    rows = [dict(zip(ANSWER_FIELDS, astuple(a))) for a in answers]
    if rows:
        connection.execute(sa.insert(answers_table), rows)


def save_answer(database: str | Path, answer: Answer) -> None:
    """Append one answer (durable once this returns)."""
    save_answers(database, [answer])


def save_answers(database: str | Path, answers: Sequence[Answer]) -> None:
    """Append several answers in one transaction."""
    transaction(database, lambda connection: insert_answers(connection, answers), write=True)


def _to_answer(row: sa.Row) -> Answer:
    values = row._asdict()
    values["correct"] = bool(values["correct"])
    values["hint_used"] = bool(values["hint_used"])
    return Answer(**values)


def load_answers(database: str | Path, quiz_code: str | None = None,
                 session_id: str | None = None) -> list[Answer]:
    """Answers in the order given, optionally of one quiz code and/or one session."""
    query = sa.select(*(answers_table.c[name] for name in ANSWER_FIELDS)).order_by(answers_table.c.id)
    if quiz_code is not None:
        query = query.where(answers_table.c.quiz_code == quiz_code)
    if session_id is not None:
        query = query.where(answers_table.c.session_id == session_id)
    rows = transaction(database, lambda connection: connection.execute(query).all())
    return [_to_answer(row) for row in rows]


def quiz_codes(database: str | Path) -> list[QuizCodeSummary]:
    """Every quiz code with answers, the most recently used first."""
    table = answers_table.c
    query = (sa.select(table.quiz_code, sa.func.count(sa.distinct(table.session_id)),
                       sa.func.count(), sa.func.min(table.answered_at),
                       sa.func.max(table.answered_at))
             .group_by(table.quiz_code).order_by(sa.func.max(table.id).desc()))
    rows = transaction(database, lambda connection: connection.execute(query).all())
    return [QuizCodeSummary(*row) for row in rows]
