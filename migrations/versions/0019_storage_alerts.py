"""Locations over their size limit, told once per crossing

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-08 12:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "storage_alerts",
        sa.Column("location", sa.String(length=32), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("location"),
    )


def downgrade():
    op.drop_table("storage_alerts")
