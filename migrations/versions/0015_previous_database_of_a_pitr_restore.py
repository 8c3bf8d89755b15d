"""a database kept by a point-in-time restore names its job, not a backup: backup_id may be empty

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("previous_databases", schema=None) as batch_op:
        batch_op.alter_column("backup_id", existing_type=sa.String(length=32), nullable=True)


def downgrade():
    op.execute("UPDATE previous_databases SET backup_id = '' WHERE backup_id IS NULL")
    with op.batch_alter_table("previous_databases", schema=None) as batch_op:
        batch_op.alter_column("backup_id", existing_type=sa.String(length=32), nullable=False)
