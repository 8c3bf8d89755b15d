"""Bytes used per location and per target, from the catalog's copy records."""
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import LOCAL, PRESENT, S3, Backup, BackupCopy


def storage_usage(session: Session) -> dict:
    """`{"local": {"bytes", "backups"}, "s3": {…}, "by_database": {name: {"local": …, "s3": …}}}`."""
    rows = session.execute(
        select(Backup.database, BackupCopy.location, func.count(), func.coalesce(func.sum(BackupCopy.size_bytes), 0))
        .join(BackupCopy.backup).where(BackupCopy.status == PRESENT)
        .group_by(Backup.database, BackupCopy.location)).all()
    empty = {"bytes": 0, "backups": 0}
    usage = {LOCAL: dict(empty), S3: dict(empty), "by_database": {}}
    for database, location, count, size in rows:
        per_db = usage["by_database"].setdefault(database, {LOCAL: dict(empty), S3: dict(empty)})
        for bucket in (usage.setdefault(location, dict(empty)), per_db.setdefault(location, dict(empty))):
            bucket["bytes"] += int(size)
            bucket["backups"] += count
    return usage
