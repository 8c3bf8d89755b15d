"""The dashboard's figures: per target, how well it is covered, and its last attempt beside its
last good backup (also the JSON of `flask targets list --json` and `GET /api/targets`); per server
target, its newest backup set."""
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backup_app.core.crypto import MasterKey
from backup_app.models import (
    COMPLETED,
    CREATE,
    FAILED,
    FAILING,
    GLOBALS,
    INTERRUPTED,
    PRESENT,
    STOPPED,
    STREAMING,
    Backup,
    BackupCopy,
    Job,
    Target,
    Verification,
    WalReceiver,
    isoformat,
    utcnow,
)
from backup_app.services.backups.sets import set_backups
from backup_app.services.pitr.window import archived, window
from backup_app.services.staleness import last_successes, stale_limit
from backup_app.services.targets import verify_server_url
from backup_app.services.usage import pitr_usage

# Without a limit of its own, a schedule or STALE_AFTER_HOURS: a daily backup a little late is not alarming.
DEFAULT_STALE_AFTER = timedelta(hours=26)


def attempt_problem(job: Job | None) -> str | None:
    """What went wrong in a backup job: its error, or, when it completed, its backup's copies that
    are not present ("s3 copy failed: …")."""
    if job is None:
        return None
    if job.error or job.status != COMPLETED or job.backup is None:
        return job.error
    return "; ".join(f"{copy.location} copy {copy.status}" + (f": {copy.error}" if copy.error else "")
                     for copy in job.backup.copies if copy.status != PRESENT) or None


def attempt_failed(job: Job | None) -> bool:
    """Whether a backup job failed, was interrupted, or completed without one of its copies."""
    return job is not None and (job.status in (FAILED, INTERRUPTED) or attempt_problem(job) is not None)


def last_attempt(job: Job | None) -> dict | None:
    """`{"status", "at", "error", "job_id"}` of a target's newest backup job (None: never run): its
    status as the pages show it (a completed one without all its copies is "copy failed" / "copy
    missing"); `at` is when it finished, else when it started, else when it was queued."""
    if job is None:
        return None
    status = job.backup.shown_status if job.status == COMPLETED and job.backup is not None else job.status
    return {"status": status, "at": isoformat(job.finished_at or job.started_at or job.created_at),
            "error": attempt_problem(job), "job_id": job.id}


@dataclass
class NewestSet:
    """A server target's newest backup set: its backups (the globals first, then each database's)
    and the databases its run left out, with why (None: not known, see left_out)."""

    set_id: str
    backups: list[Backup]
    skipped: list[dict] | None


def left_out(session: Session, set_id: str) -> list[dict] | None:
    """The databases the run that made set `set_id` left out ({"database", "reason"}), as its job
    recorded them; None when no job recorded them (a run still listing the databases, or older)."""
    job = session.scalars(select(Job).where(Job.kind == CREATE, Job.options["set_id"].as_string() == set_id)
                          .order_by(Job.created_at.desc()).limit(1)).first()
    return (job.options or {}).get("skipped") if job else None


def newest_sets(session: Session, targets: Sequence[Target]) -> dict[str, NewestSet]:
    """Each server target's newest backup set, by target name (none for a target without one)."""
    sets = {}
    for target in targets:
        if not target.all_databases:
            continue
        set_id = session.scalar(select(Backup.set_id).where(Backup.database == target.name,
                                                            Backup.set_id.is_not(None))
                                .order_by(Backup.created_at.desc()).limit(1))
        if set_id is not None:
            sets[target.name] = NewestSet(set_id, set_backups(session, set_id), left_out(session, set_id))
    return sets


@dataclass
class TargetOverview:
    name: str
    last_success: datetime | None
    stale_after: timedelta
    next_run_at: datetime | None
    last_verify: Verification | None
    copies_present: int
    copies_total: int
    last_run: Job | None = None            # the newest backup job, whatever its outcome
    # Copies of completed backups that are not present, by status ("failed", "missing"), and the
    # newest one's (location, error, backup id).
    copy_problems: dict[str, int] = field(default_factory=dict)
    copy_problem: tuple[str, str | None, str] | None = None
    bytes_by_location: dict[str, int] = field(default_factory=dict)
    pitr_bytes_by_location: dict[str, int] = field(default_factory=dict)  # base backups and WAL
    pitr_state: str | None = None          # the WAL receiver's state; None: PITR is off
    pitr_error: str | None = None          # why the receiver is not streaming
    pitr_heartbeat_at: datetime | None = None  # when its worker last renewed its lease
    pitr_until: datetime | None = None     # the end of the recoverable window
    server_set: NewestSet | None = None    # a server target's newest backup set

    def age(self, now: datetime) -> timedelta | None:
        return now - self.last_success if self.last_success else None

    def is_stale(self, now: datetime) -> bool:
        age = self.age(now)
        return age is None or age > self.stale_after

    @property
    def last_run_failed(self) -> bool:
        return attempt_failed(self.last_run)

    @property
    def last_run_problem(self) -> str | None:
        return attempt_problem(self.last_run)


