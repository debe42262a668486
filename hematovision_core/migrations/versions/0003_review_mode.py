"""Review mode: kept nicknames, their review cards and review answers; answers name their student.

`answers.student_id` is added as a nullable column (SQLite's ALTER TABLE ADD COLUMN: no copy of
the table, every old answer kept, NULL: no kept nickname, as all answers were until now). The
three new tables are created as `schema.py` describes them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "students",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("nickname_key", sa.Text, nullable=False, unique=True),
        sa.Column("nickname", sa.Text, nullable=False),
        sa.Column("pin_hash", sa.Text),
        sa.Column("failed_pins", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until", sa.Text),
        sa.Column("created_at", sa.Text, nullable=False),
    )
    op.create_table(
        "review_cards",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("student_id", sa.Integer, sa.ForeignKey("students.id"), nullable=False),
        sa.Column("image_id", sa.Text, nullable=False),
        sa.Column("truth", sa.Text, nullable=False),
        sa.Column("box", sa.Integer, nullable=False),
        sa.Column("due_on", sa.Text),
        sa.Column("last_seen", sa.Text, nullable=False),
        sa.Column("last_answer", sa.Text, nullable=False),
        sa.UniqueConstraint("student_id", "image_id", name="review_cards_one_per_image"),
    )
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("student_id", sa.Integer, sa.ForeignKey("students.id"), nullable=False),
        sa.Column("image_id", sa.Text, nullable=False),
        sa.Column("truth", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("correct", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("box_after", sa.Integer),
        sa.Column("reviewed_at", sa.Text, nullable=False),
        sa.Column("day", sa.Text, nullable=False),
    )
    op.create_index("reviews_by_student_and_day", "reviews", ["student_id", "day"])
    op.add_column("answers", sa.Column("student_id", sa.Integer))
    op.create_index("answers_by_student", "answers", ["student_id"])


def downgrade() -> None:
    op.drop_index("answers_by_student", table_name="answers")
    with op.batch_alter_table("answers") as batch:
        batch.drop_column("student_id")
    op.drop_table("reviews")
    op.drop_table("review_cards")
    op.drop_table("students")
