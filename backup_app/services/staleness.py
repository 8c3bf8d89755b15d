"""Targets that have gone too long without a successful backup."""
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backup_app.models import COMPLETED, Backup, Target, utcnow


@dataclass
class Stale:
    target: Target
    last_success: datetime | None
    limit_hours: int


def claim_stale_targets(session: Session, default_hours: int | None, now: datetime | None = None) -> list[Stale]:
    """Targets past their staleness limit that have not been alerted about in this episode.

    An episode ends with the next successful backup; each one is returned (and marked) once.
    """
    now = now or utcnow()
    last = dict(session.execute(select(Backup.database, func.max(Backup.created_at))
                                .where(Backup.status == COMPLETED).group_by(Backup.database)).all())
    stale = []
    for target in session.scalars(select(Target)):
        hours = target.stale_after_hours or default_hours
        if not hours:
            continue
        last_success = last.get(target.name)
        if last_success is not None and now - last_success <= timedelta(hours=hours):
            continue
        if target.stale_alerted_at is not None and (last_success is None or target.stale_alerted_at > last_success):
            continue  # already alerted in this episode
        target.stale_alerted_at = now
        stale.append(Stale(target, last_success, hours))
    session.commit()
    return stale
