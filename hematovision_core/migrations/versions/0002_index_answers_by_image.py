"""An index for the instructor's per-image figures (hardest images) of one quiz code.

The instructor view groups a quiz code's answers by image in SQL; with (quiz_code, image_id)
PostgreSQL reads them in group order from the index instead of sorting a lecture's rows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("answers_by_code_and_image", "answers", ["quiz_code", "image_id"])


def downgrade() -> None:
    op.drop_index("answers_by_code_and_image", table_name="answers")
