"""The database's tables, described once for SQLAlchemy.

`answers`: one row per quiz answer, as `quiz.Answer`. Column types match what the first
(pre-Alembic) SQLite schema declared, so a file written by that code is this table: `correct` and
`hint_used` are booleans (SQLite keeps them as 0/1), `answered_at` stays the ISO 8601 text the
quiz writes.

Review mode (revision 0003): `students` (a kept nickname and its hashed PIN), `review_cards` (a
student's missed cells on their Leitner schedule) and `reviews` (every review answer: the streak).
Times are ISO 8601 text in UTC like `answered_at`; days (`due_on`, `day`) are ISO dates in the
student's own calendar, so `due_on <= today` compares as text on every backend.

Instructor sign-in (revision 0004): `sign_in_failures` and `sign_in_locks`, the server-wide count
of wrong passwords that every replica shares (`instructor_sign_in`).
"""

from __future__ import annotations

import sqlalchemy as sa

from hematovision_core.quiz import ANSWER_FIELDS

metadata = sa.MetaData()

# Booleans without a CHECK constraint: the first SQLite schema had none, and it is this table.
answers = sa.Table(
    "answers", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("quiz_code", sa.Text, nullable=False),
    sa.Column("session_id", sa.Text, nullable=False),
    sa.Column("nickname", sa.Text, nullable=False),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("mode", sa.Text, nullable=False),
    sa.Column("difficulty", sa.Text, nullable=False),
    sa.Column("question_number", sa.Integer, nullable=False),
    sa.Column("image_id", sa.Text, nullable=False),
    sa.Column("truth", sa.Text, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("model_answer", sa.Text),
    sa.Column("model_confidence", sa.Float),
    sa.Column("correct", sa.Boolean(create_constraint=False), nullable=False),
    sa.Column("hint_used", sa.Boolean(create_constraint=False), nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("answered_at", sa.Text, nullable=False),
    # Revision 0003. No foreign key: SQLite cannot add one to a table without copying it, and
    # this one holds every lecture's answers; NULL for a student who keeps no nickname.
    sa.Column("student_id", sa.Integer),
    sa.Index("answers_by_code", "quiz_code", "session_id"),
    sa.Index("answers_by_code_and_image", "quiz_code", "image_id"),  # revision 0002
    sa.Index("answers_by_student", "student_id"),  # revision 0003
    sqlite_autoincrement=True,  # ids never reused: "most recent quiz code" is MAX(id)
)

students = sa.Table(
    "students", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # NFKC + casefold of the nickname: "Ana" and "ana" are one student, so nobody can keep a
    # copy of another's nickname that reads the same.
    sa.Column("nickname_key", sa.Text, nullable=False, unique=True),
    sa.Column("nickname", sa.Text, nullable=False),  # as first typed, for display
    sa.Column("pin_hash", sa.Text),  # "scrypt$n$r$p$salt$hash" (students.hash_pin); NULL: no PIN
    # Wrong PINs since the last right one.
    sa.Column("failed_pins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", sa.Text),  # ISO 8601 UTC: no PIN is looked at before then
    sa.Column("created_at", sa.Text, nullable=False),
)

review_cards = sa.Table(
    "review_cards", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("student_id", sa.Integer, sa.ForeignKey("students.id"), nullable=False),
    sa.Column("image_id", sa.Text, nullable=False),  # as answers.image_id
    sa.Column("truth", sa.Text, nullable=False),
    sa.Column("box", sa.Integer, nullable=False),  # 1-3 on the schedule, 4: learned
    sa.Column("due_on", sa.Text),  # ISO date; NULL once learned
    sa.Column("last_seen", sa.Text, nullable=False),  # ISO 8601 UTC of the last answer to it
    sa.Column("last_answer", sa.Text, nullable=False),  # what the student said then
    sa.UniqueConstraint("student_id", "image_id", name="review_cards_one_per_image"),
)

reviews = sa.Table(
    "reviews", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("student_id", sa.Integer, sa.ForeignKey("students.id"), nullable=False),
    sa.Column("image_id", sa.Text, nullable=False),
    sa.Column("truth", sa.Text, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("correct", sa.Boolean(create_constraint=False), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # "due" (a card) or "look-alike"
    sa.Column("box_after", sa.Integer),  # the card's box after the answer; NULL: no card
    sa.Column("reviewed_at", sa.Text, nullable=False),  # ISO 8601 UTC
    sa.Column("day", sa.Text, nullable=False),  # ISO date in the student's calendar: the streak
    sa.Index("reviews_by_student_and_day", "student_id", "day"),
)

# The instructor sign-in's server-wide count (revision 0004): every replica's wrong passwords
# within the window, and the locks they set, so N replicas lock at the same count as one. Times
# are seconds since the epoch (`login_guard`'s clock); a lock clears the failures before it.
sign_in_failures = sa.Table(
    "sign_in_failures", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("failed_at", sa.Float, nullable=False),
    sa.Index("sign_in_failures_by_time", "failed_at"),
)

sign_in_locks = sa.Table(
    "sign_in_locks", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("locked_until", sa.Float, nullable=False),
)

# The table and `quiz.Answer` must not drift apart: every field is a column, in the same order.
if tuple(c.name for c in answers.columns)[1:] != ANSWER_FIELDS:
    raise ImportError("schema.answers and quiz.Answer list different fields")
