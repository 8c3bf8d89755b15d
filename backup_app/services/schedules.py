"""Cron schedules: when each target's next backup (or verify) is due, claimed exactly once
(croniter is imported when an expression is read)."""
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backup_app.errors import ConfigurationError
from backup_app.models import PeriodicRun, Target, utcnow

BACKUP, VERIFY, BASE_BACKUP, PITR_VERIFY = "backup", "verify", "base-backup", "pitr-verify"
# Which cron and which next-run column each kind of scheduled run of a target uses.
TARGET_SCHEDULES = {
    BACKUP: (Target.schedule, Target.next_run_at),
    VERIFY: (Target.verify_schedule, Target.verify_next_run_at),
    BASE_BACKUP: (Target.base_schedule, Target.base_next_run_at),
    PITR_VERIFY: (Target.pitr_verify_schedule, Target.pitr_verify_next_run_at),
}


def check_cron(expression: str) -> str:
    from croniter import croniter

    if not croniter.is_valid(expression):
        raise ConfigurationError(f"invalid cron expression {expression!r} (e.g. '0 3 * * *' for 03:00 daily)")
    return expression


def next_run_time(expression: str, timezone: str, after: datetime | None = None) -> datetime:
    """The first time after `after` (default now) that `expression` fires in `timezone`, in UTC."""
    from croniter import croniter

    local_after = (after or utcnow()).astimezone(ZoneInfo(timezone))
    return croniter(expression, local_after).get_next(datetime).astimezone(ZoneInfo("UTC"))


def longest_gap(expression: str, timezone: str, around: datetime | None = None, runs: int = 8) -> timedelta:
    """The longest time between two of the `runs` times `expression` fired before `around` (default
    now) and the `runs` it fires after (a weekday schedule's weekend, an office-hours one's night,
    the gap `around` falls in included)."""
    from croniter import croniter

    local = (around or utcnow()).astimezone(ZoneInfo(timezone))
    before, after = croniter(expression, local), croniter(expression, local)
    fires = sorted([before.get_prev(datetime) for _ in range(runs)] + [after.get_next(datetime) for _ in range(runs)])
    fires = [fire.astimezone(ZoneInfo("UTC")) for fire in fires]  # UTC: DST counts
    return max(later - earlier for earlier, later in zip(fires, fires[1:]))


def reschedule(target: Target, now: datetime | None = None) -> None:
    """Compute a target's next backup and next verify from its crons (None where it has none)."""
    target.next_run_at = next_run_time(target.schedule, target.timezone, now) if target.schedule else None
    target.verify_next_run_at = (next_run_time(target.verify_schedule, target.timezone, now)
                                 if target.verify_schedule else None)


def claim_due_targets(session: Session, now: datetime | None = None, kind: str = BACKUP) -> list[Target]:
    """Targets whose scheduled backup (or, with kind=VERIFY, verify) is due, each claimed by
    moving its next run forward.

    The move is a compare-and-set on the next-run column, so when several workers ask at once
    each due run goes to exactly one of them. Runs missed while nothing was running collapse
    into one.
    """
    now = now or utcnow()
    schedule, next_run = TARGET_SCHEDULES[kind]
    due = session.scalars(select(Target).where(
        schedule.is_not(None), Target.schedule_enabled.is_(True),
        next_run.is_not(None), next_run <= now)).all()
    claimed = []
    for target in due:
        planned = getattr(target, next_run.key)
        following = next_run_time(getattr(target, schedule.key), target.timezone, after=now)
        result = session.execute(
            update(Target).where(Target.id == target.id, next_run == planned)
            .values({next_run: following}).execution_options(synchronize_session=False))
        if result.rowcount == 1:
            claimed.append(target)
    session.commit()
    for target in claimed:
        session.refresh(target)
    return claimed


def claim_periodic(session: Session, name: str, expression: str, now: datetime | None = None) -> bool:
    """Whether the app-wide periodic run `name` (cron `expression`, UTC) is due and this caller got it.

    The first call, or the first after the cron changed, only plans the next run. A due run
    is claimed by a compare-and-set on `next_run_at`, so it goes to exactly one caller.
    """
    now = now or utcnow()
    following = next_run_time(expression, "UTC", after=now)
    row = session.get(PeriodicRun, name)
    if row is None or row.schedule != expression:
        if row is None:
            session.add(PeriodicRun(name=name, schedule=expression, next_run_at=following))
        else:
            row.schedule, row.next_run_at = expression, following
        try:
            session.commit()
        except IntegrityError:  # another worker planned it at the same moment
            session.rollback()
        return False
    if row.next_run_at > now:
        return False
    result = session.execute(
        update(PeriodicRun).where(PeriodicRun.name == name, PeriodicRun.next_run_at == row.next_run_at)
        .values(next_run_at=following).execution_options(synchronize_session=False))
    session.commit()
    session.expire(row)
    return result.rowcount == 1
