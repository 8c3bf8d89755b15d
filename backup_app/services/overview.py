"""The dashboard's figures: per target, how well it is covered."""
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backup_app.models import (
    COMPLETED,
    CREATE,
    PRESENT,
    STOPPED,
    Backup,
    BackupCopy,
    Job,
    Target,
    Verification,
    WalReceiver,
    utcnow,
)
from backup_app.services.pitr.window import window
from backup_app.services.usage import pitr_usage

DEFAULT_STALE_HOURS = 26  # a daily backup that is a little late is not yet alarming


@dataclass
class TargetOverview:
    name: str
    last_success: datetime | None
    stale_after_hours: int
    next_run_at: datetime | None
    last_verify: Verification | None
    copies_present: int
    copies_total: int
    last_run: Job | None = None            # the newest backup job, whatever its outcome
    # Copies of completed backups that are not present, by status ("failed", "missing"), and the
    # newest one's (location, error).
    copy_problems: dict[str, int] = field(default_factory=dict)
    copy_problem: tuple[str, str | None] | None = None
    bytes_by_location: dict[str, int] = field(default_factory=dict)
    pitr_bytes_by_location: dict[str, int] = field(default_factory=dict)  # base backups and WAL
    pitr_state: str | None = None          # the WAL receiver's state; None: PITR is off
    pitr_error: str | None = None          # why the receiver is not streaming
    pitr_until: datetime | None = None     # the end of the recoverable window

    def age(self, now: datetime) -> timedelta | None:
        return now - self.last_success if self.last_success else None

    def is_stale(self, now: datetime) -> bool:
        age = self.age(now)
        return age is None or age > timedelta(hours=self.stale_after_hours)


def target_overviews(session: Session, targets: list[Target], stale_default_hours: int | None,
                     locations: Sequence[str]) -> list[TargetOverview]:
    """One overview per target, from a handful of grouped queries (PITR's bytes in each of `locations`)."""
    last_success = dict(session.execute(
        select(Backup.database, func.max(Backup.created_at)).where(Backup.status == COMPLETED)
        .group_by(Backup.database)).all())
    copies = session.execute(
        select(Backup.database, BackupCopy.location, BackupCopy.status, func.count(),
               func.coalesce(func.sum(BackupCopy.size_bytes), 0))
        .join(BackupCopy.backup).where(Backup.status == COMPLETED)
        .group_by(Backup.database, BackupCopy.location, BackupCopy.status)).all()
    newest_verify = (select(Verification.database, func.max(Verification.started_at).label("at"))
                     .group_by(Verification.database).subquery())
    verifies = {v.database: v for v in session.scalars(  # kept after their backups are pruned
        select(Verification).join(
            newest_verify, (newest_verify.c.database == Verification.database)
            & (newest_verify.c.at == Verification.started_at)))}
    last_runs, copy_problems = newest_create_jobs(session), newest_copy_problems(session)
    pitr_bytes = pitr_usage(session, locations)
    overviews = []
    for target in targets:
        mine = [row for row in copies if row[0] == target.name]
        overview = TargetOverview(
            name=target.name, last_success=last_success.get(target.name),
            stale_after_hours=target.stale_after_hours or stale_default_hours or DEFAULT_STALE_HOURS,
            next_run_at=target.next_run_at if target.schedule and target.schedule_enabled else None,
            last_verify=verifies.get(target.name),
            copies_present=sum(count for _, _, status, count, _ in mine if status == PRESENT),
            copies_total=sum(count for *_, count, _ in mine),
            last_run=last_runs.get(target.name), copy_problem=copy_problems.get(target.name),
            pitr_bytes_by_location=pitr_bytes.get(target.name, {}))
        for _, _, status, count, _ in mine:
            if status != PRESENT:
                overview.copy_problems[status] = overview.copy_problems.get(status, 0) + count
        if target.pitr_enabled:
            receiver = session.get(WalReceiver, target.name)
            overview.pitr_state = receiver.state if receiver else STOPPED
            overview.pitr_error = receiver.error if receiver else None
            overview.pitr_until = window(session, target.name, target.pitr_system_identifier)[1]
        for _, location, status, _, size in mine:
            if status == PRESENT:
                overview.bytes_by_location[location] = overview.bytes_by_location.get(location, 0) + int(size)
        overviews.append(overview)
    return overviews


def newest_create_jobs(session: Session) -> dict[str, Job]:
    """The newest backup job of each database, by name."""
    newest = (select(Job.database, func.max(Job.created_at).label("created_at")).where(Job.kind == CREATE)
              .group_by(Job.database).subquery())
    query = select(Job).join(newest, (Job.database == newest.c.database) & (Job.created_at == newest.c.created_at)
                             ).where(Job.kind == CREATE)
    return {job.database: job for job in session.scalars(query)}


def newest_copy_problems(session: Session) -> dict[str, tuple[str, str | None]]:
    """Per database, (location, error) of the newest completed backup's copy that is not present."""
    rows = session.execute(
        select(Backup.database, BackupCopy.location, BackupCopy.error).join(BackupCopy.backup)
        .where(Backup.status == COMPLETED, BackupCopy.status != PRESENT).order_by(Backup.created_at.desc()))
    problems: dict[str, tuple[str, str | None]] = {}
    for database, location, error in rows:
        problems.setdefault(database, (location, error))
    return problems


def backup_history(session: Session, since: datetime | None = None, limit: int = 200) -> list[Backup]:
    """Completed backups, oldest first, for the size and duration chart."""
    since = since or utcnow() - timedelta(days=30)
    rows = session.scalars(select(Backup).where(Backup.status == COMPLETED, Backup.created_at >= since)
                           .order_by(Backup.created_at.desc()).limit(limit))
    return list(reversed(list(rows)))
