"""per-target verify schedule; app-wide periodic runs (prune, sync)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 06:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verify_schedule", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("verify_next_run_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_targets_verify_next_run_at"), ["verify_next_run_at"], unique=False)

    op.create_table(
        "periodic_runs",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("schedule", sa.String(length=120), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade():
    op.drop_table("periodic_runs")
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_targets_verify_next_run_at"))
        batch_op.drop_column("verify_next_run_at")
        batch_op.drop_column("verify_schedule")
