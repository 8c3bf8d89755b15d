"""PITR lineages: WAL files and base backups carry the system identifier of the cluster they
belong to, and a target the one it archives now

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 21:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pitr_system_identifier", sa.String(length=20), nullable=True))
    with op.batch_alter_table("base_backups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("system_identifier", sa.String(length=20), nullable=True))
    with op.batch_alter_table("wal_files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("system_identifier", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("parent_timeline", sa.Integer(), nullable=True))
        batch_op.drop_constraint("uq_wal_files_target_name_kind", type_="unique")
        batch_op.create_unique_constraint("uq_wal_files_lineage_name_kind",
                                          ["target", "system_identifier", "name", "kind"])


def downgrade():
    with op.batch_alter_table("wal_files", schema=None) as batch_op:
        batch_op.drop_constraint("uq_wal_files_lineage_name_kind", type_="unique")
        batch_op.create_unique_constraint("uq_wal_files_target_name_kind", ["target", "name", "kind"])
        batch_op.drop_column("parent_timeline")
        batch_op.drop_column("system_identifier")
    with op.batch_alter_table("base_backups", schema=None) as batch_op:
        batch_op.drop_column("system_identifier")
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.drop_column("pitr_system_identifier")
