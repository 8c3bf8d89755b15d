"""API token ids are never reused on SQLite (AUTOINCREMENT), as on PostgreSQL (a sequence)

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05 13:30:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("api_tokens", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("api_tokens", recreate="always", table_kwargs={"sqlite_autoincrement": False}):
            pass
