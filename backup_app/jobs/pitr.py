"""The point-in-time recovery jobs: a base backup, a restore to a moment, and the drill (restore
"latest" into a scratch directory, check, remove). Each holds its target's PITR slot, so one
runs at a time per target; the CLI runs them in its own process, the pages and the API queue them."""
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app import wiring
from backup_app.adapters.physical import system_identifier
from backup_app.errors import PitrError
from backup_app.jobs.records import ProgressRecorder, log_line, record
from backup_app.jobs.slots import server_address
from backup_app.models import RUNNING, Job, isoformat, utcnow
from backup_app.services import events
from backup_app.services.pitr import base, lineage, restore, setup
from backup_app.services.pitr.rewind import rewind_database

BASE_BACKUP, PITR_RESTORE, PITR_VERIFY = "base-backup", "pitr-restore", "pitr-verify"


def pitr_slot(target: str) -> str:
    return f"pitr {target}"


def pitr_readers(session: Session) -> dict[str, Job]:
    """The running point-in-time restores and drills, by target: what they read of its archive
    (any base backup, any WAL) the prune leaves alone."""
    running = session.scalars(select(Job).where(Job.kind.in_((PITR_RESTORE, PITR_VERIFY)), Job.status == RUNNING))
    return {job.database: job for job in running}


def base_backup_job(target: str, incremental: bool = False) -> Job:
    setup.require_enabled(wiring.target(target))
    kind = "incremental" if incremental else "full"
    return Job(kind=BASE_BACKUP, database=target, target=f"server of {target}", slot=pitr_slot(target),
               server=server_address(wiring.target_conn(target)), options={"incremental": incremental},
               log=log_line(f"{kind} base backup of {target} requested"))


def restore_job(target: str, to: datetime | None, data_dir: str | None, port: int | None,
                into_database: str | None = None, root: str | None = None) -> Job:
    """A restore of `target`'s server as of `to` (None: latest) into `data_dir`; with
    `into_database`, that database is then put back into the target (swap restore). With `root`
    (PITR_RESTORE_ROOT: the pages and the API), `data_dir` must lie under it: checked now
    (PitrError) and again by the worker before it makes anything."""
    wiring.target(target)
    if root is not None:
        restore.check_under_root(Path(data_dir), root)
    where = f"into {data_dir}" if data_dir else "into a scratch directory"
    what = f"{target} as of {isoformat(to) or 'latest'} {where}" + (
        f", then {into_database} back into the target" if into_database else "")
    return Job(kind=PITR_RESTORE, database=target, target=data_dir or "scratch directory", slot=pitr_slot(target),
               options={"to": isoformat(to), "data_dir": data_dir, "port": port, "into_database": into_database,
                        "root": root},
               log=log_line(f"point-in-time restore of {what} requested"))


def verify_job(target: str) -> Job:
    wiring.target(target)
    return Job(kind=PITR_VERIFY, database=target, target="scratch directory", slot=pitr_slot(target),
               log=log_line(f"PITR drill of {target} requested"))


def run_base_backup(session: Session, job, progress: ProgressRecorder):
    spec = wiring.dump_spec(job.database)
    cluster = system_identifier(spec.conn)
    lineage.follow(session, wiring.target(job.database), cluster, spec.conn.display())
    client = setup.physical_client(wiring.pg_tools(), spec.conn)
    progress.begin("backing up", None, f"pg_basebackup {spec.conn.display()} (cluster {cluster})")
    progress.expect(wiring.pg_tools().server_size(spec.conn) or None)  # asked with psql, under the watchdog
    backup = base.take_base_backup(session, spec, client, wiring.pitr_stores(), wiring.master_key(), cluster,
                                   incremental=job.options.get("incremental", False), progress=progress)
    for location, copy in backup.copies.items():
        if copy.get("error"):
            record(job.id, f"{location} copy {copy['status']}: {copy['error']}")
    progress.settle(backup.size_bytes)
    return f"{backup.kind} base backup {backup.id} completed ({backup.size_bytes} bytes)", backup


def run_restore(session: Session, job, progress: ProgressRecorder):
    options = job.options
    to = datetime.fromisoformat(options["to"].replace("Z", "+00:00")) if options.get("to") else None
    scratch = options.get("data_dir") is None
    if options.get("root"):
        restore.check_under_root(Path(options["data_dir"]), options["root"])
    data_dir = Path(options["data_dir"]) if not scratch else Path(tempfile.mkdtemp(prefix="backup_app_pitr_"))
    try:
        cluster = restore_here(session, job, job.database, to, data_dir, options.get("port"), progress)
    except BaseException:
        if scratch:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    if options.get("into_database"):
        try:
            progress.begin("rewinding", None, f"putting {options['into_database']} back into {job.database}")
            line = rewind_database(session, job.database, options["into_database"], cluster, progress, job.id)
        finally:
            restore.remove_cluster(cluster)
        return line, cluster
    # Where the server it leaves running is, for `flask restores list` and `stop`.
    record(job.id, options={**options, "data_dir": str(cluster.data_dir), "port": cluster.port})
    return (f"restored {job.database} as of {isoformat(cluster.recovered_to)} into {cluster.data_dir}; "
            f"running on 127.0.0.1:{cluster.port}"), cluster


def restore_here(session: Session, job, target: str, to, data_dir: Path, port: int | None,
                 progress: ProgressRecorder):
    request = restore.RestoreRequest(target, to, data_dir, port, current_app.config["PITR_OS_USER"],
                                     current_app.config["PITR_PRELOAD_LIBRARIES"],
                                     wiring.target(target).pitr_system_identifier)
    return restore.restore_to_moment(session, request, wiring.pitr_stores(), wiring.pg_tools(),
                                     wiring.master_key(), progress=progress,
                                     phase=lambda phase, total: progress.begin(phase[:64], total, phase))


def run_verify(session: Session, job, progress: ProgressRecorder):
    """Restore "latest" into a scratch directory on a free port, check it answers, remove it;
    the outcome is kept on the target ("recoverable to …, verified …")."""
    target = wiring.target(job.database)
    session.add(target)  # BACKUP_DATABASE_URL's target keeps its drill results in its row
    scratch = Path(tempfile.mkdtemp(prefix="backup_app_pitr_drill_"))
    try:
        cluster = restore_here(session, job, job.database, None, scratch, None, progress)
        try:
            # It recovered and was promoted (pg_control says so); that it takes connections is asked
            # without a session: a session would run the source's role settings and triggers.
            if not cluster.server.accepts_connections(wiring.target_conn(job.database).dbname):
                raise PitrError(f"the restored server does not accept connections: {cluster.server.log_tail()}")
        finally:
            restore.remove_cluster(cluster)
    except Exception as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        session.rollback()
        target.pitr_verify_error = str(exc)
        target.pitr_verified_at = utcnow()
        session.commit()
        events.announce(events.pitr_drill_failed, target)
        raise
    target.pitr_verified_at, target.pitr_verified_to, target.pitr_verify_error = utcnow(), cluster.recovered_to, None
    session.commit()
    return (f"recoverable to {isoformat(cluster.recovered_to)}, verified {isoformat(target.pitr_verified_at)}",
            cluster)


PITR_RUNNERS = {BASE_BACKUP: run_base_backup, PITR_RESTORE: run_restore, PITR_VERIFY: run_verify}
