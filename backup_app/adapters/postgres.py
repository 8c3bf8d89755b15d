"""pg_dump, pg_restore and psql run as subprocesses with argument lists, never a shell.

Connection details travel in libpq environment variables (PGHOST, PGPASSWORD, …) so
that no password ever appears on a command line that `ps` can show. psycopg (for the few
queries the app asks itself) is imported where it is used: listing backups needs none of it.
"""
from __future__ import annotations

import contextlib
import ipaddress
import logging
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from backup_app.adapters.environment import child_env
from backup_app.adapters.processes import bytes_read, track
from backup_app.core.codecs import GLOBALS
from backup_app.core.conninfo import ConnInfo, require_auth
from backup_app.core.sqlscript import GuardedScript
from backup_app.errors import ConfigurationError, DumpFailed, RestoreFailed

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)


FORMATS = ("custom", "plain")
RESTRICT_SINCE = {13: (13, 22), 14: (14, 19), 15: (15, 14), 16: (16, 10), 17: (17, 6)}


CHUNK_SIZE = 1024 * 1024


# The restore's session, if it has waited on a lock for longer than the timeout, with its blockers.
WAITING_ON_LOCK_SQL = """
SELECT a.pid, (SELECT string_agg(format('pid %%s %%s@%%s', b.pid, b.usename, b.application_name), ', ')
               FROM pg_stat_activity b WHERE b.pid = ANY(pg_blocking_pids(a.pid)))
FROM pg_stat_activity a
WHERE a.application_name = %s AND a.wait_event_type = 'Lock'
      AND now() - a.state_change > make_interval(secs => %s)
"""


USER_TABLES_SQL = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND NOT c.relispartition
ORDER BY 1, 2
"""


def count_table_rows(db: psycopg.Connection) -> dict[str, int]:
    """Exact row count of every user table, keyed `schema.table` (whatever statement timeout the
    database sets for its own users)."""
    from psycopg import sql

    db.execute("SET statement_timeout = 0")
    counts = {}
    for schema, table in db.execute(USER_TABLES_SQL).fetchall():
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        counts[f"{schema}.{table}"] = db.execute(query).fetchone()[0]
    return counts


def conninfo_value(value: str) -> str:
    """`value` quoted for a libpq conninfo string (`dbname='it''s'` style, backslash-escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


REQUIRE_AUTH_LIBPQ = 160000  # the first libpq (16) that knows require_auth; an older one refuses the keyword


def connect(conn: ConnInfo, timeout: int = 10, *, at_most: bool = False, **options) -> psycopg.Connection:
    """A psycopg connection to `conn`, given up after `timeout` seconds unless the URL sets its own
    connect_timeout (`at_most`: `timeout` even then); it answers only the authentication requests
    PG_REQUIRE_AUTH allows when psycopg's libpq can require that."""
    import psycopg

    keywords = {"connect_timeout": str(timeout), **conn.keywords()}
    if at_most:
        keywords["connect_timeout"] = str(timeout)
    if psycopg.pq.version() >= REQUIRE_AUTH_LIBPQ:
        keywords["require_auth"] = require_auth()
    return psycopg.connect(**keywords, **options)


def server_identity(conn: ConnInfo) -> str:
    """Who the server is, however the URL names it: its system identifier (`pg_control_system()`),
    asked of a maintenance database (so a database that does not exist yet is on the same
    server as once it does), else of the database itself; its canonical address when neither
    can be asked (see `canonical_address`). Each question waits 3 s at most for the server,
    whatever connect_timeout the URL sets: a page or a command waits on it."""
    import psycopg

    for dbname in dict.fromkeys(("postgres", "template1", conn.dbname)):
        try:
            with connect(conn.with_dbname(dbname), timeout=3, at_most=True) as db:
                return f"system {db.execute('SELECT system_identifier FROM pg_control_system()').fetchone()[0]}"
        except psycopg.Error as exc:
            if "timeout expired" in str(exc):
                break  # the server does not answer: asking it again would only wait again
    return canonical_address(conn)


def canonical_address(conn: ConnInfo) -> str:
    """'address 10.0.0.5:5432': the host resolved to its first IP address (every loopback name is
    'loopback'), the default port filled in; 'socket /run/postgresql:5432' for a Unix socket."""
    params = dict(conn.params)
    host, port = conn.host or params.get("host"), conn.port or int(params.get("port") or 5432)
    if not host or host.startswith("/"):
        return f"socket {host or 'default'}:{port}"
    try:
        addresses = sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
    except OSError:
        return f"address {host.lower()}:{port}"
    if all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses):
        return f"address loopback:{port}"
    return f"address {addresses[0]}:{port}"


