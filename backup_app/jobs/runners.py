"""Running a job: claim it, run its kind's service call with a heartbeat and progress, record
the outcome. The worker's task and `run_here` both end here.
"""
import logging
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app import wiring
from backup_app.core.formatting import human_size
from backup_app.core.sqltext import names
from backup_app.errors import (
    BackupError,
    JobConflict,
    JobStalled,
    SomeBackupsFailed,
    VerificationFailed,
)
from backup_app.extensions import db
from backup_app.jobs.pitr import PITR_RUNNERS, pitr_readers
from backup_app.jobs.records import ProgressRecorder, Watch, claim, finish, heartbeat, record
from backup_app.jobs.slots import ALL_TARGETS
from backup_app.models import (
    ACTIVE_JOB_STATUSES,
    COMPLETED,
    CREATE,
    DELETE,
    DOWNLOAD,
    FAILED,
    IMPORT,
    INTERRUPTED,
    PRUNE,
    RESTORE,
    RESTORE_SET,
    SYNC,
    VERIFY,
    Job,
)
from backup_app.services import previous
from backup_app.services.backups.create import create_backup, expected_dump_size
from backup_app.services.backups.delete import delete_backup
from backup_app.services.backups.download import download_backup
from backup_app.services.backups.importing import import_dump
from backup_app.services.backups.queries import get_completed_backup
from backup_app.services.backups.restore import RestoreOptions, restore_backup
from backup_app.services.backups.set_restore import restore_set
from backup_app.services.backups.sets import create_set, globals_spec
from backup_app.services.prune import prune
from backup_app.services.sync import sync_backups
from backup_app.services.verify import PASSED, verify_backup

log = logging.getLogger(__name__)


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
    watch = Watch(recorder)
    try:
        with heartbeat(job_id, watch):
            if job.kind == RESTORE:
                summary, value = _run_restore(session, job, target_url, recorder)
            elif job.kind == RESTORE_SET:
                summary, value = _run_restore_set(session, job, target_url, recorder)
            else:
                summary, value = RUNNERS[job.kind](session, job, recorder)
    except BackupError as exc:
        session.rollback()
        stalled = watch.stalled  # its programs killed by the watchdog: that is why it failed
        finish(job_id, f"failed: {stalled or exc}", status=FAILED, phase="failed", error=stalled or str(exc),
               **recorder.unwritten())
        if not raise_errors:
            return None
        if stalled:
            raise JobStalled(stalled) from exc
        raise
    except Exception as exc:
        session.rollback()
        message = watch.stalled or f"internal error: {type(exc).__name__}: {exc}"
        finish(job_id, f"failed: {message}", status=FAILED, phase="failed", error=message, **recorder.unwritten())
        raise
    except BaseException as exc:  # Ctrl-C in a `flask backup` command
        session.rollback()
        message = f"stopped by {type(exc).__name__}"
        finish(job_id, f"interrupted: {message}", status=INTERRUPTED, phase="interrupted", error=message,
               **recorder.unwritten())
        raise
    finish(job_id, summary, status=COMPLETED, phase="done", result=summary, **recorder.unwritten())
    return value


def _run_create(session: Session, job: RunningJob, progress: ProgressRecorder):
    spec, pg = wiring.dump_spec(job.database), wiring.pg_tools()
    if spec.all_databases:
        return _run_set(session, job, spec, progress)
    progress.begin("dumping", None, f"dumping {spec.conn.display()}")
    progress.expect(expected_dump_size(session, spec, pg))  # asked of the server: a silent one stalls the dump
    backup = create_backup(session, spec, wiring.local_storage(), wiring.s3_stores(), pg,
                           key=wiring.master_key(), progress=progress, backup_id=job.backup_id)
    for copy in backup.copies:
        if copy.error:
            record(job.id, f"{copy.location} copy {copy.status}: {copy.error}")
    copies = ", ".join(f"{c.location} {c.status}" for c in backup.copies)
    progress.settle(backup.size_bytes)
    summary = f"completed {backup.filename} ({human_size(backup.size_bytes)}); copies: {copies}"
    if job.options.get("with_globals"):
        summary += "; " + _record_globals(session, job, spec, pg)
    return summary, backup


