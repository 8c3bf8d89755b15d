"""Making job rows and starting them: queued for the worker (`queue_create`, `queue_restore`,
`queue_restore_set`, `queue_verify`, `queue`) or run in the caller's own process (`run_here`, for
the `flask backup` commands and a delete from the pages). A second job for a slot already taken is
refused with JobConflict, so nothing runs twice.
"""
import logging
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backup_app import wiring
from backup_app.core.conninfo import ConnInfo
from backup_app.errors import (
    BackupError,
    ConfigurationError,
    ConfirmationMismatch,
    InvalidBackupState,
    JobConflict,
    QueueUnavailable,
)
from backup_app.extensions import db
from backup_app.jobs.queue import job_queue
from backup_app.jobs.records import log_line, record
from backup_app.jobs.recovery import recover_interrupted_jobs
from backup_app.jobs.runners import run_job
from backup_app.jobs.slots import ALL_BACKUPS, ALL_TARGETS, backup_slot, database_slot, server_address
from backup_app.models import (
    ACTIVE_JOB_STATUSES,
    CREATE,
    DELETE,
    DOWNLOAD,
    FAILED,
    IMPORT,
    QUEUED,
    RESTORE,
    RESTORE_SET,
    RUNNING,
    VERIFY,
    Job,
    new_id,
    utcnow,
)
from backup_app.services import events
from backup_app.services.backups.queries import get_backup, get_completed_backup
from backup_app.services.backups.restore import check_new_database
from backup_app.services.backups.restore_roles import check_no_owner, refuse_missing_roles
from backup_app.services.backups.set_restore import get_set
from backup_app.services.backups.sets import find_set
from backup_app.services.targets import DumpSpec

log = logging.getLogger(__name__)


def create_job(spec: DumpSpec, *, scheduled: bool = False) -> Job:
    """A backup of `spec`'s database; the new backup's id is chosen now, so the job can link it. A
    server target's makes a set, whose id is chosen now. A scheduled run of a single target also
    backs up its server's globals (for `restore --create-roles`)."""
    if spec.all_databases:
        server = spec.conn.with_dbname("")
        return Job(kind=CREATE, database=spec.name, target=f"{server.display()} (every database)",
                   slot=f"set {spec.name}", server=server_address(spec.conn),
                   options={"set_id": new_id()}, log=log_line(f"backup set of {spec.name} requested"))
    return Job(kind=CREATE, database=spec.name, target=spec.conn.display(), slot=database_slot(spec.conn),
               server=server_address(spec.conn), backup_id=new_id(), options={"with_globals": scheduled},
               log=log_line(f"backup of {spec.name} requested"))


def restore_job(session: Session, backup_id: str, confirm: str, target_url: str | None = None, *,
                in_place: bool = False, drop_previous: bool = False, into_target: str | None = None,
                as_database: str | None = None, create_roles: bool = False, no_owner: bool = False) -> Job:
    """A restore of a completed backup into its own target, the target `into_target`, or
    `target_url`; with `as_database`, into that new database on the target's server. The roles
    its dump needs that the server lacks are created (`create_roles`), or owners and grants left
    out (`no_owner`); else the restore stops, before it writes anything, naming them.

    `confirm` must be the name of the database that changes (ConfirmationMismatch otherwise).
    """
    backup = get_completed_backup(session, backup_id)
    conn = wiring.restore_conn(backup.database, target_url, into_target, as_database)
    if (confirm or "").strip() != conn.dbname:
        own = not (target_url or as_database) and into_target in (None, backup.database)
        raise ConfirmationMismatch(conn.dbname, own=own)
    if as_database is not None:
        if in_place or drop_previous:
            raise ConfigurationError(f"a restore into the new database {as_database} replaces nothing: "
                                     "in place and dropping the previous database do not apply")
        own = wiring.target_conn(into_target or backup.database).dbname
        check_new_database(wiring.pg_tools().databases(conn), own, as_database)
    if no_owner:
        check_no_owner(backup.file())
    slot = database_slot(conn)
    catalog = catalog_conn()
    if catalog is not None and database_slot(catalog) == slot:
        raise ConfigurationError(f"{conn.display()} is this app's own catalog database: restoring over it would "
                                 "replace the records of every backup")
    how = " in place" if in_place else ""
    how += " with the roles it needs created" if create_roles else ""
    how += " without owners and grants" if no_owner else ""
    return Job(kind=RESTORE, database=conn.dbname, target=conn.display(), slot=slot, server=server_address(conn),
               backup_id=backup.id, options={"in_place": in_place, "drop_previous": drop_previous,
                                             "into_target": into_target, "as_database": as_database,
                                             "create_roles": create_roles, "no_owner": no_owner},
               log=log_line(f"restore of {backup.filename} into {conn.display()}{how} requested"))


