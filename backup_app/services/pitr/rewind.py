"""One database back to a moment: dumped from the server a point-in-time restore brought up into
a scratch file (never a backup of the target: no catalog row, no copy in a store, gone when the
job ends, also when the process dies), then restored into the target's server with the swap
restore (built beside it, swapped in, the current one kept)."""
from flask import current_app
from sqlalchemy.orm import Session

from backup_app import wiring
from backup_app.core.conninfo import ConnInfo
from backup_app.core.streams import Progress
from backup_app.models import BackupFile, isoformat, utcnow
from backup_app.services import previous
from backup_app.services.backups.create import dump_into
from backup_app.services.backups.restore import RestoreOptions, restore_file
from backup_app.services.pitr.restore import RestoredCluster
from backup_app.services.targets import DumpSpec


def rewind_database(session: Session, target: str, database: str, cluster: RestoredCluster,
                    progress: Progress | None = None, job_id: str | None = None) -> str:
    """Put `database` on the target's server back as it is in `cluster`; a line saying what was done."""
    conn = wiring.target_conn(target)
    restored_db = ConnInfo(database, "127.0.0.1", cluster.port, conn.user, conn.password)
    into = conn.with_dbname(database)
    spec = DumpSpec(target, restored_db)  # custom format, pg_dump's own gzip: pg_restore can run jobs on it
    pg = wiring.pg_tools()
    server_version, client = pg.for_dump(restored_db)
    scratch = wiring.local_storage().scratch_file()  # unnamed, in BACKUP_DIR: sized for dumps
    try:
        _written, row_counts = dump_into(scratch, spec, client, pg, None, progress)
        file = BackupFile(id="", filename=f"the dump of {database} as of {isoformat(cluster.recovered_to)}",
                          database=target, format=spec.format, codec=spec.codec, encrypted=False,
                          created_at=utcnow(), server_version=server_version, client_version=client.version,
                          row_counts=row_counts)  # no id: it is in no catalog
        restored = restore_file(file, scratch.commit_open, into, pg,
                                options=RestoreOptions(jobs=current_app.config["RESTORE_JOBS"]), progress=progress)
    finally:
        scratch.discard()
    line = f"{database} on {into.display()} is back as of {isoformat(cluster.recovered_to)}"
    if restored.previous_database:
        hours = current_app.config["KEEP_PREVIOUS_HOURS"]
        previous.keep(session, restored.previous_database, database, into, None, hours=hours, job_id=job_id,
                      target=target)
        line += f"; the previous database is kept as {restored.previous_database}"
    return line
