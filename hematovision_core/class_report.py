"""The instructor's figures for one quiz code, computed in the database (GROUP BY).

A course on several replicas may hold hundreds of thousands of answers; the instructor page must
not load them all into pandas on every click. Here each figure is one grouped query returning
a row per student, class, image or pair of classes; the tables are then built by the same
`quiz.*_frame` functions that `quiz` uses on `Answer` objects, so both give identical results
(tests/test_class_report.py checks that on SQLite and PostgreSQL). Ratios and sort orders are
taken in Python from the counts, so they never depend on the database's arithmetic or collation.
All queries of a report run in one transaction: one consistent snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from hematovision_core import quiz
from hematovision_core.database import transaction
from hematovision_core.schema import answers as table

TOP_PAIRS = 8
TOP_IMAGES = 8

c = table.c
ONE_IF_CORRECT = sa.case((c.correct, 1), else_=0)
ONE_IF_JUDGED = sa.case((c.model_answer.is_not(None), 1), else_=0)  # the model's answer known
ONE_IF_MODEL_CORRECT = sa.case((c.model_answer == c.truth, 1), else_=0)  # NULL: not correct
POINTS = sa.case((sa.and_(c.correct, c.hint_used), quiz.POINTS_CORRECT - quiz.HINT_COST),
                 (c.correct, quiz.POINTS_CORRECT), else_=0)  # as quiz.Answer.points


@dataclass(frozen=True, eq=False)
class ClassReport:
    quiz_code: str
    answers: int
    correct: int
    students: pd.DataFrame  # as quiz.student_results
    versus: quiz.HumanVsModel  # as quiz.human_vs_model
    classes: list[str]  # as quiz.answer_classes
    class_accuracy: pd.DataFrame  # as quiz.class_accuracy(answers, classes)
    confusion: np.ndarray  # as quiz.confusion_matrix(answers, classes)
    confused_pairs: pd.DataFrame  # as quiz.confused_pairs(answers, TOP_PAIRS)
    hardest_images: pd.DataFrame  # as quiz.hardest_images(answers, TOP_IMAGES)

    @property
    def accuracy(self) -> float:
        """The class's share of right answers (as quiz.score(answers).accuracy)."""
        return self.correct / self.answers if self.answers else 0.0


def _sum(expression) -> sa.ColumnElement:
    return sa.func.coalesce(sa.func.sum(expression), 0)


def student_tallies(connection: sa.Connection, code: str) -> pd.DataFrame:
    """`quiz.student_results`: one row per session, its nickname that of its latest answer."""
    per_session = (sa.select(c.session_id, sa.func.count().label("answered"),
                             _sum(ONE_IF_CORRECT).label("correct"), _sum(POINTS).label("points"),
                             _sum(ONE_IF_JUDGED).label("judged"),
                             _sum(ONE_IF_MODEL_CORRECT).label("model_correct"),
                             sa.func.min(c.id).label("first_id"), sa.func.max(c.id).label("last_id"))
                   .where(c.quiz_code == code).group_by(c.session_id).subquery())
    latest = table.alias("latest")
    query = (sa.select(per_session, latest.c.nickname)
             .join_from(per_session, latest, latest.c.id == per_session.c.last_id)
             .order_by(per_session.c.first_id))
    rows = [{"session_id": row.session_id, "nickname": row.nickname, "answered": row.answered,
             "correct": row.correct, "accuracy": row.correct / row.answered, "points": row.points,
             "model_accuracy": row.model_correct / row.judged if row.judged else np.nan}
            for row in connection.execute(query)]
    return quiz.student_results_frame(rows)


def totals(connection: sa.Connection, code: str) -> tuple[int, int, quiz.HumanVsModel]:
    """Answers, right answers and `quiz.human_vs_model`, in one pass."""
    judged = c.model_answer.is_not(None)
    model_right = c.model_answer == c.truth

    def count_if(*conditions) -> sa.ColumnElement:
        return _sum(sa.case((sa.and_(*conditions), 1), else_=0))

    row = connection.execute(
        sa.select(sa.func.count(), _sum(ONE_IF_CORRECT), _sum(ONE_IF_JUDGED),
                  count_if(judged, c.correct), _sum(ONE_IF_MODEL_CORRECT),
                  count_if(judged, c.correct, model_right),
                  count_if(judged, c.correct, sa.not_(model_right)),
                  count_if(judged, sa.not_(c.correct), model_right),
                  count_if(judged, sa.not_(c.correct), sa.not_(model_right)))
        .where(c.quiz_code == code)).one()
    answers, correct, *versus = (int(value) for value in row)
    return answers, correct, quiz.HumanVsModel(*versus)


def answer_classes(connection: sa.Connection, code: str) -> list[str]:
    """`quiz.answer_classes`: every class given as a truth or an answer, sorted."""
    query = sa.union(sa.select(c.truth).where(c.quiz_code == code),
                     sa.select(c.answer).where(c.quiz_code == code))
    return sorted(connection.execute(query).scalars())


