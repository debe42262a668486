"""Review cards and review answers in the answers database (SQLite or PostgreSQL).

The schedule lives here, in the database, not in a process: a student may answer on one replica
today and review on another tomorrow. Each change is one short transaction (`database.transaction`):
a quiz answer and the card it resets are written together, and so are a review answer and the
card it moves. `review` decides how cards move; this module only reads and writes them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from hematovision_core import review
from hematovision_core.database import transaction
from hematovision_core.quiz import Answer
from hematovision_core.quiz_pool import Candidate
from hematovision_core.review import Card, ReviewItem
from hematovision_core.schema import answers, review_cards, reviews
from hematovision_core.storage import insert_answers

cards_c, reviews_c = review_cards.c, reviews.c


@dataclass(frozen=True)
class StudentHistory:
    cards: list[Card]  # every card of the student, learned ones included
    review_days: set[date]  # days with at least one review: the streak
    reviewed_today: set[str]  # image ids reviewed today (not offered again as look-alikes)
    mistakes: Counter  # (truth, answered as) -> count, over their quiz and review answers

    def streak(self, today: date) -> int:
        return review.streak(self.review_days, today)


# ---- writing ------------------------------------------------------------------------------------


def _card_values(student_id: int, card: Card) -> dict:
    return {"student_id": student_id, "image_id": card.image_id, "truth": card.truth,
            "box": card.box, "due_on": card.due_on.isoformat() if card.due_on else None,
            "last_seen": card.last_seen, "last_answer": card.last_answer}


def _put_card(connection: sa.Connection, student_id: int, card: Card) -> None:
    """Insert or replace the student's card for this image in one statement (both backends
    have INSERT ... ON CONFLICT), so two tabs missing the same cell at once cannot collide."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    values = _card_values(student_id, card)
    statement = dialect.insert(review_cards).values(values)
    connection.execute(statement.on_conflict_do_update(
        index_elements=["student_id", "image_id"],
        set_={name: statement.excluded[name] for name in values
              if name not in ("student_id", "image_id")}))


def _to_card(row: sa.Row) -> Card:
    return Card(row.image_id, row.truth, row.box,
                date.fromisoformat(row.due_on) if row.due_on else None, row.last_seen,
                row.last_answer)


def save_quiz_answer(database: str | Path, answer: Answer, now: datetime, today: date) -> None:
    """Store a quiz answer; a wrong one of a student who keeps a nickname (re)sets its card to
    box 1, due the next day. Right quiz answers leave cards as they are (see `review`)."""
    def write(connection: sa.Connection) -> None:
        insert_answers(connection, [answer])
        if answer.student_id is not None and not answer.correct:
            _put_card(connection, answer.student_id,
                      review.missed(answer.image_id, answer.truth, answer.answer, now, today))

    transaction(database, write, write=True)


def record_review(database: str | Path, student_id: int, item: ReviewItem, given: str,
                  now: datetime, today: date) -> Card | None:
    """Store a review answer and move its card; returns the card after it (None: no card, a
    look-alike answered right).

    The card is read again under a row lock: if another tab already reviewed it today, it is
    no longer due and a right answer leaves it where it is (a wrong one still resets it).
    """
    def write(connection: sa.Connection) -> Card | None:
        row = connection.execute(
            sa.select(review_cards)
            .where(cards_c.student_id == student_id, cards_c.image_id == item.image_id)
            .with_for_update()).one_or_none()  # SQLite: the write lock is held already
        card = _to_card(row) if row is not None else None
        correct = given == item.truth
        if not correct:
            card = review.missed(item.image_id, item.truth, given, now, today)
        elif card is not None and card.is_due(today):
            card = review.after_review(card, given, now, today)
        else:
            card = None  # right, and nothing due to move
        if card is not None:
            _put_card(connection, student_id, card)
        connection.execute(sa.insert(reviews).values(
            student_id=student_id, image_id=item.image_id, truth=item.truth, answer=given,
            correct=correct, kind=item.kind, box_after=card.box if card else None,
            reviewed_at=review.iso(now), day=today.isoformat()))
        return card

    return transaction(database, write, write=True)


# ---- reading ------------------------------------------------------------------------------------


def _mistakes(connection: sa.Connection, student_id: int) -> Counter:
    """(truth, answer) -> count of the student's wrong answers, in quizzes and in reviews."""
    counts: Counter = Counter()
    for c in (answers.c, reviews_c):
        query = (sa.select(c.truth, c.answer, sa.func.count())
                 .where(c.student_id == student_id, sa.not_(c.correct))
                 .group_by(c.truth, c.answer))
        for truth, given, count in connection.execute(query):
            counts[(truth, given)] += int(count)
    return counts


def history(database: str | Path, student_id: int, today: date) -> StudentHistory:
    """The student's cards, review days and mistakes, from one snapshot of the database."""
    def read(connection: sa.Connection) -> StudentHistory:
        cards = [_to_card(row) for row in connection.execute(
            sa.select(review_cards).where(cards_c.student_id == student_id)
            .order_by(cards_c.id))]
        days = {date.fromisoformat(day) for day in connection.execute(
            sa.select(reviews_c.day).where(reviews_c.student_id == student_id)
            .distinct()).scalars()}
        today_ids = set(connection.execute(
            sa.select(reviews_c.image_id)
            .where(reviews_c.student_id == student_id, reviews_c.day == today.isoformat())
            .distinct()).scalars())
        return StudentHistory(cards, days, today_ids, _mistakes(connection, student_id))

    return transaction(database, read, isolation="REPEATABLE READ")


def plan_today(database: str | Path, student_id: int, pool: Sequence[Candidate],
               classes: Sequence[str], data_dir: str | Path,
               today: date) -> tuple[review.ReviewPlan, StudentHistory]:
    """Today's review session for a student (`review.plan_review`) and the history it came from."""
    past = history(database, student_id, today)
    plan = review.plan_review(past.cards, pool, past.mistakes, classes, data_dir, today,
                              student_id, past.reviewed_today)
    return plan, past
