"""The answers table, described once for SQLAlchemy: one row per quiz answer, as `quiz.Answer`.

Column types match what the first (pre-Alembic) SQLite schema declared, so a file written by
that code is this table: `correct` and `hint_used` are booleans (SQLite keeps them as 0/1),
`answered_at` stays the ISO 8601 text the quiz writes.
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
    sa.Index("answers_by_code", "quiz_code", "session_id"),
    sa.Index("answers_by_code_and_image", "quiz_code", "image_id"),  # revision 0002
    sqlite_autoincrement=True,  # ids never reused: "most recent quiz code" is MAX(id)
)

# The table and `quiz.Answer` must not drift apart: every field is a column, in the same order.
if tuple(c.name for c in answers.columns)[1:] != ANSWER_FIELDS:
    raise ImportError("schema.answers and quiz.Answer list different fields")
