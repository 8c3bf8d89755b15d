"""Locations past their size limit (STORAGE_ALERT_BYTES, MINIO_ALERT_BYTES, S3_<NAME>_ALERT_BYTES)."""
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backup_app.models import StorageAlert


@dataclass(frozen=True)
class OverLimit:
    location: str
    used: int    # bytes of backups, base backups and WAL present there
    limit: int


def over_limits(usage: dict, limits: dict[str, int]) -> list[OverLimit]:
    """The locations of `usage` (see `storage_usage`) holding more than their limit."""
    over = []
    for location, limit in limits.items():
        place = usage.get(location) or {}
        used = place.get("bytes", 0) + place.get("pitr_bytes", 0)
        if used > limit:
            over.append(OverLimit(location, used, limit))
    return over


def claim_crossings(session: Session, over: list[OverLimit]) -> list[OverLimit]:
    """Of `over`, the locations that crossed their limit since the last call (each returned once
    per crossing, whichever process asks); the locations back under it are forgotten."""
    alerted = set(session.scalars(select(StorageAlert.location)))
    session.execute(delete(StorageAlert).where(StorageAlert.location.not_in([o.location for o in over])))
    session.commit()
    crossed = []
    for item in over:
        if item.location in alerted:
            continue
        session.add(StorageAlert(location=item.location))
        try:
            session.commit()
        except IntegrityError:  # another worker claimed this crossing at the same moment
            session.rollback()
            continue
        crossed.append(item)
    return crossed
