"""The worker's periodic work: queue what is due, as ordinary jobs.

Every SCHEDULER_INTERVAL seconds each running worker runs `tick`: it marks interrupted the
running jobs whose process is gone (see jobs.recover_interrupted_jobs), drops the databases
restores kept once KEEP_PREVIOUS_HOURS have passed, and queues a create job
for every target whose backup schedule is due, a verify job of the newest completed backup
of every target whose verify schedule is due, the prune (PRUNE_SCHEDULE) and the sync
(SYNC_SCHEDULE), and it tells about locations newly past their size limit
(STORAGE_ALERT_BYTES). Each due run is claimed by a compare-and-set first, so however many
workers tick at once it is queued once. A run whose target already has an active job is
skipped, and the skip is written to that job's log and to the worker's (every line `tick`
returns is).
"""
import logging
from datetime import datetime

from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app import wiring
from backup_app.errors import BackupError, JobConflict
from backup_app.extensions import db
from backup_app.jobs import pitr
from backup_app.jobs.records import record
from backup_app.jobs.recovery import recover_interrupted_jobs
from backup_app.jobs.submit import app_wide_job, create_job, queue, record_failed, verify_job
from backup_app.models import (
    ACTIVE_JOB_STATUSES,
    COMPLETED,
    CREATE,
    GLOBALS,
    PRUNE,
    SYNC,
    VERIFY,
    Backup,
    Job,
    Target,
    utcnow,
)
from backup_app.services import notifications, previous, schedules
from backup_app.services import targets as target_service
from backup_app.services.backups.queries import backups_query
from backup_app.services.sync import needs_sync

log = logging.getLogger(__name__)


def register_tick(huey, app: Flask) -> None:
    """Register `tick` as the queue's periodic task (run only by `flask worker`)."""
    interval = app.config["SCHEDULER_INTERVAL"]

    # A tick not run within one interval (every worker thread busy) is dropped: the next one does its work.
    @huey.periodic_task(lambda _timestamp: True, name="tick", expires=interval)
    def periodic_tick() -> None:
        with app.app_context():
            for line in tick(db.session):
                log.info("scheduler: %s", line)


def tick(session: Session, now: datetime | None = None) -> list[str]:
    """Mark the jobs of dead workers interrupted, then queue every scheduled run due at `now`
    (default: now); one line per job recovered and per run queued or skipped."""
    now = now or utcnow()
    target_service.save_env_target(session, wiring.env_url())  # its schedules and alerts live in its row
    lines = [f"job {job.id} ({job.kind} of {job.database}) marked interrupted: {job.error}"
             for job in recover_interrupted_jobs(session, wiring.local_storage(), starting=False)]
    try:
        lines += previous.drop_due(session, wiring.previous_conn, wiring.pg_tools(), now)
    except Exception as exc:  # noqa: BLE001 - never a reason not to queue the scheduled work below
        session.rollback()
        lines.append(f"dropping the databases restores kept failed: {type(exc).__name__}: {exc}")
    for target in schedules.claim_due_targets(session, now, schedules.BACKUP):
        lines.append(_queue_backup(session, target))
    for target in schedules.claim_due_targets(session, now, schedules.VERIFY):
        lines += _queue_verify(session, target)
    for kind, make in ((schedules.BASE_BACKUP, pitr.base_backup_job), (schedules.PITR_VERIFY, pitr.verify_job)):
        for target in schedules.claim_due_targets(session, now, kind):
            if target.pitr_enabled:
                lines.append(_queue_pitr(session, target, kind, make))
    config = current_app.config
    if config["PRUNE_SCHEDULE"] and schedules.claim_periodic(session, PRUNE, config["PRUNE_SCHEDULE"], now):
        lines.append(_queue(session, app_wide_job(PRUNE), "prune"))
    stores = [store.location for store in wiring.s3_stores()]
    if config["SYNC_SCHEDULE"] and stores and schedules.claim_periodic(session, SYNC, config["SYNC_SCHEDULE"], now):
        if needs_sync(session, stores, config.get("SYNC_FETCH_LOCAL", False)):
            lines.append(_queue(session, app_wide_job(SYNC), "sync"))
    if wiring.storage_alert_limits():
        try:
            lines += [f"{item.location} holds {item.used} bytes, past its limit of {item.limit}: notified"
                      for item in notifications.alert_storage_limits()]
        except Exception as exc:  # noqa: BLE001 - a failed check is told in the log, the work above is done
            session.rollback()
            lines.append(f"checking the storage limits failed: {type(exc).__name__}: {exc}")
    return lines


def _queue_backup(session: Session, target: Target) -> str:
    what = f"scheduled backup of {target.name}"
    try:
        spec = wiring.dump_spec(target.name)
    except BackupError as exc:
        return record_failed(session, CREATE, target.name, f"{what} could not start: {exc}").error
    return _queue(session, create_job(spec, scheduled=True), what)


def _queue_verify(session: Session, target: Target) -> list[str]:
    """Queue a verify of the target's newest completed backup; of a server target, of each database
    in its newest set."""
    what = f"scheduled verify of {target.name}"
    newest = session.scalars(backups_query(target.name, COMPLETED).where(Backup.format != GLOBALS).limit(1)).first()
    if newest is None:
        return [f"{what} skipped: it has no completed backup yet"]
    backups = [newest]
    if newest.set_id:
        backups = session.scalars(backups_query(target.name, COMPLETED).where(
            Backup.set_id == newest.set_id, Backup.format != GLOBALS)).all()
    lines = []
    for backup in backups:
        try:
            job = verify_job(session, backup.id)
        except BackupError as exc:
            lines.append(record_failed(session, VERIFY, target.name, f"{what} could not start: {exc}").error)
        else:
            lines.append(_queue(session, job, what))
    return lines


def _queue_pitr(session: Session, target: Target, kind: str, make) -> str:
    what = f"scheduled {kind} of {target.name}"
    try:
        job = make(target.name)
    except BackupError as exc:
        return record_failed(session, kind, target.name, f"{what} could not start: {exc}").error
    return _queue(session, job, what)


def _queue(session: Session, job: Job, what: str) -> str:
    """Queue `job`; if its target is busy, skip it and say so in the busy job's log."""
    target, slot = job.target, job.slot
    try:
        queue(session, job)
    except JobConflict as exc:
        busy = session.scalar(select(Job).where(Job.slot == slot, Job.status.in_(ACTIVE_JOB_STATUSES)))
        if busy is not None:
            record(busy.id, f"{what} skipped while this job holds {target}")
        return f"{what} skipped: {exc}"
    return f"{what} queued (job {job.id})"