def target_overviews(session: Session, targets: list[Target], stale_default_hours: int | None,
                     locations: Sequence[str]) -> list[TargetOverview]:
    """One overview per target, from a handful of grouped queries (PITR's bytes in each of `locations`)."""
    now = utcnow()
    last_success = last_successes(session)
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
    sets = newest_sets(session, targets)
    overviews = []
    for target in targets:
        mine = [row for row in copies if row[0] == target.name]
        overview = TargetOverview(
            name=target.name, last_success=last_success.get(target.name),
            stale_after=stale_limit(target, stale_default_hours, now) or DEFAULT_STALE_AFTER,
            next_run_at=target.next_run_at if target.schedule and target.schedule_enabled else None,
            last_verify=verifies.get(target.name),
            copies_present=sum(count for _, _, status, count, _ in mine if status == PRESENT),
            copies_total=sum(count for *_, count, _ in mine),
            last_run=last_runs.get(target.name), copy_problem=copy_problems.get(target.name),
            pitr_bytes_by_location=pitr_bytes.get(target.name, {}), server_set=sets.get(target.name))
        for _, _, status, count, _ in mine:
            if status != PRESENT:
                overview.copy_problems[status] = overview.copy_problems.get(status, 0) + count
        if target.pitr_enabled:
            receiver = session.get(WalReceiver, target.name)
            overview.pitr_state = receiver.state if receiver else STOPPED
            overview.pitr_error = receiver.error if receiver else None
            overview.pitr_heartbeat_at = receiver.heartbeat_at if receiver else None
            overview.pitr_until = window(session, target.name, target.pitr_system_identifier)[1]
            hole = archived(session, target.name, target.pitr_system_identifier).problem()
            if hole and overview.pitr_state == STREAMING:  # as `pitr status` says: a hole is a failure
                overview.pitr_state, overview.pitr_error = FAILING, hole
        for _, location, status, _, size in mine:
            if status == PRESENT:
                overview.bytes_by_location[location] = overview.bytes_by_location.get(location, 0) + int(size)
        overviews.append(overview)
    return overviews


def targets_with_health(session: Session, targets: list[Target], stale_default_hours: int | None,
                        key: MasterKey | None) -> list[dict]:
    """Each target's JSON (`Target.to_dict`) with `last_attempt`, `last_good_at`, `stale` (no good
    backup within its staleness limit, as the dashboard shows it) and `verify_server` (its own, without
    its password, or null)."""
    now, last_good, last_runs = utcnow(), last_successes(session), newest_create_jobs(session)
    shaped = []
    for target in targets:
        good = last_good.get(target.name)
        limit = stale_limit(target, stale_default_hours, now) or DEFAULT_STALE_AFTER
        shaped.append({**target.to_dict(), "last_attempt": last_attempt(last_runs.get(target.name)),
                       "last_good_at": isoformat(good), "stale": good is None or now - good > limit,
                       "verify_server": verify_server_url(target, key)})
    return shaped


def newest_create_jobs(session: Session) -> dict[str, Job]:
    """The newest backup job of each database, by name."""
    newest = (select(Job.database, func.max(Job.created_at).label("created_at")).where(Job.kind == CREATE)
              .group_by(Job.database).subquery())
    query = select(Job).join(newest, (Job.database == newest.c.database) & (Job.created_at == newest.c.created_at)
                             ).where(Job.kind == CREATE)
    return {job.database: job for job in session.scalars(query)}


def newest_copy_problems(session: Session) -> dict[str, tuple[str, str | None, str]]:
    """Per database, (location, error, backup id) of the newest completed backup's copy that is not present."""
    rows = session.execute(
        select(Backup.database, BackupCopy.location, BackupCopy.error, Backup.id).join(BackupCopy.backup)
        .where(Backup.status == COMPLETED, BackupCopy.status != PRESENT).order_by(Backup.created_at.desc()))
    problems: dict[str, tuple[str, str | None, str]] = {}
    for database, location, error, backup_id in rows:
        problems.setdefault(database, (location, error, backup_id))
    return problems


def backup_history(session: Session, since: datetime | None = None, limit: int = 200) -> list[Backup]:
    """Completed backups of databases (not of a server's globals), oldest first, for the size and
    duration charts."""
    since = since or utcnow() - timedelta(days=30)
    rows = session.scalars(select(Backup).where(Backup.status == COMPLETED, Backup.format != GLOBALS,
                                                Backup.created_at >= since)
                           .order_by(Backup.created_at.desc()).limit(limit))
    return list(reversed(list(rows)))
