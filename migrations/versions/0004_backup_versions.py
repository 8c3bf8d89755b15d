"""backups record the server's and pg_dump's versions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 05:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("server_version", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("client_version", sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.drop_column("client_version")
        batch_op.drop_column("server_version")