def restore_set_job(session: Session, set_id: str, target_url: str | None = None, *,
                    drop_previous: bool = False) -> Job:
    """A restore of backup set `set_id` onto `target_url`'s server (default: its target's own): the
    roles, then each database. It holds the server's databases as one slot of its own."""
    backups = get_set(session, set_id)
    target = backups[0].database
    conn = wiring.set_restore_conn(target, target_url)
    catalog = catalog_conn()
    if catalog is not None and server_address(catalog) == server_address(conn) and catalog.dbname in {
            b.source_database for b in backups}:
        raise ConfigurationError(f"{conn.with_dbname('').display()} holds this app's own catalog database "
                                 f"{catalog.dbname}, which the set would replace")
    server = conn.with_dbname("").display()
    return Job(kind=RESTORE_SET, database=target, target=server, slot=f"restore-set {server_address(conn)}",
               server=server_address(conn), options={"set_id": set_id, "drop_previous": drop_previous},
               log=log_line(f"restore of set {set_id} onto {server} requested"))


def catalog_conn() -> ConnInfo | None:
    """The catalog database as a connection, when it is a PostgreSQL one."""
    url = db.engine.url
    if url.get_backend_name() != "postgresql":
        return None
    try:
        return ConnInfo.from_url(url.set(drivername="postgresql").render_as_string(hide_password=False))
    except BackupError:
        return None


def verify_job(session: Session, backup_id: str) -> Job:
    """A restore-verify of a completed backup, in a scratch database on its verify server (VERIFY_DATABASE_URL,
    the target's own, else the target's server).

    It holds the backup (one verify of it at a time), not its target database.
    """
    backup = get_completed_backup(session, backup_id)
    conn = wiring.verify_conn(backup.database)
    server = f"{conn.host or 'localhost'}:{conn.port or 5432}"
    return Job(kind=VERIFY, database=backup.database, target=f"scratch copy of {backup.id} on {server}",
               slot=backup_slot(backup.id), server=server_address(conn), backup_id=backup.id,
               log=log_line(f"verify of {backup.filename} requested"))


def app_wide_job(kind: str, database: str | None = None, options: dict | None = None) -> Job:
    """A prune or a sync (of every target, or prune of `database`'s backups): they go through the
    backups, so one of them runs at a time."""
    return Job(kind=kind, database=database or ALL_TARGETS, target=ALL_BACKUPS, slot=ALL_BACKUPS, options=options,
               log=log_line(f"{kind}{f' of {database}' if database else ''} requested"))


def delete_job(session: Session, backup_id: str) -> Job:
    """A delete of one backup from every location. It holds all backups, as a prune or a sync
    does, so an object is never uploaded again for a backup being deleted."""
    backup = get_backup(session, backup_id)
    if backup.status == RUNNING:
        raise InvalidBackupState(f"backup {backup.id} is still running")
    return Job(kind=DELETE, database=backup.database, target=ALL_BACKUPS, slot=ALL_BACKUPS, backup_id=backup.id,
               log=log_line(f"delete of {backup.filename} requested"))


def download_job(session: Session, backup_id: str, output: Path, decode: bool = False) -> Job:
    """A download of a completed backup to a file. Many may run at once; a delete waits for them."""
    backup = get_completed_backup(session, backup_id)
    job_id = new_id()
    return Job(id=job_id, kind=DOWNLOAD, database=backup.database, target=str(output), slot=f"download {job_id}",
               backup_id=backup.id, options={"output": str(output), "decode": decode},
               log=log_line(f"download of {backup.filename} to {output} requested"))


