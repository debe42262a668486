"""The answers table, as the first (pre-Alembic) SQLite code created it.

A database that code wrote already has this table and no Alembic version: it is adopted as it
is, every answer kept, and only stamped. Anywhere else the table is created.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("answers"):
        return  # written by the pre-Alembic code: the same columns, kept as they are
    op.create_table(
        "answers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        *[sa.Column(name, sa.Text, nullable=False) for name in (
            "quiz_code", "session_id", "nickname", "model_name", "mode", "difficulty")],
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
        sqlite_autoincrement=True,
    )
    op.create_index("answers_by_code", "answers", ["quiz_code", "session_id"])


def downgrade() -> None:
    op.drop_table("answers")
