"""Background jobs: create, restore, verify, prune and sync run in a Huey worker, never
inside a web request.

Each run has a Job row. A request (or the worker's scheduler) queues it (`queue_create`,
`queue_restore`, `queue_verify`, `queue`); the worker claims it, runs the same service
function the CLI calls, and writes its phase, bytes done and log lines to the row as the
stream flows, for the pages and the API to poll. The `flask backup` commands (and a delete
from the pages) run the same job code in their own process (`run_here`). Every job holds a
slot: its target database (keyed on the server's identity, however the URL names it), its
backup, or all backups. The catalog allows one queued or running job per slot (a partial
unique index), so a second request is refused with JobConflict and nothing runs twice.

The queue is SqliteHuey in the instance folder, or RedisHuey when REDIS_URL is set.
"""
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from flask import Flask, current_app
from huey import Huey, RedisHuey, SqliteHuey
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import wiring
from .adapters.postgres import ConnInfo, server_identity
from .adapters.storage import LocalStorage
from .errors import (
    BackupError,
    ConfigurationError,
    ConfirmationMismatch,
    InvalidBackupState,
    JobConflict,
    JobNotFound,
    QueueUnavailable,
    SomeBackupsFailed,
    VerificationFailed,
)
from .extensions import db
from .formatting import human_size
from .logs import job_context
from .models import (
    ACTIVE_JOB_STATUSES,
    COMPLETED,
    CREATE,
    DELETE,
    DOWNLOAD,
    FAILED,
    INTERRUPTED,
    PRUNE,
    QUEUED,
    RESTORE,
    RUNNING,
    SYNC,
    VERIFY,
    Backup,
    Job,
    Verification,
    new_id,
    utcnow,
)
from .services import backups as service
from .services import previous
from .services.prune import prune
from .services.restore import RestoreOptions, restore_backup
from .services.sync import sync_backups
from .services.targets import DumpSpec
from .services.verify import PASSED, verify_backup

log = logging.getLogger(__name__)
PROGRESS_INTERVAL = 0.5  # seconds between two writes of a job's bytes done
STALE_HEARTBEATS = 6  # a running job silent for this many heartbeats is taken as dead
# The database and the slot of prune, sync and delete jobs: they share one.
ALL_TARGETS, ALL_BACKUPS = "all targets", "all backups"
# "Now" by the catalog database's clock, the one clock every worker on every machine shares.
CATALOG_NOW = {"sqlite": "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')", "postgresql": "SELECT clock_timestamp()"}


class JobQueue:
    """The app's Huey instance and the task it runs for every job: `run_job(job_id, target_url)`."""

    def __init__(self, app: Flask):
        self.app = app
        self.huey = make_huey(app)
        self._task = self.huey.task(name="run_job")(self._run_in_app)

    def _run_in_app(self, job_id: str, target_url: str | None = None) -> None:
        with self.app.app_context(), job_context(job_id):
            run_job(job_id, target_url)

    def submit(self, job_id: str, target_url: str | None = None) -> None:
        self._task(job_id, target_url)


def make_huey(app: Flask) -> Huey:
    """RedisHuey when REDIS_URL is set, else SqliteHuey in the instance folder."""
    config = app.config
    common = {"name": "backup_app", "results": False, "immediate": config.get("HUEY_IMMEDIATE", False)}
    if config.get("REDIS_URL"):
        return RedisHuey(url=config["REDIS_URL"], **common)
    path = config.get("HUEY_SQLITE_PATH") or str(Path(app.instance_path) / "huey.db")
    return SqliteHuey(filename=path, **common)


def init_app(app: Flask) -> None:
    app.extensions["job_queue"] = JobQueue(app)


def job_queue() -> JobQueue:
    return current_app.extensions["job_queue"]


# --- making jobs: queued for the worker, or run here (the CLI) -------------------------

