"""Targets that have gone too long without a successful backup.

A target's limit is its own (`--stale-after-hours`), else twice the longest gap of its backup
schedule (a 5-minute schedule is stale after 10 minutes without a good backup), else
STALE_AFTER_HOURS (`default_hours`); without any of these it has none.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backup_app.models import COMPLETED, GLOBALS, Backup, Target, utcnow
from backup_app.services.schedules import longest_gap


@dataclass
class Stale:
    target: Target
    last_success: datetime | None
    limit: timedelta

    @property
    def limit_hours(self) -> float:
        hours = self.limit / timedelta(hours=1)
        return int(hours) if hours.is_integer() else round(hours, 2)


def stale_limit(target: Target, default_hours: int | None, now: datetime | None = None) -> timedelta | None:
    """How old the newest good backup of `target` may be before it is stale (None: no limit)."""
    if target.stale_after_hours:
        return timedelta(hours=target.stale_after_hours)
    if target.schedule and target.schedule_enabled:
        return 2 * longest_gap(target.schedule, target.timezone, now)
    return timedelta(hours=default_hours) if default_hours else None


def last_successes(session: Session) -> dict[str, datetime]:
    """When the newest completed backup of each database was made, by name (a globals backup is
    not one: it holds a server's roles, not the database)."""
    return dict(session.execute(select(Backup.database, func.max(Backup.created_at))
                                .where(Backup.status == COMPLETED, Backup.format != GLOBALS)
                                .group_by(Backup.database)).all())


def claim_stale_targets(session: Session, default_hours: int | None, now: datetime | None = None) -> list[Stale]:
    """Targets past their staleness limit that have not been alerted about in this episode.

    An episode ends with the next successful backup; each one is returned (and marked) once.
    """
    now = now or utcnow()
    last = last_successes(session)
    stale = []
    for target in session.scalars(select(Target)):
        limit = stale_limit(target, default_hours, now)
        if limit is None:
            continue
        last_success = last.get(target.name)
        if last_success is not None and now - last_success <= limit:
            continue
        if target.stale_alerted_at is not None and (last_success is None or target.stale_alerted_at > last_success):
            continue  # already alerted in this episode
        target.stale_alerted_at = now
        stale.append(Stale(target, last_success, limit))
    session.commit()
    return stale
