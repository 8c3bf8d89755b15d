"""point-in-time recovery: WAL files, base backups, receiver leases, PITR settings of targets

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 12:00:00

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pitr_enabled", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("pitr_slot", sa.String(length=63), nullable=True))
        batch_op.add_column(sa.Column("base_schedule", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("base_next_run_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("pitr_verify_schedule", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("pitr_verify_next_run_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("pitr_verified_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("pitr_verified_to", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("pitr_verify_error", sa.Text(), nullable=True))
    op.create_table(
        "wal_files",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("target", sa.String(length=100), nullable=False, index=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("timeline", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("covers_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_lsn", sa.String(length=32), nullable=True),
        sa.Column("copies", sa.JSON(), nullable=False),
        sa.UniqueConstraint("target", "name", "kind", name="uq_wal_files_target_name_kind"),
    )
    op.create_table(
        "base_backups",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("target", sa.String(length=100), nullable=False, index=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("parent_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("start_lsn", sa.String(length=32), nullable=True),
        sa.Column("end_lsn", sa.String(length=32), nullable=True),
        sa.Column("timeline", sa.Integer(), nullable=True),
        sa.Column("server_version", sa.String(length=32), nullable=True),
        sa.Column("filename", sa.String(length=255), nullable=False, unique=True),
        sa.Column("codec", sa.String(length=16), nullable=False),
        sa.Column("encrypted", sa.Boolean(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("manifest", sa.Text(), nullable=True),
        sa.Column("copies", sa.JSON(), nullable=False),
    )
    op.create_table(
        "wal_receivers",
        sa.Column("target", sa.String(length=100), primary_key=True),
        sa.Column("holder", sa.String(length=255), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("last_segment", sa.String(length=64), nullable=True),
        sa.Column("last_segment_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stored_lsn", sa.String(length=32), nullable=True),
    )


def downgrade():
    op.drop_table("wal_receivers")
    op.drop_table("base_backups")
    op.drop_table("wal_files")
    with op.batch_alter_table("targets", schema=None) as batch_op:
        for column in ("pitr_verify_error", "pitr_verified_to", "pitr_verified_at", "pitr_verify_next_run_at",
                       "pitr_verify_schedule", "base_next_run_at", "base_schedule", "pitr_slot", "pitr_enabled"):
            batch_op.drop_column(column)
