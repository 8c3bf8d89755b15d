"""A worker that died: its running jobs marked interrupted (by a dead pid on this host, or a
heartbeat gone silent on any), their partial files removed, and backups and
verifications left running with no live job failed.
"""

import os
import socket
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from backup_app.adapters.local import LocalStorage
from backup_app.extensions import db
from backup_app.jobs.records import catalog_now, log_line, record
from backup_app.models import (
    ACTIVE_JOB_STATUSES,
    CREATE,
    FAILED,
    INTERRUPTED,
    RESTORE,
    RUNNING,
    VERIFY,
    Backup,
    Job,
    Verification,
    utcnow,
)
from backup_app.services import audit

STALE_HEARTBEATS = 6  # a running job silent for this many heartbeats is taken as dead


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def orphaned(job: Job, host: str, own_pid: int | None, stale_before: datetime) -> bool:
    """Whether a running job's process is gone.

    On this host, when its process no longer exists. `own_pid` (given at a worker's start-up,
    when it runs nothing yet) counts as gone: a job under it belongs to an earlier life (a
    restarted container keeps host name and pid). On any host, when its heartbeat (written
    by the catalog's clock) is older than `stale_before`: its machine may be gone with it.
    """
    if job.heartbeat_at is not None and job.heartbeat_at < stale_before:
        return True
    job_host, _, pid = (job.worker or "").rpartition(":")
    if job_host != host or not pid.isdigit():
        return False
    return int(pid) == own_pid or not process_alive(int(pid))


def interrupted_error(job: Job) -> str:
    error = f"the worker ({job.worker}) stopped while the job was running"
    if job.kind != RESTORE:
        return error
    if (job.options or {}).get("in_place", True):
        return (error + f"; the restore into {job.target} may not have finished, so that database may be "
                "partially restored: check it, and run the restore again")
    return (error + f"; {job.target} itself was not changed unless the swap had begun (see the job's log: if it "
            "had, that database may refuse connections until ALTER DATABASE … ALLOW_CONNECTIONS true); a "
            "half-built database called <name>_restoring_… may be left on its server: drop it")


def recover_interrupted_jobs(session: Session, local: LocalStorage, *, starting: bool = True) -> list[Job]:
    """Mark running jobs whose process died as interrupted, and remove their partial files.

    A create's unfinished backup is marked failed, and so is any backup, or verification, left
    running with no job alive to finish it. Each change is made only while the row is still
    `running`, so a job that finished meanwhile keeps its outcome. Called when a worker or a
    CLI job starts (`starting`: this process's own pid counts as dead) and at every scheduler tick.
    """
    host = socket.gethostname()
    own_pid = os.getpid() if starting else None
    stale_before = catalog_now() - timedelta(seconds=STALE_HEARTBEATS * current_app.config["JOB_HEARTBEAT_SECONDS"])
    candidates = [job for job in session.scalars(select(Job).where(Job.status == RUNNING))
                  if orphaned(job, host, own_pid, stale_before)]
    session.commit()
    recovered = []
    for job in candidates:
        if not interrupt(job):
            continue  # it finished after all
        recovered.append(job)
        if job.kind == CREATE and job.backup_id:
            backup = session.get(Backup, job.backup_id)
            if backup is not None and local.remove_partial(backup.filename):
                record(job.id, f"removed the partial file of {backup.filename}")
    alive = select(Job.id).where(Job.backup_id == Backup.id, Job.kind == CREATE, Job.status.in_(ACTIVE_JOB_STATUSES))
    for backup in session.scalars(select(Backup).where(Backup.status == RUNNING, ~alive.exists())):
        if fail_running(Backup, backup.id, "interrupted: no job is running this backup any more (its process "
                                            "stopped)"):
            local.remove_partial(backup.filename)
    verifying = select(Job.id).where(Job.backup_id == Verification.backup_id, Job.kind == VERIFY,
                                     Job.status.in_(ACTIVE_JOB_STATUSES))
    for verification in session.scalars(select(Verification).where(Verification.status == RUNNING,
                                                                   ~verifying.exists())):
        fail_running(Verification, verification.id, "interrupted: no job is running this verify any more")
    session.commit()
    for job in recovered:
        session.refresh(job)
    return recovered


def interrupt(job: Job) -> bool:
    """Mark a running job interrupted and, for a create, its running backup failed, in one
    transaction; False if the job was no longer running."""
    error = interrupted_error(job)
    with db.engine.begin() as connection:
        if connection.execute(update(Job).where(Job.id == job.id, Job.status == RUNNING).values(
                status=INTERRUPTED, phase="interrupted", error=error, finished_at=utcnow(),
                log=Job.log + log_line(f"interrupted: {error}"))).rowcount != 1:
            return False
        if job.kind == CREATE and job.backup_id:
            connection.execute(update(Backup).where(Backup.id == job.backup_id, Backup.status == RUNNING)
                               .values(status=FAILED, error=error, completed_at=utcnow()))
    audit.job_failed(job.id, error)
    return True


def fail_running(model, row_id, error: str) -> bool:
    """Mark a backup or a verification failed, only while it is still running; whether it was."""
    with db.engine.begin() as connection:
        return connection.execute(update(model).where(model.id == row_id, model.status == RUNNING).values(
            status=FAILED, error=error, **({"completed_at": utcnow()} if model is Backup else
                                           {"finished_at": utcnow()}))).rowcount == 1
