"""What restores leave behind: the databases swap restores kept (`<name>_before_restore_<time>`,
see previous.py) and the servers point-in-time restores started and left running. Listed with
their sizes; a kept database dropped now, a server stopped and its directory removed."""
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app.adapters.pgtools import PgTools
from backup_app.adapters.physical import RestoredServer
from backup_app.adapters.postgres import connect
from backup_app.core.conninfo import ConnInfo
from backup_app.errors import BackupError, LeftoverNotFound, PitrError
from backup_app.models import COMPLETED, Job, PreviousDatabase, isoformat
from backup_app.services.pitr.restore import server_for
from backup_app.services.previous import kept_databases

PREVIOUS_DATABASE, PITR_SERVER = "previous-database", "pitr-server"
PITR_RESTORE = "pitr-restore"  # the job kind (backup_app.jobs.pitr)


@dataclass(frozen=True)
class Leftover:
    """A database a restore kept, or a server one left running. `size_bytes` None: unknown."""

    kind: str
    name: str
    target: str | None
    size_bytes: int | None
    created_at: datetime | None
    drop_at: datetime | None = None
    port: int | None = None
    data_dir: str | None = None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "target": self.target, "size_bytes": self.size_bytes,
                "created_at": isoformat(self.created_at), "drop_at": isoformat(self.drop_at), "port": self.port,
                "data_dir": self.data_dir}


def list_leftovers(session: Session, conn_of: Callable[[PreviousDatabase], ConnInfo]) -> list[Leftover]:
    """The kept databases (newest first, measured on their servers), then the running servers."""
    return [*previous_databases(session, conn_of), *pitr_servers(session)]


def previous_databases(session: Session, conn_of: Callable[[PreviousDatabase], ConnInfo]) -> list[Leftover]:
    kept = kept_databases(session)
    session.commit()  # no catalog transaction waits on the servers
    sizes = measure(kept, conn_of)
    return [Leftover(PREVIOUS_DATABASE, k.name, k.target, sizes.get(k.id), k.kept_at, k.drop_after)
            for k in kept]


def measure(kept: list[PreviousDatabase], conn_of: Callable[[PreviousDatabase], ConnInfo]) -> dict[int, int]:
    """The kept databases' sizes by id, each server asked once (3 s at most to connect, whatever the URL
    says: a page waits on it); one missing when its server could not be asked or it is gone."""
    by_server: dict[ConnInfo, list[PreviousDatabase]] = {}
    for k in kept:
        try:
            by_server.setdefault(conn_of(k).with_dbname("postgres"), []).append(k)
        except BackupError:  # its target is gone or its password unreadable: not asked
            continue
    sizes: dict[int, int] = {}
    for conn, on_server in by_server.items():
        found = database_sizes(conn, [k.name for k in on_server])
        sizes.update({k.id: found[k.name] for k in on_server if k.name in found})
    return sizes


def database_sizes(conn: ConnInfo, names: list[str]) -> dict[str, int]:
    """pg_database_size of those of `names` on `conn`'s server that exist; none when it cannot be asked."""
    import psycopg

    try:
        with connect(conn, timeout=3, at_most=True) as db:
            return dict(db.execute("SELECT datname, pg_database_size(oid) FROM pg_database WHERE datname = ANY(%s)",
                                   (names,)).fetchall())
    except (psycopg.Error, BackupError):
        return {}


@dataclass(frozen=True)
class RunningServer:
    job: Job
    data_dir: Path
    port: int


def running_servers(session: Session) -> list[RunningServer]:
    """The servers completed point-in-time restores left running (their directory still has a
    postmaster.pid), newest first; one per data directory."""
    jobs = session.scalars(select(Job).where(Job.kind == PITR_RESTORE, Job.status == COMPLETED)
                           .order_by(Job.finished_at.desc()))
    found: dict[Path, RunningServer] = {}
    for job in jobs:
        options = job.options or {}
        if options.get("into_database") or not options.get("data_dir") or not options.get("port"):
            continue
        data_dir = Path(options["data_dir"])
        if data_dir not in found and (data_dir / "postmaster.pid").exists():
            found[data_dir] = RunningServer(job, data_dir, options["port"])
    return list(found.values())


def pitr_servers(session: Session) -> list[Leftover]:
    return [Leftover(PITR_SERVER, s.data_dir.name, s.job.database, directory_size(s.data_dir), s.job.finished_at,
                     port=s.port, data_dir=str(s.data_dir)) for s in running_servers(session)]


def directory_size(path: Path) -> int:
    """Bytes of the files under `path` (links not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed meanwhile
                pass
    return total


def running_server(session: Session, name: str) -> RunningServer:
    """The server a point-in-time restore left running in the directory `name` (its name or path);
    LeftoverNotFound when no running one has it, or several do."""
    matching = [s for s in running_servers(session) if name in (s.data_dir.name, str(s.data_dir))]
    if not matching:
        raise LeftoverNotFound(f"no server left running by a point-in-time restore is called {name!r} "
                               "(see `flask restores list`)")
    if len(matching) > 1:
        raise LeftoverNotFound(f"several restored servers are called {name!r}: give the data directory "
                               f"({', '.join(str(s.data_dir) for s in matching)})")
    return matching[0]


def stop_server(session: Session, name: str, pg: PgTools, os_user: str) -> RunningServer:
    """Stop the server a point-in-time restore left running in the directory `name` (its name or
    path) and remove that directory; LeftoverNotFound when no running one has it."""
    running = running_server(session, name)
    session.commit()
    try:
        version = (running.data_dir / "PG_VERSION").read_text().strip()
    except FileNotFoundError:
        raise PitrError(f"{running.data_dir} has no PG_VERSION: it is not a PostgreSQL data directory (any more); "
                        "stop its server and remove it by hand") from None
    server = RestoredServer(server_for(pg, version), running.data_dir, running.port, os_user)
    server.stop()
    if (running.data_dir / "postmaster.pid").exists():
        raise PitrError(f"the restored server in {running.data_dir} did not stop: {server.log_tail()}")
    shutil.rmtree(running.data_dir)
    return running