def _record_globals(session: Session, job: RunningJob, spec, pg) -> str:
    """Back up the globals of a single target's server beside its dump (a scheduled run), for
    `restore --create-roles`; a failure is said, and the backup it failed beside stays good."""
    record(job.id, f"backing up the roles of {spec.conn.with_dbname('').display()} (pg_dumpall --globals-only)")
    try:
        made = create_backup(session, globals_spec(spec, pg), wiring.local_storage(), wiring.s3_stores(), pg,
                             key=wiring.master_key())
    except BackupError as exc:
        session.rollback()
        record(job.id, f"the globals backup failed: {exc}")
        return f"the globals backup failed: {exc}"
    return f"globals in {made.filename}"


def thread_sessions():
    """A context manager factory giving each thread a catalog session of its own (an app context)."""
    app = current_app._get_current_object()

    @contextmanager
    def session_scope():
        with app.app_context():
            yield db.session
    return session_scope


def _run_set(session: Session, job: RunningJob, spec, progress: ProgressRecorder):
    progress.begin("dumping", None, f"backing up every database of {spec.conn.with_dbname('').display()}")
    sessions = thread_sessions()

    def report(line: str) -> None:
        with sessions():
            record(job.id, line)
    result = create_set(session, sessions, spec, wiring.local_storage(), wiring.s3_stores(), wiring.pg_tools(),
                        key=wiring.master_key(), parallel=current_app.config["SET_PARALLEL"], progress=progress,
                        expect=progress.expect, set_id=job.options.get("set_id"), report=report)
    record(job.id, options={**job.options, "skipped": result.skipped})  # for the pages (overview.left_out)
    progress.settle(sum(backup.size_bytes or 0 for backup in result.backups))
    if result.failed:
        raise SomeBackupsFailed(result.summary(), result)
    return result.summary(), result


def _run_restore(session: Session, job: RunningJob, target_url: str | None, progress: ProgressRecorder):
    backup = get_completed_backup(session, job.backup_id)
    into_target, as_database = job.options.get("into_target"), job.options.get("as_database")
    conn = wiring.restore_conn(backup.database, target_url, into_target, as_database)
    config, key = current_app.config, wiring.master_key()
    options = RestoreOptions(in_place=job.options.get("in_place", False),
                             drop_previous=job.options.get("drop_previous", False), jobs=config["RESTORE_JOBS"],
                             new_database=as_database is not None,
                             create_roles=job.options.get("create_roles", False),
                             no_owner=job.options.get("no_owner", False))
    filename, target = backup.filename, None if target_url else into_target or backup.database
    size = backup.size_bytes
    progress.begin("fetching", size, f"checking the local file of {filename} (fetched from S3 if needed)")
    restored = restore_backup(session, backup.id, conn, wiring.local_storage(), wiring.s3_stores(),
                              wiring.pg_tools(), key=key, options=options, progress=progress,
                              report=lambda line: progress.begin("restoring", size, line),
                              source=_source_conn(backup.database))
    summary = f"restored {filename} into {conn.display()}"
    if restored.roles_created:
        summary += f" (roles created first: {names(restored.roles_created)})"
    if restored.swap_seconds is not None:
        summary += (f" (built beside it, then swapped in: unavailable for {restored.swap_seconds:.3f} s, "
                    f"{restored.sessions_ended} session(s) ended)")
    if restored.previous_database:
        summary += f"; the previous database is kept as {restored.previous_database}"
        summary += _keep_previous(session, job, restored, conn, target, target_url)
    elif options.drop_previous and restored.swap_seconds is not None:
        summary += "; the previous database was dropped"
    return summary + "".join(f"; warning: {warning}" for warning in restored.warnings), restored


def _source_conn(target: str):
    """The server the target `target` backs up (None: it is gone or cannot be reached as configured)."""
    try:
        return wiring.target_conn(target)
    except BackupError:
        return None


def _keep_previous(session: Session, job: RunningJob, restored, conn, target: str | None,
                   target_url: str | None) -> str:
    """Record the database a swap kept, for the worker to drop after KEEP_PREVIOUS_HOURS; what to add
    to the summary about it."""
    hours, key = current_app.config["KEEP_PREVIOUS_HOURS"], wiring.master_key()
    try:
        previous.keep(session, restored.previous_database, conn.dbname, conn, restored.backup_id, hours=hours,
                      job_id=job.id, target=target,
                      url_encrypted=key.encrypt_secret(target_url) if target_url and key else None)
    except Exception as exc:  # noqa: BLE001 - the target holds the backup: the restore succeeded
        session.rollback()
        return f" (not recorded for the worker to drop: {exc}; drop it by hand)"
    return f" (dropped after {hours} h)" if hours > 0 else ""


