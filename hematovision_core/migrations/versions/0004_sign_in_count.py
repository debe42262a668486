"""The instructor sign-in's server-wide count of wrong passwords, shared by every replica.

Two new tables as `schema.py` describes them; nothing else changes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("failed_at", sa.Float, nullable=False),
    )
    op.create_index("sign_in_failures_by_time", "sign_in_failures", ["failed_at"])
    op.create_table(
        "sign_in_locks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("locked_until", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sign_in_locks")
    op.drop_index("sign_in_failures_by_time", table_name="sign_in_failures")
    op.drop_table("sign_in_failures")
