"""WAL files record the WAL position their covers_until needs (the server's insert position then)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 12:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("wal_files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("covers_lsn", sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table("wal_files", schema=None) as batch_op:
        batch_op.drop_column("covers_lsn")
