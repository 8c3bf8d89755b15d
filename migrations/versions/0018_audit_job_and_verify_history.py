"""audit events name the job a request queued (so the job's failure can be written on the event);
verifications outlive the backup they checked (they name its database and file; backup_id is
emptied when the backup is deleted); a target may name the server its verifications restore into;
settings made in the pages (the notification URLs for every target)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 13:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

SQLITE_FK = "fk_verifications_backup_id_backups"  # the name the naming convention gives 0003's unnamed one
POSTGRESQL_FK = "verifications_backup_id_fkey"  # PostgreSQL's name for it


def replace_backup_fk(ondelete: str, nullable: bool) -> None:
    """Re-create verifications.backup_id's foreign key with `ondelete`."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    convention = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
    with op.batch_alter_table("verifications", schema=None, naming_convention=convention) as batch_op:
        batch_op.drop_constraint(SQLITE_FK if sqlite else POSTGRESQL_FK, type_="foreignkey")
        batch_op.alter_column("backup_id", existing_type=sa.String(length=32), nullable=nullable)
        batch_op.create_foreign_key(SQLITE_FK if sqlite else POSTGRESQL_FK, "backups", ["backup_id"], ["id"],
                                    ondelete=ondelete)


def upgrade():
    op.create_table("app_settings",
                    sa.Column("name", sa.String(length=64), nullable=False),
                    sa.Column("value", sa.Text(), nullable=True),
                    sa.PrimaryKeyConstraint("name"))
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("job_id", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_audit_events_job_id", ["job_id"], unique=False)
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("database", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("backup_filename", sa.String(length=255), nullable=True))
    op.execute("UPDATE verifications SET "
               "database = (SELECT database FROM backups WHERE backups.id = verifications.backup_id), "
               "backup_filename = (SELECT filename FROM backups WHERE backups.id = verifications.backup_id)")
    replace_backup_fk("SET NULL", nullable=True)
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.create_index("ix_verifications_database", ["database"], unique=False)
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verify_url_encrypted", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.drop_column("verify_url_encrypted")
    op.execute("DELETE FROM verifications WHERE backup_id IS NULL")
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.drop_index("ix_verifications_database")
    replace_backup_fk("CASCADE", nullable=False)
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.drop_column("backup_filename")
        batch_op.drop_column("database")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_job_id")
        batch_op.drop_column("job_id")
    op.drop_table("app_settings")
