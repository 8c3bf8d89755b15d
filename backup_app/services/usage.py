"""Bytes used per location and per target, from the catalog's copy records."""
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backup_app.models import PRESENT, Backup, BackupCopy


def storage_usage(session: Session, locations: Sequence[str]) -> dict:
    """`{"local": {"bytes", "backups"}, "s3": {…}, …, "by_database": {name: {"local": …, "s3": …, …}}}`:
    every one of `locations`, and any other location the catalog has present copies in."""
    rows = session.execute(
        select(Backup.database, BackupCopy.location, func.count(), func.coalesce(func.sum(BackupCopy.size_bytes), 0))
        .join(BackupCopy.backup).where(BackupCopy.status == PRESENT)
        .group_by(Backup.database, BackupCopy.location)).all()
    empty = {"bytes": 0, "backups": 0}
    usage = {**{location: dict(empty) for location in locations}, "by_database": {}}
    for database, location, count, size in rows:
        per_db = usage["by_database"].setdefault(database, {location: dict(empty) for location in locations})
        for bucket in (usage.setdefault(location, dict(empty)), per_db.setdefault(location, dict(empty))):
            bucket["bytes"] += int(size)
            bucket["backups"] += count
    return usage