class SnapshotCounter:
    """Exact row counts in the snapshot that pg_dump reads (`pg_dump --snapshot=<id>`).

    A read-only REPEATABLE READ transaction exports its snapshot; pg_dump imports it, and
    the tables are counted on a thread in the same transaction while the dump streams. The
    transaction stays open until `counts()` returns, which pg_dump needs while it starts.
    """

    def __init__(self, conn: ConnInfo):
        import psycopg

        self._db = connect(conn)
        self._db.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self._db.read_only = True
        self.snapshot_id = self._db.execute("SELECT pg_export_snapshot()").fetchone()[0]
        self._result: dict[str, int] | None = None
        self._thread = threading.Thread(target=self._count, name="row-counts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _count(self) -> None:
        import psycopg

        try:
            # A savepoint: a failed count must not end the transaction whose snapshot pg_dump uses.
            with self._db.transaction():
                self._result = count_table_rows(self._db)
        except psycopg.Error as exc:
            log.warning("row counts not taken: %s", exc)  # a check for verify, never a reason to fail

    def counts(self) -> dict[str, int] | None:
        """Wait for the counts (None if they could not be taken) and end the transaction."""
        if self._thread.ident is not None:  # started
            self._thread.join()
        self._db.close()
        return self._result


class LockWatchdog:
    """Cancels a restore that waits on another session's lock for longer than `timeout` seconds.

    pg_restore and dump scripts start with `SET lock_timeout = 0`, so PostgreSQL's own
    setting cannot bound the wait; this thread watches the restore's session (found by its
    application_name) in pg_stat_activity instead. Cancelling rolls the single transaction back.
    """

    def __init__(self, conn: ConnInfo, application_name: str, timeout: float, interval: float = 0.5):
        self.blocked_by: str | None = None
        self._conn, self._name, self._timeout, self._interval = conn, application_name, timeout, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="restore-lock-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        import psycopg

        try:
            with connect(self._conn, autocommit=True) as db:
                while not self._stop.wait(self._interval):
                    row = db.execute(WAITING_ON_LOCK_SQL, (self._name, self._timeout)).fetchone()
                    if row:
                        pid, blockers = row
                        self.blocked_by = blockers or "unknown sessions"
                        db.execute("SELECT pg_cancel_backend(%s)", (pid,))
                        return
        except psycopg.Error as exc:  # the restore still runs; it just may wait for a lock
            log.warning("restore lock watchdog stopped: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class DumpProcess:
    """A running pg_dump: read `stdout`, then call `finish()`."""

    def __init__(self, popen: subprocess.Popen, stderr_file):
        self._popen = track(popen)
        self._stderr = stderr_file
        self.stdout = popen.stdout
        self.pid = popen.pid

    def finish(self) -> None:
        """Wait for pg_dump; raise DumpFailed with its own message if it failed."""
        self.stdout.close()
        code = self._popen.wait()
        message = read_stderr(self._stderr)
        if code < 0:
            raise DumpFailed(f"pg_dump was killed by signal {-code}" + (f": {message}" if message else ""))
        if code != 0:
            raise DumpFailed(message or f"pg_dump exited with code {code}")

    def kill(self) -> None:
        """Stop pg_dump (used when the pipeline itself fails)."""
        if self._popen.poll() is None:
            self._popen.kill()
        self._popen.wait()
        self.stdout.close()
        self._stderr.close()


def wait_reporting(popen: subprocess.Popen, waiting: Callable[[], None] | None, every: float = 1) -> int:
    """Wait for a process, calling `waiting()` every `every` seconds until it ends; its exit code."""
    while True:
        try:
            return popen.wait(timeout=every)
        except subprocess.TimeoutExpired:
            if waiting:
                waiting()


def major(version: str) -> int:
    return int(version.split(".")[0])


def close_quietly(pipe) -> None:
    with contextlib.suppress(BrokenPipeError):
        pipe.close()


def read_stderr(stderr_file) -> str:
    stderr_file.seek(0)
    text = stderr_file.read().decode("utf-8", "replace").strip()
    stderr_file.close()
    return text


class PgClient:
    """pg_dump, pg_restore and psql of one PostgreSQL version, all from `bin_dir`.

    Which version a job runs is chosen by `pgtools.PgTools`.
    """

    def __init__(self, bin_dir: str, version: str):
        self.bin_dir = bin_dir
        self.version = version

    @property
    def major(self) -> int:
        return major(self.version)

    def __repr__(self) -> str:
        return f"PgClient({self.bin_dir!r}, {self.version!r})"

    def describe(self) -> str:
        """'15.18 in /usr/lib/postgresql/15/bin', for messages."""
        return f"{self.version} in {self.bin_dir}"

    @cached_property
    def requires_auth(self) -> bool:
        """Whether the libpq these programs use honours PGREQUIREAUTH (libpq 16+; an older one,
        such as Debian 12's libpq5 15 under its pg_dump 15, ignores it and would answer a server's
        request for the password in clear text). Asked once: a libpq that knows the setting
        refuses an invalid value before it tries to connect (here to an empty socket folder)."""
        with tempfile.TemporaryDirectory() as nowhere:
            result = subprocess.run([self.program("pg_dump"), "--no-password"], capture_output=True, text=True,
                                    check=False, stdin=subprocess.DEVNULL,
                                    env={"PGREQUIREAUTH": "probe", "PGHOST": nowhere})
        return "require_auth" in result.stderr

    @property
    def restricts(self) -> bool:
        """Whether this psql has `\\restrict` (the August 2025 releases: 13.22, 14.19, 15.14, 16.10,
        17.6, and 18), which refuses every later meta-command of a script."""
        major_minor = tuple(int(part) for part in self.version.split(".")[:2])
        return major_minor >= (18,) or major_minor >= RESTRICT_SINCE.get(major_minor[0], (99,))

    def program(self, name: str) -> str:
        """Absolute path of a client program of this version."""
        found = shutil.which(name, path=self.bin_dir)
        if not found:
            raise ConfigurationError(f"{name} not found in {self.bin_dir}; install postgresql-client")
        return found

    def dump(self, conn: ConnInfo, fmt: str = "custom", options: list[str] = ()) -> DumpProcess:
        """Start pg_dump writing the whole database to its stdout; for `globals`, pg_dumpall writing
        the server's roles, memberships and tablespaces (`--globals-only`), connected to `conn`'s database."""
        if fmt == GLOBALS:
            args = [self.program("pg_dumpall"), "--globals-only", "--no-password",
                    f"--database={conn.dbname}", *options]
        elif fmt not in FORMATS:
            raise ConfigurationError(f"unknown dump format {fmt!r}; use one of {', '.join(FORMATS)}")
        else:
            args = [self.program("pg_dump"), f"--format={fmt}", "--no-password", *options]
        if fmt == "plain":
            args += ["--clean", "--if-exists"]
        stderr = tempfile.TemporaryFile()
        popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=stderr, env=child_env(conn.env()))
        return DumpProcess(popen, stderr)

    def restore(self, conn: ConnInfo, source: BinaryIO, fmt: str, *, in_place: bool = False, jobs: int = 1,
                lock_timeout: float = 60, progress: Callable[[int], None] | None = None,
                no_owner: bool = False) -> None:
        """Restore a dump read from `source` into `conn`'s database.

        Into a new, empty database (the default): pg_restore without `--clean`; with `jobs` > 1
        it reads `source` itself (a custom archive in a file it can seek, opened by the caller
        and read through /proc/self/fd, so the bytes restored are those the caller checked) and
        restores `jobs` tables at a time, telling `progress` every second the bytes its processes
        have read (the file, and a little from the server) so far. The caller
        drops the database if this fails.

        `in_place`: over the objects the database holds (`--clean --if-exists`) in one
        transaction, so a failure changes nothing. A restore that waits more than
        `lock_timeout` seconds for another session's lock (a table that `--clean` must drop)
        is cancelled and rolled back instead of hanging.

        A plain script goes to psql through a GuardedScript: a psql meta-command in it (which
        would run on this machine) stops the restore with UnsafeScript, and a psql that has
        `\\restrict` is also told to refuse any.
        `no_owner` (an archive only): the objects are owned by the restoring role and their grants
        left out (`--no-owner --no-acl`).

        Raises RestoreFailed with the server's message on any error. If reading `source`
        fails (a damaged or undecryptable backup), pg_restore is killed before it can
        commit and that error propagates.
        """
        if fmt == "plain":
            args = [self.program("psql"), "--no-password", "--quiet", "--no-psqlrc",
                    "--set=ON_ERROR_STOP=1", "--single-transaction", "--file=-"]
            source = GuardedScript(source, secrets.token_hex(16) if self.restricts else None)
        else:
            # As a conninfo string: a database name with "=" in it (or a URL) is never read as one.
            args = [self.program("pg_restore"), "--no-password", "--exit-on-error",
                    f"--dbname=dbname={conninfo_value(conn.dbname)}"]
            args += ["--single-transaction", "--clean", "--if-exists"] if in_place else []
            args += ["--no-owner", "--no-acl"] if no_owner else []
        env = child_env(conn.env())
        env["PGAPPNAME"] = f"backup_app restore {secrets.token_hex(6)}"
        stderr = tempfile.TemporaryFile()
        if jobs > 1 and fmt != "plain" and not in_place:
            args += [f"--jobs={jobs}", f"/proc/self/fd/{source.fileno()}"]
            popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                     env=env, pass_fds=(source.fileno(),))
            track(popen)
            waiting = (lambda: progress(bytes_read(popen.pid))) if progress else None
            self._check_restored(args, wait_reporting(popen, waiting), read_stderr(stderr))
            return
        popen = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=stderr, env=env)
        track(popen)
        watchdog = LockWatchdog(conn, env["PGAPPNAME"], lock_timeout) if in_place else None
        try:
            while chunk := source.read(CHUNK_SIZE):
                popen.stdin.write(chunk)
        except BrokenPipeError:
            pass  # it stopped reading: it failed, and its exit code and message say why
        except BaseException:
            # Kill before closing stdin: at end of input psql would commit what it has read.
            popen.kill()
            popen.wait()
            if watchdog:
                watchdog.stop()
            close_quietly(popen.stdin)
            stderr.close()
            raise
        close_quietly(popen.stdin)
        code = popen.wait()
        if watchdog:
            watchdog.stop()
            if watchdog.blocked_by:
                stderr.close()
                raise RestoreFailed(
                    f"the restore waited more than {lock_timeout:g} s for locks held by other sessions "
                    f"({watchdog.blocked_by}) and was cancelled; nothing was changed")
        self._check_restored(args, code, read_stderr(stderr))

    def read_archive(self, source: BinaryIO, *, list_only: bool) -> str:
        """Feed a custom or tar archive to pg_restore, which connects to nothing: `list_only`, its
        table of contents (returned); else all of it, as a script into /dev/null, so that every
        data block is read. RestoreFailed with pg_restore's message when it cannot."""
        args = [self.program("pg_restore"), "--list" if list_only else "--file=/dev/null"]
        with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
            popen = track(subprocess.Popen(args, stdin=subprocess.PIPE, stdout=stdout, stderr=stderr,
                                           env=child_env()))
            try:
                while chunk := source.read(CHUNK_SIZE):
                    popen.stdin.write(chunk)
            except BrokenPipeError:
                pass  # it has read what it needs (a table of contents), or failed
            except BaseException:
                popen.kill()
                popen.wait()
                raise
            finally:
                close_quietly(popen.stdin)
            self._check_restored(args, popen.wait(), read_stderr(stderr))
            stdout.seek(0)
            return stdout.read(65536).decode("utf-8", "replace")  # its header is all a caller reads

    def archive_schema(self, source: BinaryIO) -> BinaryIO:
        """The SQL `pg_restore --schema-only` prints for the archive read from `source` (it connects
        nowhere, and stops reading once it has the archive's table of contents), in a temporary file
        opened at its start; RestoreFailed with pg_restore's message if it is no archive."""
        stderr, output = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        popen = track(subprocess.Popen([self.program("pg_restore"), "--schema-only", "--file=-"],
                                       stdin=subprocess.PIPE, stdout=output, stderr=stderr, env=child_env()))
        try:
            while chunk := source.read(CHUNK_SIZE):
                popen.stdin.write(chunk)
        except BrokenPipeError:
            pass  # it has read what it needs (or failed: its exit code says so)
        except BaseException:
            popen.kill()
            popen.wait()
            output.close()
            stderr.close()
            raise
        finally:
            close_quietly(popen.stdin)
        code = popen.wait()
        try:
            self._check_restored(["pg_restore"], code, read_stderr(stderr))
        except RestoreFailed:
            output.close()
            raise
        output.seek(0)
        return output

    @staticmethod
    def _check_restored(args: list[str], code: int, message: str) -> None:
        if code != 0:
            raise RestoreFailed(message or f"{Path(args[0]).name} exited with code {code}")

    def table_row_counts(self, conn: ConnInfo) -> dict[str, int]:
        """Exact row count of every user table of `conn`'s database, keyed `schema.table`."""
        import psycopg

        try:
            with connect(conn) as db:
                return count_table_rows(db)
        except psycopg.Error as exc:
            raise RestoreFailed(f"counting the restored rows failed: {exc}") from exc

    def server_version(self, conn: ConnInfo) -> str:
        """The server's version, e.g. '15.18'."""
        return self.query(conn, "SHOW server_version").split()[0]

    def globals_sql(self, conn: ConnInfo, options: list[str] = ()) -> str:
        """What pg_dumpall --globals-only prints for `conn`'s server; DumpFailed with its error."""
        return self._run([self.program("pg_dumpall"), "--globals-only", "--no-password",
                          f"--database={conn.dbname}", *options], conn, DumpFailed)

    def can_read_passwords(self, conn: ConnInfo) -> bool:
        """Whether `conn`'s role may read the roles' password hashes (pg_authid), which pg_dumpall
        needs unless told --no-role-passwords."""
        return self.query(conn, "SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT')") == "t"

    def query(self, conn: ConnInfo, sql: str) -> str:
        """What psql prints for `sql` (unaligned, tuples only); DumpFailed with psql's error."""
        return self._run([self.program("psql"), "--no-password", "--no-psqlrc", "--tuples-only",
                          "--no-align", f"--command={sql}"], conn, DumpFailed).strip()

    def _run(self, args: list[str], conn: ConnInfo, error: type[Exception]) -> str:
        popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=child_env(conn.env()))
        stdout, stderr = track(popen).communicate()
        if popen.returncode != 0:
            name = Path(args[0]).name
            raise error(stderr.strip() or f"{name} exited with code {popen.returncode}")
        return stdout