def get_job(session: Session, job_id: str) -> Job:
    """The job with this id, or JobNotFound."""
    job = session.get(Job, job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


def recent_jobs(session: Session, limit: int = 50) -> list[Job]:
    """Every active job, then the most recent others, newest first."""
    active = select(Job).where(Job.status.in_(ACTIVE_JOB_STATUSES))
    recent = select(Job).where(Job.status.not_in(ACTIVE_JOB_STATUSES)).order_by(Job.created_at.desc()).limit(limit)
    jobs = list(session.scalars(active)) + list(session.scalars(recent))
    return sorted(jobs, key=lambda job: job.created_at, reverse=True)


def jobs_of_backup(session: Session, backup_id: str) -> list[Job]:
    """The jobs that made or restored a backup, oldest first (its job log)."""
    return list(session.scalars(select(Job).where(Job.backup_id == backup_id).order_by(Job.created_at)))


def database_slot(conn: ConnInfo) -> str:
    """The slot of a database: its server's identity and its name, however the URL spells the
    host, the port or the user (`system 7714575499734397009/shop`)."""
    return f"{server_identity(conn)}/{conn.dbname}"


def backup_slot(backup_id: str) -> str:
    return f"backup {backup_id}"


def create_job(spec: DumpSpec) -> Job:
    """A backup of `spec`'s database; the new backup's id is chosen now, so the job can link it."""
    return Job(kind=CREATE, database=spec.name, target=spec.conn.display(), slot=database_slot(spec.conn),
               backup_id=new_id(), log=log_line(f"backup of {spec.name} requested"))


def restore_job(session: Session, backup_id: str, confirm: str, target_url: str | None = None, *,
                in_place: bool = False, drop_previous: bool = False) -> Job:
    """A restore of a completed backup into its own target or into `target_url`.

    `confirm` must be the target database's name (ConfirmationMismatch otherwise).
    """
    backup = service.get_completed_backup(session, backup_id)
    conn = ConnInfo.from_url(target_url) if target_url else wiring.target_conn(backup.database)
    if (confirm or "").strip() != conn.dbname:
        raise ConfirmationMismatch(conn.dbname)
    slot = database_slot(conn)
    catalog = catalog_conn()
    if catalog is not None and database_slot(catalog) == slot:
        raise ConfigurationError(f"{conn.display()} is this app's own catalog database: restoring over it would "
                                 "replace the records of every backup")
    how = " in place" if in_place else ""
    return Job(kind=RESTORE, database=conn.dbname, target=conn.display(), slot=slot,
               backup_id=backup.id, options={"in_place": in_place, "drop_previous": drop_previous},
               log=log_line(f"restore of {backup.filename} into {conn.display()}{how} requested"))


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
    """A restore-verify of a completed backup, in a scratch database on its target's server.

    It holds the backup (one verify of it at a time), not its target database.
    """
    backup = service.get_completed_backup(session, backup_id)
    conn = wiring.target_conn(backup.database)
    server = f"{conn.host or 'localhost'}:{conn.port or 5432}"
    return Job(kind=VERIFY, database=backup.database, target=f"scratch copy of {backup.id} on {server}",
               slot=backup_slot(backup.id), backup_id=backup.id,
               log=log_line(f"verify of {backup.filename} requested"))


def app_wide_job(kind: str, database: str | None = None, options: dict | None = None) -> Job:
    """A prune or a sync (of every target, or prune of `database`'s backups): they go through the
    backups, so one of them runs at a time."""
    return Job(kind=kind, database=database or ALL_TARGETS, target=ALL_BACKUPS, slot=ALL_BACKUPS, options=options,
               log=log_line(f"{kind}{f' of {database}' if database else ''} requested"))


def delete_job(session: Session, backup_id: str) -> Job:
    """A delete of one backup from every location. It holds all backups, as a prune or a sync
    does, so an object is never uploaded again for a backup being deleted."""
    backup = service.get_backup(session, backup_id)
    if backup.status == RUNNING:
        raise InvalidBackupState(f"backup {backup.id} is still running")
    return Job(kind=DELETE, database=backup.database, target=ALL_BACKUPS, slot=ALL_BACKUPS, backup_id=backup.id,
               log=log_line(f"delete of {backup.filename} requested"))


def download_job(session: Session, backup_id: str, output: Path, decode: bool = False) -> Job:
    """A download of a completed backup to a file. Many may run at once; a delete waits for them."""
    backup = service.get_completed_backup(session, backup_id)
    job_id = new_id()
    return Job(id=job_id, kind=DOWNLOAD, database=backup.database, target=str(output), slot=f"download {job_id}",
               backup_id=backup.id, options={"output": str(output), "decode": decode},
               log=log_line(f"download of {backup.filename} to {output} requested"))


def queue_create(session: Session, spec: DumpSpec) -> Job:
    """Queue a backup of `spec`'s database."""
    return queue(session, create_job(spec))


def queue_restore(session: Session, backup_id: str, confirm: str, target_url: str | None = None, *,
                  in_place: bool = False, drop_previous: bool = False) -> Job:
    """Queue a restore; `confirm` must be the target database's name."""
    job = restore_job(session, backup_id, confirm, target_url, in_place=in_place, drop_previous=drop_previous)
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


# --- running (in the worker) -----------------------------------------------------------

def log_line(message: str, at: datetime | None = None) -> str:
    return f"{(at or utcnow()):%Y-%m-%d %H:%M:%S}Z  {message}\n"


def catalog_now() -> datetime:
    """Now by the catalog database's clock: heartbeats are written and judged by it, so a
    machine whose clock is off never takes another machine's live job for a dead one."""
    with db.engine.connect() as connection:
        value = connection.exec_driver_sql(CATALOG_NOW[db.engine.dialect.name]).scalar()
    if isinstance(value, str):  # SQLite: UTC as text
        value = datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def record(job_id: str, message: str | None = None, *, if_status: str | None = None, **values) -> bool:
    """Update a job's row in its own short transaction, apart from the service's session.

    With `if_status`, only while the job has that status: a job another worker marked
    interrupted is never overwritten as completed. False if nothing was updated.
    """
    if message:
        values["log"] = Job.log + log_line(message)
        log.info("%s", message)
    statement = update(Job).where(Job.id == job_id)
    if if_status:
        statement = statement.where(Job.status == if_status)
    with db.engine.begin() as connection:
        return connection.execute(statement.values(**values)).rowcount == 1


class ProgressRecorder:
    """The services' progress callback: writes bytes done at most every PROGRESS_INTERVAL,
    and passes every call on to `also` (the CLI's progress line)."""

    def __init__(self, job_id: str, also: Callable[[int], None] | None = None):
        self.job_id = job_id
        self.also = also
        self._last = 0.0

    def __call__(self, nbytes: int) -> None:
        if self.also:
            self.also(nbytes)
        now = time.monotonic()
        if now - self._last >= PROGRESS_INTERVAL:
            self._last = now
            record(self.job_id, bytes_done=nbytes)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(job_id: str) -> bool:
    """Move a queued job to running; False if it is not queued (already run, or gone)."""
    return record(job_id, if_status=QUEUED, status=RUNNING, phase="starting", started_at=utcnow(),
                  heartbeat_at=catalog_now(), worker=worker_name())


@contextmanager
def heartbeat(job_id: str):
    """Write the job's heartbeat every JOB_HEARTBEAT_SECONDS, from a thread, while the block runs."""
    app = current_app._get_current_object()
    stopped = threading.Event()

    def beat() -> None:
        with app.app_context():
            while not stopped.wait(app.config["JOB_HEARTBEAT_SECONDS"]):
                try:
                    record(job_id, if_status=RUNNING, heartbeat_at=catalog_now())
                except Exception:  # a busy or unreachable catalog: the next beat tries again
                    log.warning("could not write the heartbeat of job %s", job_id, exc_info=True)
    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        thread.join()


def finish(job_id: str, message: str, **values) -> None:
    """End a running job; a job marked interrupted meanwhile (its worker taken for dead) stays so."""
    if not record(job_id, message, if_status=RUNNING, finished_at=utcnow(), **values):
        log.warning("job %s was no longer running (marked interrupted?); not recorded: %s", job_id, message)


@dataclass(frozen=True)
class RunningJob:
    """What a runner knows of its job, as plain values: reading the row's attributes after a
    commit would open a catalog transaction that lasts as long as the work."""

    id: str
    kind: str
    database: str
    backup_id: str | None
    options: dict

    @classmethod
    def of(cls, job: Job) -> "RunningJob":
        return cls(job.id, job.kind, job.database, job.backup_id, dict(job.options or {}))


def run_job(job_id: str, target_url: str | None = None, progress: Callable[[int], None] | None = None,
            *, raise_errors: bool = False):
    """Run a queued job to its end, recording the outcome on its row (the worker's task).

    Returns what the job's runner returned (None if the job was not queued). A BackupError is
    recorded as the failure and, with `raise_errors` (a job run in-process), raised again.
    """
    if not claim(job_id):
        log.warning("job %s is not queued; not running it", job_id)
        return None
    session = db.session
    job = RunningJob.of(session.get(Job, job_id))
    session.commit()  # the runner reads its job from `job`: no transaction stays open for it
    recorder = ProgressRecorder(job_id, progress)
    try:
        with heartbeat(job_id):
            if job.kind == RESTORE:
                summary, value = _run_restore(session, job, target_url, recorder)
            else:
                summary, value = RUNNERS[job.kind](session, job, recorder)
    except BackupError as exc:
        session.rollback()
        finish(job_id, f"failed: {exc}", status=FAILED, phase="failed", error=str(exc))
        if raise_errors:
            raise
        return None
    except Exception as exc:
        session.rollback()
        message = f"internal error: {type(exc).__name__}: {exc}"
        finish(job_id, f"failed: {message}", status=FAILED, phase="failed", error=message)
        raise
    except BaseException as exc:  # Ctrl-C in a `flask backup` command
        session.rollback()
        message = f"stopped by {type(exc).__name__}"
        finish(job_id, f"interrupted: {message}", status=INTERRUPTED, phase="interrupted", error=message)
        raise
    finish(job_id, summary, status=COMPLETED, phase="done", result=summary)
    return value


def _run_create(session: Session, job: RunningJob, progress: ProgressRecorder):
    spec = wiring.dump_spec(job.database)
    record(job.id, f"dumping {spec.conn.display()}", phase="dumping")
    backup = service.create_backup(session, spec, wiring.local_storage(), wiring.s3_stores(),
                                   wiring.pg_tools(), key=wiring.master_key(), progress=progress,
                                   backup_id=job.backup_id)
    for copy in backup.copies:
        if copy.error:
            record(job.id, f"{copy.location} copy {copy.status}: {copy.error}")
    copies = ", ".join(f"{c.location} {c.status}" for c in backup.copies)
    record(job.id, bytes_done=backup.size_bytes)
    return f"completed {backup.filename} ({human_size(backup.size_bytes)}); copies: {copies}", backup


def _run_restore(session: Session, job: RunningJob, target_url: str | None, progress: ProgressRecorder):
    backup = service.get_completed_backup(session, job.backup_id)
    conn = ConnInfo.from_url(target_url) if target_url else wiring.target_conn(backup.database)
    config, key = current_app.config, wiring.master_key()
    options = RestoreOptions(in_place=job.options.get("in_place", False),
                             drop_previous=job.options.get("drop_previous", False), jobs=config["RESTORE_JOBS"])
    filename, target = backup.filename, None if target_url else backup.database
    record(job.id, f"checking the local file of {filename} (fetched from S3 if needed)", phase="fetching")
    restored = restore_backup(session, backup.id, conn, wiring.local_storage(), wiring.s3_stores(),
                              wiring.pg_tools(), key=key, options=options, progress=progress,
                              report=lambda line: record(job.id, line, phase="restoring"))
    summary = f"restored {filename} into {conn.display()}"
    if restored.swap_seconds is not None:
        summary += (f" (built beside it, then swapped in: unavailable for {restored.swap_seconds:.3f} s, "
                    f"{restored.sessions_ended} session(s) ended)")
    if restored.previous_database:
        summary += f"; the previous database is kept as {restored.previous_database}"
        hours = config["KEEP_PREVIOUS_HOURS"]
        try:
            previous.keep(session, restored.previous_database, conn.dbname, conn, backup.id, hours=hours,
                          job_id=job.id, target=target,
                          url_encrypted=key.encrypt_secret(target_url) if target_url and key else None)
        except Exception as exc:  # noqa: BLE001 - the target holds the backup: the restore succeeded
            session.rollback()
            summary += f" (not recorded for the worker to drop: {exc}; drop it by hand)"
        else:
            summary += f" (dropped after {hours} h)" if hours > 0 else ""
    elif options.drop_previous and restored.swap_seconds is not None:
        summary += "; the previous database was dropped"
    return summary + "".join(f"; warning: {warning}" for warning in restored.warnings), restored


def _run_verify(session: Session, job: RunningJob, progress: ProgressRecorder):
    backup = service.get_completed_backup(session, job.backup_id)
    filename = backup.filename
    record(job.id, f"checking the SHA-256 of every copy of {filename}", phase="checking")
    verification = verify_backup(
        session, backup.id, wiring.target_conn(backup.database), wiring.local_storage(), wiring.s3_stores(),
        wiring.pg_tools(), wiring.master_key(), jobs=current_app.config["RESTORE_JOBS"],
        on_restoring=lambda: record(job.id, "restoring into a scratch database", phase="restoring"))
    if verification.status != PASSED:
        raise VerificationFailed(f"{filename} failed verification: {verification.error}")
    return f"{filename}: {verification.summary()}", verification


def in_use(session: Session, job: RunningJob) -> dict[str, Job]:
    """The backups other active jobs are reading (restores, verifies, downloads), by id."""
    busy = session.scalars(select(Job).where(Job.status.in_(ACTIVE_JOB_STATUSES), Job.id != job.id,
                                             Job.backup_id.is_not(None), Job.kind != CREATE))
    return {other.backup_id: other for other in busy}


def _run_prune(session: Session, job: RunningJob, progress: ProgressRecorder):
    everything = job.database == ALL_TARGETS
    record(job.id, "applying " + ("each target's retention policy" if everything else
                                  f"the retention policy of {job.database}"), phase="pruning")
    targets = wiring.all_targets() if everything else [wiring.target(job.database)]
    busy = in_use(session, job)
    report = prune(session, targets, wiring.local_storage(), wiring.s3_stores(), in_use=set(busy))
    for item in report.deleted:
        record(job.id, f"deleted {item['filename']} ({item['reason']})")
    for item in report.kept_in_use:
        record(job.id, f"kept {item['filename']} for now: a job reads it ({item['reason']})")
    if report.error:
        raise SomeBackupsFailed(report.error, report)
    return (f"deleted {len(report.deleted)} backup(s)" if report.deleted else "nothing to prune"), report


def _run_sync(session: Session, job: RunningJob, progress: ProgressRecorder):
    fetch_local = job.options.get("fetch_local", current_app.config.get("SYNC_FETCH_LOCAL", False))
    record(job.id, "uploading missing S3 copies" + (" and fetching missing local ones" if fetch_local else ""),
           phase="syncing")
    report = sync_backups(session, wiring.local_storage(), wiring.s3_stores(), fetch_local=fetch_local)
    for action in report.actions:
        record(job.id, f"{action['action']} {action['filename']} ({action['location']})"
               + (f": {action['error']}" if action["error"] else ""))
    if report.error:
        raise SomeBackupsFailed(report.error, report)
    done = Counter(action["action"] for action in report.actions)
    return f"uploaded {done['uploaded']}, fetched {done['fetched']}", report


def _run_delete(session: Session, job: RunningJob, progress: ProgressRecorder):
    reader = in_use(session, job).get(job.backup_id)
    if reader is not None:
        raise JobConflict(f"A {reader.kind} job is reading backup {job.backup_id} (job {reader.id}); "
                          "wait for it to finish")
    record(job.id, "removing every copy", phase="deleting")
    backup = service.delete_backup(session, job.backup_id, wiring.local_storage(), wiring.s3_stores())
    return f"deleted {backup.filename} from every location", backup


def _run_download(session: Session, job: RunningJob, progress: ProgressRecorder):
    output = Path(job.options["output"])
    record(job.id, f"writing to {output}", phase="downloading")
    backup = service.download_backup(session, job.backup_id, output, wiring.local_storage(), wiring.s3_stores(),
                                     decode=job.options.get("decode", False), key=wiring.master_key(),
                                     progress=progress)
    written = output / backup.filename if output.is_dir() else output
    return f"wrote {written}", (backup, written)


RUNNERS = {CREATE: _run_create, VERIFY: _run_verify, PRUNE: _run_prune, SYNC: _run_sync, DELETE: _run_delete,
           DOWNLOAD: _run_download}


# --- a worker that died ----------------------------------------------------------------

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
        error = interrupted_error(job)
        if not record(job.id, f"interrupted: {error}", if_status=RUNNING, status=INTERRUPTED, phase="interrupted",
                      error=error, finished_at=utcnow()):
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


def fail_running(model, row_id, error: str) -> bool:
    """Mark a backup or a verification failed, only while it is still running; whether it was."""
    with db.engine.begin() as connection:
        return connection.execute(update(model).where(model.id == row_id, model.status == RUNNING).values(
            status=FAILED, error=error, **({"completed_at": utcnow()} if model is Backup else
                                           {"finished_at": utcnow()}))).rowcount == 1
