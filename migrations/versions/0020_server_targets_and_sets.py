"""Server targets (every database of a server) and the backup sets they make

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("targets") as batch:
        batch.add_column(sa.Column("all_databases", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("exclude_databases", sa.Text(), nullable=True))
    with op.batch_alter_table("backups") as batch:
        batch.add_column(sa.Column("set_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("source_database", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("database_shape", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("notes", sa.Text(), nullable=True))
        batch.create_index("ix_backups_set_id", ["set_id"])


def downgrade():
    with op.batch_alter_table("backups") as batch:
        batch.drop_index("ix_backups_set_id")
        batch.drop_column("notes")
        batch.drop_column("database_shape")
        batch.drop_column("source_database")
        batch.drop_column("set_id")
    with op.batch_alter_table("targets") as batch:
        batch.drop_column("exclude_databases")
        batch.drop_column("all_databases")
