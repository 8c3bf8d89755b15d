"""One database back to a moment: dumped from the server a point-in-time restore brought up, kept
as an ordinary backup of the target (in every store), then restored into the target's server with
the swap restore (built beside it, swapped in, the current one kept)."""
from flask import current_app
from sqlalchemy.orm import Session

from backup_app import wiring
from backup_app.core.conninfo import ConnInfo
from backup_app.core.streams import Progress
from backup_app.models import isoformat
from backup_app.services import previous
from backup_app.services.backups.create import create_backup
from backup_app.services.backups.restore import RestoreOptions, restore_backup
from backup_app.services.pitr.restore import RestoredCluster
from backup_app.services.targets import DumpSpec


def rewind_database(session: Session, target: str, database: str, cluster: RestoredCluster,
                    progress: Progress | None = None) -> str:
    """Put `database` on the target's server back as it is in `cluster`; a line saying what was done."""
    conn = wiring.target_conn(target)
    spec = wiring.dump_spec(target)
    restored_db = ConnInfo(database, "127.0.0.1", cluster.port, conn.user, conn.password)
    backup = create_backup(session, DumpSpec(target, restored_db, spec.format, spec.codec, spec.encrypt),
                           wiring.local_storage(), wiring.s3_stores(), wiring.pg_tools(), key=wiring.master_key(),
                           progress=progress)
    into = conn.with_dbname(database)
    restored = restore_backup(session, backup.id, into, wiring.local_storage(), wiring.s3_stores(),
                              wiring.pg_tools(), key=wiring.master_key(),
                              options=RestoreOptions(jobs=current_app.config["RESTORE_JOBS"]), progress=progress)
    line = f"{database} on {into.display()} is back as of {isoformat(cluster.recovered_to)} (backup {backup.id})"
    if restored.previous_database:
        hours = current_app.config["KEEP_PREVIOUS_HOURS"]
        previous.keep(session, restored.previous_database, database, into, backup.id, hours=hours, target=target)
        line += f"; the previous database is kept as {restored.previous_database}"
    return line
