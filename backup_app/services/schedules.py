"""Cron schedules: when each target's next backup is due, claimed exactly once."""
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..errors import ConfigurationError
from ..models import Target, utcnow


def check_cron(expression: str) -> str:
    if not croniter.is_valid(expression):
        raise ConfigurationError(f"invalid cron expression {expression!r} (e.g. '0 3 * * *' for 03:00 daily)")
    return expression


def next_run_time(expression: str, timezone: str, after: datetime | None = None) -> datetime:
    """The first time after `after` (default now) that `expression` fires in `timezone`, in UTC."""
    local_after = (after or utcnow()).astimezone(ZoneInfo(timezone))
    return croniter(expression, local_after).get_next(datetime).astimezone(ZoneInfo("UTC"))


def claim_due_targets(session: Session, now: datetime | None = None) -> list[Target]:
    """Targets whose scheduled run is due, each claimed by moving its next run forward.

    The move is a compare-and-set on `next_run_at`, so when several workers ask at once each
    due run goes to exactly one of them. Runs missed while nothing was running collapse into one.
    """
    now = now or utcnow()
    due = session.scalars(select(Target).where(
        Target.schedule.is_not(None), Target.schedule_enabled.is_(True),
        Target.next_run_at.is_not(None), Target.next_run_at <= now)).all()
    claimed = []
    for target in due:
        planned = target.next_run_at
        following = next_run_time(target.schedule, target.timezone, after=now)
        result = session.execute(
            update(Target).where(Target.id == target.id, Target.next_run_at == planned)
            .values(next_run_at=following).execution_options(synchronize_session=False))
        if result.rowcount == 1:
            claimed.append(target)
    session.commit()
    for target in claimed:
        session.refresh(target)
    return claimed
