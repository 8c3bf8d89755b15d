"""Bytes used per location and per target, from the catalog's copy records."""
from collections.abc import Sequence

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from backup_app.models import PRESENT, Backup, BackupCopy, BaseBackup, WalFile


def storage_usage(session: Session, locations: Sequence[str]) -> dict:
    """`{"local": {"bytes", "backups", "pitr_bytes"}, "s3": {…}, …, "by_database": {name: {"local": …, …}}}`:
    every one of `locations`, and any other location the catalog has present copies of backups in.
    `pitr_bytes` are the base backups and WAL present there (see `pitr_usage`)."""
    rows = session.execute(
        select(Backup.database, BackupCopy.location, func.count(), func.coalesce(func.sum(BackupCopy.size_bytes), 0))
        .join(BackupCopy.backup).where(BackupCopy.status == PRESENT)
        .group_by(Backup.database, BackupCopy.location)).all()
    empty = {"bytes": 0, "backups": 0, "pitr_bytes": 0}
    usage = {**{location: dict(empty) for location in locations}, "by_database": {}}

    def places(database: str) -> dict:
        return usage["by_database"].setdefault(database, {location: dict(empty) for location in locations})

    for database, location, count, size in rows:
        for bucket in (usage.setdefault(location, dict(empty)), places(database).setdefault(location, dict(empty))):
            bucket["bytes"] += int(size)
            bucket["backups"] += count
    for target, sizes in pitr_usage(session, locations).items():
        for location, size in sizes.items():
            usage[location]["pitr_bytes"] += size
            places(target)[location]["pitr_bytes"] += size
    return usage


def pitr_usage(session: Session, locations: Sequence[str]) -> dict[str, dict[str, int]]:
    """`{target: {location: bytes}}`: the stored bytes of each PITR target's base backups and WAL
    files whose copy in that location is present, for each of `locations`."""
    usage: dict[str, dict[str, int]] = {}
    for model in (BaseBackup, WalFile):
        sums = [func.coalesce(func.sum(case((model.copies[location]["status"].as_string() == PRESENT,
                                             model.size_bytes), else_=0)), 0) for location in locations]
        for target, *sizes in session.execute(select(model.target, *sums).group_by(model.target)):
            per_location = usage.setdefault(target, dict.fromkeys(locations, 0))
            for location, size in zip(locations, sizes):
                per_location[location] += int(size)
    return usage