def class_tallies(connection: sa.Connection, code: str) -> dict[str, quiz.ClassTally]:
    """Per true class: answered, correct, judged by the model, model correct."""
    query = (sa.select(c.truth, sa.func.count(), _sum(ONE_IF_CORRECT), _sum(ONE_IF_JUDGED),
                       _sum(ONE_IF_MODEL_CORRECT))
             .where(c.quiz_code == code).group_by(c.truth))
    return {row[0]: tuple(int(v) for v in row[1:]) for row in connection.execute(query)}


def pair_counts(connection: sa.Connection, code: str, wrong_only: bool) -> dict[tuple[str, str], int]:
    """(truth, answer) -> count, of every answer or only the wrong ones."""
    query = (sa.select(c.truth, c.answer, sa.func.count())
             .where(c.quiz_code == code).group_by(c.truth, c.answer))
    if wrong_only:
        query = query.where(sa.not_(c.correct))
    return {(truth, given): int(count) for truth, given, count in connection.execute(query)}


def hardest_images(connection: sa.Connection, code: str, top: int = TOP_IMAGES) -> pd.DataFrame:
    """`quiz.hardest_images`: truth and model answer from each image's first answer, its most
    frequent wrong answer (ties: the one given first)."""
    per_image = (sa.select(c.image_id, sa.func.count().label("attempts"),
                           _sum(ONE_IF_CORRECT).label("correct"),
                           sa.func.min(c.id).label("first_id"))
                 .where(c.quiz_code == code).group_by(c.image_id).subquery())
    first = table.alias("first")
    query = (sa.select(per_image, first.c.truth, first.c.model_answer)
             .join_from(per_image, first, first.c.id == per_image.c.first_id))
    mistakes = (sa.select(c.image_id, c.answer, sa.func.count(), sa.func.min(c.id))
                .where(c.quiz_code == code, sa.not_(c.correct)).group_by(c.image_id, c.answer))
    common: dict[str, tuple[int, int, str]] = {}  # image -> (-count, first id, answer): min wins
    for image_id, given, count, first_id in connection.execute(mistakes):
        candidate = (-int(count), int(first_id), given)
        common[image_id] = min(common.get(image_id, candidate), candidate)
    rows = [{"image_id": row.image_id, "truth": row.truth, "attempts": row.attempts,
             "accuracy": row.correct / row.attempts,
             "common_mistake": common[row.image_id][2] if row.image_id in common else "",
             "model_answer": row.model_answer or ""}
            for row in connection.execute(query)]
    return quiz.hardest_images_frame(rows, top)


def daily_error_tallies(connection: sa.Connection,
                        code: str) -> dict[tuple[str, str], quiz.ErrorTally]:
    """(ISO day, truth) -> (answered, wrong); the day is the first 10 characters of `answered_at`
    (ISO 8601 in UTC), which SUBSTR reads the same on SQLite and PostgreSQL."""
    day = sa.func.substr(c.answered_at, 1, 10)
    query = (sa.select(day, c.truth, sa.func.count(), sa.func.count() - _sum(ONE_IF_CORRECT))
             .where(c.quiz_code == code).group_by(day, c.truth))
    return {(row[0], row[1]): (int(row[2]), int(row[3])) for row in connection.execute(query)}


def class_errors_over_time(database: str | Path, code: str, period: str = "day") -> pd.DataFrame:
    """Which cell types a quiz code's class keeps missing: `quiz.class_errors_over_time`, per day
    or week, grouped in the database (a course's answers are never loaded to draw it)."""
    if period not in quiz.PERIODS:
        raise ValueError(f"Unknown period {period!r}; choose one of {', '.join(quiz.PERIODS)}.")
    tallies = transaction(database, lambda connection: daily_error_tallies(connection, code))
    return quiz.class_errors_frame(tallies, period)


def class_report(database: str | Path, code: str) -> ClassReport:
    """Every figure of the instructor view for one quiz code, from one snapshot of the database."""
    def read(connection: sa.Connection) -> ClassReport:
        answers, correct, versus = totals(connection, code)
        classes = answer_classes(connection, code)
        return ClassReport(
            quiz_code=code, answers=answers, correct=correct,
            students=student_tallies(connection, code), versus=versus, classes=classes,
            class_accuracy=quiz.class_accuracy_frame(class_tallies(connection, code), classes),
            confusion=quiz.confusion_matrix_from_counts(pair_counts(connection, code, False),
                                                        classes),
            confused_pairs=quiz.confused_pairs_frame(pair_counts(connection, code, True),
                                                     TOP_PAIRS),
            hardest_images=hardest_images(connection, code))

    # REPEATABLE READ on PostgreSQL: every query of the report sees the same answers (SQLite's
    # transactions are snapshots already).
    return transaction(database, read, isolation="REPEATABLE READ")
