"""Reading the catalog's backups: the list query, the newest per database, one by id.
"""

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from backup_app.errors import (
    BackupNotFound,
    InvalidBackupState,
)
from backup_app.models import (
    COMPLETED,
    GLOBALS,
    Backup,
)


def backups_query(database: str | None = None, status: str | None = None) -> Select:
    """The query for backups, newest first, optionally filtered (pages paginate it)."""
    # Both columns descending, so one index (scanned backwards) serves the whole order.
    query = select(Backup).order_by(Backup.created_at.desc(), Backup.id.desc())
    if database:
        query = query.where(Backup.database == database)
    if status:
        query = query.where(Backup.status == status)
    return query


def list_backups(session: Session, database: str | None = None, status: str | None = None) -> list[Backup]:
    """Backups, newest first, optionally filtered."""
    return list(session.scalars(backups_query(database, status)))


def latest_backups(session: Session) -> dict[str, Backup]:
    """The newest backup (of any status, globals backups aside) of each database, by database name."""
    newest = (select(Backup.database, func.max(Backup.created_at).label("created_at"))
              .where(Backup.format != GLOBALS).group_by(Backup.database).subquery())
    query = select(Backup).join(newest, (Backup.database == newest.c.database)
                                & (Backup.created_at == newest.c.created_at)).where(Backup.format != GLOBALS)
    return {backup.database: backup for backup in session.scalars(query)}


def get_backup(session: Session, backup_id: str) -> Backup:
    """The backup with this id, or BackupNotFound."""
    backup = session.get(Backup, backup_id) if isinstance(backup_id, str) else None
    if backup is None:
        raise BackupNotFound(backup_id)
    return backup


def get_completed_backup(session: Session, backup_id: str) -> Backup:
    backup = get_backup(session, backup_id)
    if backup.status != COMPLETED:
        raise InvalidBackupState(f"backup {backup.id} is {backup.status}, not completed")
    return backup
