"""jobs hold a slot keyed on the server's identity and carry their options; databases kept by restores

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 08:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ACTIVE = sa.text("status IN ('queued', 'running')")


def upgrade():
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("slot", sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column("options", sa.JSON(), nullable=True))
    op.execute("UPDATE jobs SET slot = target")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("slot", existing_type=sa.String(length=1024), nullable=False)
        batch_op.drop_index("uq_jobs_active_target", sqlite_where=ACTIVE, postgresql_where=ACTIVE)
        batch_op.create_index("uq_jobs_active_slot", ["slot"], unique=True, sqlite_where=ACTIVE,
                              postgresql_where=ACTIVE)

    op.create_table(
        "previous_databases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("database", sa.String(length=255), nullable=False),
        sa.Column("server", sa.String(length=1024), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=True),
        sa.Column("url_encrypted", sa.Text(), nullable=True),
        sa.Column("backup_id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("kept_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("drop_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dropped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("previous_databases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_previous_databases_drop_after"), ["drop_after"], unique=False)


def downgrade():
    with op.batch_alter_table("previous_databases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_previous_databases_drop_after"))
    op.drop_table("previous_databases")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("uq_jobs_active_slot", sqlite_where=ACTIVE, postgresql_where=ACTIVE)
        batch_op.create_index("uq_jobs_active_target", ["target"], unique=True, sqlite_where=ACTIVE,
                              postgresql_where=ACTIVE)
        batch_op.drop_column("options")
        batch_op.drop_column("slot")