def _run_restore_set(session: Session, job: RunningJob, target_url: str | None, progress: ProgressRecorder):
    from backup_app.services.roles import create_roles

    conn = wiring.set_restore_conn(job.database, target_url)
    target = None if target_url else job.database

    def restored(backup, into, done) -> str | None:
        if done.previous_database:
            record(job.id, f"{into.dbname}: the previous database is kept as {done.previous_database}"
                   + _keep_previous(session, job, done, into, target, target_url))
        for warning in done.warnings:
            record(job.id, f"{into.dbname}: warning: {warning}")
        return done.previous_database

    outcome = restore_set(session, job.options["set_id"], conn, wiring.local_storage(), wiring.s3_stores(),
                          wiring.pg_tools(), create_roles=lambda into, sql: create_roles(into, sql, None),
                          key=wiring.master_key(),
                          options=RestoreOptions(drop_previous=job.options.get("drop_previous", False),
                                                 jobs=current_app.config["RESTORE_JOBS"]),
                          step=progress.begin, restored=restored)
    for line in outcome.lines():
        record(job.id, line)
    if outcome.failed:
        raise SomeBackupsFailed(outcome.error(), outcome)
    return f"restored set {outcome.set_id} onto {outcome.server}: " + "; ".join(outcome.lines()), outcome


def _run_verify(session: Session, job: RunningJob, progress: ProgressRecorder):
    backup = get_completed_backup(session, job.backup_id)
    filename = backup.filename
    record(job.id, f"checking the SHA-256 of every copy of {filename}", phase="checking")
    verification = verify_backup(
        session, backup.id, wiring.verify_conn(backup.database), wiring.local_storage(), wiring.s3_stores(),
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
    report = prune(session, targets, wiring.local_storage(), wiring.s3_stores(), in_use=set(busy),
                   pitr_stores=wiring.pitr_stores(), pitr_readers=pitr_readers(session))
    for item in report.deleted:
        record(job.id, f"deleted {item['filename']} ({item['reason']})")
    for item in report.kept_in_use:
        record(job.id, f"kept {item['filename']} for now: a job reads it ({item['reason']})")
    for line in report.pitr_lines("Deleted"):
        record(job.id, line)
    if report.error:
        raise SomeBackupsFailed(report.error, report)
    if not (report.deleted or report.pitr_deleted):
        return "nothing to prune", report
    summary = f"deleted {len(report.deleted)} backup(s)"
    if report.pitr_deleted:
        summary += f" and {len(report.pitr_deleted)} PITR file(s) (base backups, WAL segments)"
    return summary, report


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
    backup = delete_backup(session, job.backup_id, wiring.local_storage(), wiring.s3_stores())
    return f"deleted {backup.filename} from every location", backup


def _run_download(session: Session, job: RunningJob, progress: ProgressRecorder):
    output = Path(job.options["output"])
    size = get_completed_backup(session, job.backup_id).size_bytes
    progress.begin("downloading", size, f"writing to {output}")
    backup = download_backup(session, job.backup_id, output, wiring.local_storage(), wiring.s3_stores(),
                                     decode=job.options.get("decode", False), key=wiring.master_key(),
                                     progress=progress)
    written = output / backup.filename if output.is_dir() else output
    return f"wrote {written}", (backup, written)


def _run_import(session: Session, job: RunningJob, progress: ProgressRecorder):
    path = Path(job.options["path"])
    codec, encrypt = wiring.import_settings(job.database)
    progress.begin("importing", None, f"checking {path.name}, then storing it")
    backup = import_dump(session, path, job.database, wiring.local_storage(), wiring.s3_stores(), wiring.pg_tools(),
                         codec=codec, encrypt=encrypt, key=wiring.master_key(), progress=progress,
                         backup_id=job.backup_id)
    for copy in backup.copies:
        if copy.error:
            record(job.id, f"{copy.location} copy {copy.status}: {copy.error}")
    progress.settle(backup.size_bytes)
    return f"imported as {backup.filename} ({backup.format}, {human_size(backup.size_bytes)})", backup


RUNNERS = {CREATE: _run_create, IMPORT: _run_import, VERIFY: _run_verify, PRUNE: _run_prune, SYNC: _run_sync, DELETE: _run_delete,
           DOWNLOAD: _run_download, **PITR_RUNNERS}