def import_job(path: Path, database: str, shown_name: str | None = None) -> Job:
    """An import of the dump at `path` as a backup of `database` (a target's name or a label); the new
    backup's id is chosen now. Many may run at once."""
    job_id = new_id()
    name = shown_name or path.name
    return Job(id=job_id, kind=IMPORT, database=database, target=name, slot=f"import {job_id}", backup_id=new_id(),
               options={"path": str(path)}, log=log_line(f"import of {name} as a backup of {database} requested"))


def queue_create(session: Session, spec: DumpSpec) -> Job:
    """Queue a backup of `spec`'s database."""
    return queue(session, create_job(spec))


def queue_restore(session: Session, backup_id: str, confirm: str, target_url: str | None = None, *,
                  in_place: bool = False, drop_previous: bool = False, into_target: str | None = None,
                  as_database: str | None = None, create_roles: bool = False, no_owner: bool = False) -> Job:
    """Queue a restore (see restore_job); `confirm` must name the database that changes. Roles the
    server lacks are refused now (MissingRoles) when the backup's local file tells them cheaply."""
    job = restore_job(session, backup_id, confirm, target_url, in_place=in_place, drop_previous=drop_previous,
                      into_target=into_target, as_database=as_database, create_roles=create_roles,
                      no_owner=no_owner)
    backup = get_completed_backup(session, backup_id)
    refuse_missing_roles(session, backup.file(), wiring.local_storage(),
                         wiring.restore_conn(backup.database, target_url, into_target, as_database), wiring.pg_tools(),
                         wiring.master_key(), create=create_roles, no_owner=no_owner)
    return queue(session, job, target_url)


def queue_restore_set(session: Session, set_id: str, confirm: str, target_url: str | None = None, *,
                      drop_previous: bool = False) -> Job:
    """Queue a restore of a backup set (see restore_set_job); `confirm` must be the server it goes
    onto, as postgresql://user@host:port/ (its password left out)."""
    find_set(session, set_id)  # an unknown set is named as one
    job = restore_set_job(session, set_id, target_url, drop_previous=drop_previous)
    if (confirm or "").strip() != job.target:
        raise ConfirmationMismatch(job.target, what="server")
    return queue(session, job, target_url)


def queue_verify(session: Session, backup_id: str) -> Job:
    """Queue a restore-verify of a completed backup."""
    return queue(session, verify_job(session, backup_id))


def queue(session: Session, job: Job, target_url: str | None = None) -> Job:
    """Save a job and put it on the queue for the worker (JobConflict if its slot is taken)."""
    _save(session, job)
    # The URL (it may hold a password) travels in the queue message only, never in the catalog.
    try:
        job_queue().submit(job.id, target_url)
    except Exception as exc:  # the SQLite file or Redis refused: the job must not stay queued
        record(job.id, if_status=QUEUED, status=FAILED, phase="failed", finished_at=utcnow(),
               error=f"could not queue the job: {exc}")
        raise QueueUnavailable(f"The job queue is unavailable: {exc}") from exc
    events.announce(events.job_queued, job)
    return job


def run_here(session: Session, job: Job, target_url: str | None = None,
             progress: Callable[[int], None] | None = None, *, recover: bool = True):
    """Save a job and run it in this process to its end; returns what its runner returned, or
    raises its error (the CLI's commands, a delete from the pages).

    The job holds its slot like a queued one (JobConflict if another job does). With
    `recover` (a CLI process, which runs one job), jobs left running by dead processes of
    this host are marked interrupted first, so a killed command does not hold its slot for ever.
    """
    if recover:
        recover_interrupted_jobs(session, wiring.local_storage())
    _save(session, job)
    return run_job(job.id, target_url, progress, raise_errors=True)


def _save(session: Session, job: Job) -> None:
    job.status, job.phase = QUEUED, "queued"
    session.add(job)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        active = session.scalar(select(Job).where(Job.slot == job.slot, Job.status.in_(ACTIVE_JOB_STATUSES)))
        if active is None:
            raise
        raise JobConflict(f"A {active.kind} job for {active.database} is already {active.status} "
                          f"(job {active.id}); wait for it to finish") from None


def record_failed(session: Session, kind: str, database: str, error: str) -> Job:
    """Keep as history a job that could not even be queued (a scheduled run of a misconfigured target)."""
    job = Job(kind=kind, status=FAILED, phase="failed", database=database, target=database, slot=database,
              error=error, log=log_line(f"failed: {error}"), finished_at=utcnow())
    session.add(job)
    session.commit()
    return job
