"""The physical side of PostgreSQL: pg_receivewal, pg_basebackup, pg_combinebackup,
pg_verifybackup and a restored server's pg_ctl, run as subprocesses with argument lists;
the server-side checks and the replication slot through psycopg (imported when used).

Passwords travel in PGPASSWORD, never on a command line. Server programs (pg_ctl, postgres)
refuse to run as root: as root they run as `os_user` (PITR_OS_USER).
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from backup_app.adapters.environment import child_env
from backup_app.adapters.postgres import DumpProcess, PgClient, connect, major, read_stderr
from backup_app.core.conninfo import ConnInfo
from backup_app.errors import ConfigurationError, PitrError


def slot_name(target: str) -> str:
    """The replication slot of a target: `backup_app_<name>`, in the characters slots allow."""
    return ("backup_app_" + re.sub(r"[^a-z0-9_]", "_", target.lower()))[:63]


@dataclass
class ServerFacts:
    """What `flask pitr enable` checks on the target's server."""

    version: str
    version_num: int
    wal_level: str
    max_wal_senders: int
    max_replication_slots: int
    wal_segment_size: int
    summarize_wal: bool
    can_replicate: bool
    tablespaces: list[str]
    max_slot_wal_keep_size: str
    slot_exists: bool


FACTS_SQL = """
SELECT current_setting('server_version'), current_setting('server_version_num')::int,
       current_setting('wal_level'), current_setting('max_wal_senders')::int,
       current_setting('max_replication_slots')::int,
       pg_size_bytes(current_setting('wal_segment_size')),
       coalesce(current_setting('summarize_wal', true), 'off') = 'on',
       (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),
       ARRAY(SELECT spcname::text FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')),
       current_setting('max_slot_wal_keep_size'),
       EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)
"""


def server_facts(conn: ConnInfo, slot: str) -> ServerFacts:
    """The settings PITR needs, asked of the target's server."""
    import psycopg

    try:
        with connect(conn) as db:
            return ServerFacts(*db.execute(FACTS_SQL, (slot,)).fetchone())
    except psycopg.Error as exc:
        raise PitrError(f"cannot ask the server {conn.display()}: {str(exc).strip()}") from exc


def drop_slot(conn: ConnInfo, slot: str) -> bool:
    """Drop the replication slot if it exists (and is not in use); True if it did."""
    import psycopg

    try:
        with connect(conn) as db:
            found = db.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                               "WHERE slot_name = %s", (slot,)).fetchall()
        return bool(found)
    except psycopg.Error as exc:
        raise PitrError(f"cannot drop the replication slot {slot}: {str(exc).strip()}") from exc


def server_clock(conn: ConnInfo) -> datetime:
    """The server's clock (`clock_timestamp()`): what the window's moments are measured on."""
    import psycopg

    try:
        with connect(conn, timeout=5) as db:
            return db.execute("SELECT clock_timestamp()").fetchone()[0].astimezone(timezone.utc)
    except psycopg.Error as exc:
        raise PitrError(f"cannot ask the server {conn.display()} for its clock: {str(exc).strip()}") from exc


def wal_positions(conn: ConnInfo, slot: str) -> tuple[datetime, str, str | None]:
    """(the server's clock, then its WAL insert position — every commit made before that moment
    is at or before it —, and the slot's flushed position or None)."""
    with connect(conn, timeout=5) as db:
        now, current = db.execute("SELECT clock_timestamp(), pg_current_wal_insert_lsn()::text").fetchone()
        row = db.execute("SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                         (slot,)).fetchone()
    return now, current, row[0] if row else None


def system_identifier(conn: ConnInfo) -> str:
    """The cluster's system identifier (initdb's, shared by its standbys; another cluster has another)."""
    import psycopg

    try:
        with connect(conn, timeout=5) as db:
            return db.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()[0]
    except psycopg.Error as exc:
        raise PitrError(f"cannot ask the server {conn.display()}: {str(exc).strip()}") from exc


def switch_wal(conn: ConnInfo) -> None:
    """Close the current segment (so what was written is in a completed one)."""
    with connect(conn) as db:
        db.execute("SELECT pg_switch_wal()")


# pg_control's record of the source's settings that recovery checks (pg_controldata's labels).
CONTROL_LIMITS = {
    "max_connections setting": "max_connections",
    "max_worker_processes setting": "max_worker_processes",
    "max_wal_senders setting": "max_wal_senders",
    "max_prepared_xacts setting": "max_prepared_transactions",
    "max_locks_per_xact setting": "max_locks_per_transaction",
}


class PhysicalClient:
    """The physical-backup programs of one PostgreSQL version (from a PgClient's folder)."""

    def __init__(self, client: PgClient):
        self.client = client
        self.bin_dir = client.bin_dir
        self.version = client.version

    @property
    def major(self) -> int:
        return major(self.version)

    def has(self, name: str) -> bool:
        return shutil.which(name, path=self.bin_dir) is not None

    def program(self, name: str) -> str:
        found = shutil.which(name, path=self.bin_dir)
        if not found:
            raise ConfigurationError(f"{name} not found in {self.bin_dir}; install PostgreSQL {self.major}'s "
                                     "client and server programs")
        return found

    def create_slot(self, conn: ConnInfo, slot: str, reserve: bool = True) -> None:
        """Create the physical slot if it is missing, reserving WAL from the last checkpoint
        (`reserve`; pg_receivewal --create-slot does not: it would then stream from the server's
        position of the moment it starts), then open a replication connection with it, so
        pg_hba.conf is checked too. A slot made here for a connection that is then refused is
        dropped again: it would keep WAL on the server for nobody."""
        import psycopg

        try:
            with connect(conn) as db:
                created = db.execute("SELECT pg_create_physical_replication_slot(%s, %s) WHERE NOT EXISTS "
                                     "(SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)",
                                     (slot, reserve, slot)).fetchone() is not None
        except psycopg.Error as exc:
            raise PitrError(replication_error(str(exc).strip(), conn)) from exc
        args = [self.program("pg_receivewal"), "--no-password", "--create-slot", "--if-not-exists",
                f"--slot={slot}", "--dbname", "replication=true"]
        result = subprocess.run(args, env=child_env(conn.env()), capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=60)
        if result.returncode != 0:
            if created:
                drop_slot(conn, slot)
            raise PitrError(replication_error(result.stderr.strip(), conn))

    def receive_wal(self, conn: ConnInfo, slot: str, spool: Path, log_file) -> subprocess.Popen:
        """Start pg_receivewal streaming into `spool` through `slot`, flushing each write
        (`--synchronous`), so the slot's position is what is on disk."""
        args = [self.program("pg_receivewal"), "--no-password", "--no-loop", "--synchronous",
                f"--slot={slot}", "-D", str(spool), "--status-interval=5", "--dbname", "replication=true"]
        # SIGTERM when the worker dies, so no orphan keeps the slot busy (util-linux's setpriv).
        prefix = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []
        return subprocess.Popen([*prefix, *args], env=child_env(conn.env()), stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT)

    def base_backup(self, conn: ConnInfo, incremental_manifest: Path | None = None) -> BaseBackupProcess:
        """Start pg_basebackup writing one tar of the server (no WAL: the archive has it) to stdout."""
        args = [self.program("pg_basebackup"), "--no-password", "-D", "-", "-F", "t", "-X", "none",
                "-c", "fast", "--dbname", "replication=true"]
        if incremental_manifest is not None:
            args.append(f"--incremental={incremental_manifest}")
        stderr = tempfile.TemporaryFile()
        popen = subprocess.Popen(args, env=child_env(conn.env()), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=stderr)
        return BaseBackupProcess(popen, stderr, conn)

    def combine(self, backups: list[Path], output: Path) -> None:
        """pg_combinebackup a full backup and its incrementals into `output`."""
        self._run([self.program("pg_combinebackup"), *map(str, backups), "-o", str(output)], "pg_combinebackup")

    def verify(self, data_dir: Path) -> str | None:
        """pg_verifybackup's complaint about an extracted backup (None: it checks out, or this
        client has no pg_verifybackup). WAL is checked at restore, not here (-n)."""
        if not self.has("pg_verifybackup"):
            return None
        result = subprocess.run([self.program("pg_verifybackup"), "-n", "-q", str(data_dir)], env=child_env(),
                                capture_output=True, text=True, stdin=subprocess.DEVNULL)
        return None if result.returncode == 0 else (result.stderr or result.stdout).strip()

    def control_data(self, data_dir: Path) -> dict[str, str]:
        """pg_controldata's fields of a data directory (its pg_control), by their English labels."""
        result = subprocess.run([self.program("pg_controldata"), str(data_dir)], env={**child_env(), "LC_ALL": "C"},
                                capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise PitrError(f"pg_controldata cannot read the restored files: {result.stderr.strip()}")
        return {label: value.strip() for label, _, value in
                (line.partition(":") for line in result.stdout.splitlines() if ":" in line)}

    def control_limits(self, data_dir: Path) -> dict[str, str]:
        """The limits a restored server needs at least as high as its source's had, read from the
        data directory's pg_control, never from the source's configuration."""
        found = self.control_data(data_dir)
        return {setting: found[label] for label, setting in CONTROL_LIMITS.items() if found.get(label, "").isdigit()}

    def _run(self, args: list[str], what: str) -> None:
        result = subprocess.run(args, env=child_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise PitrError(f"{what} failed: {(result.stderr or result.stdout).strip()}")


def replication_error(message: str, conn: ConnInfo) -> str:
    """pg_receivewal's or pg_basebackup's complaint, with what to change when it is pg_hba.conf."""
    if "pg_hba.conf" in message and "replication" in message:
        return (f"the server refuses replication connections from this machine: {message}. Add a line like "
                f"`host replication {conn.user or 'USER'} <this machine's address>/32 scram-sha-256` to "
                "pg_hba.conf and reload the server")
    if "must be superuser or replication role" in message or "permission denied to start WAL sender" in message:
        return (f"{message}: give the target's user the REPLICATION attribute "
                f"(ALTER ROLE {conn.user or 'USER'} REPLICATION)")
    return message or "the replication connection failed"


class BaseBackupProcess(DumpProcess):
    """A running pg_basebackup: read `stdout`, then call `finish()` (or `kill()`, as for pg_dump)."""

    def __init__(self, popen: subprocess.Popen, stderr_file, conn: ConnInfo):
        super().__init__(popen, stderr_file)
        self._conn = conn

    def finish(self) -> None:
        """Wait for it; PitrError with its message if it failed."""
        self.stdout.close()
        code = self._popen.wait()
        message = read_stderr(self._stderr)
        if code != 0:
            errors = "\n".join(line for line in message.splitlines() if "error" in line or "FATAL" in line)
            raise PitrError("pg_basebackup failed: " + replication_error(errors or message, self._conn))


def as_server_user(os_user: str) -> tuple[list[str], int | None, int | None]:
    """(the command prefix, uid, gid) that runs server programs as `os_user` when this process is
    root (PostgreSQL refuses root), else as ourselves."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        entry = pwd.getpwnam(os_user)
    except KeyError:
        raise ConfigurationError(f"PITR_OS_USER {os_user!r} is not a user on this machine; the restored "
                                 "server cannot run as root") from None
    prefix = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--"]
    return prefix, entry.pw_uid, entry.pw_gid


def check_reachable(data_dir: Path, os_user: str) -> None:
    """PitrError unless the server's user (when we are root) can walk down to `data_dir`."""
    _prefix, uid, gid = as_server_user(os_user)
    if uid is None:
        return
    groups = set(os.getgrouplist(os_user, gid))
    for folder in reversed(data_dir.parents):
        if not folder.exists():
            break
        found = folder.stat()
        bit = 0o100 if found.st_uid == uid else 0o010 if found.st_gid in groups else 0o001
        if not found.st_mode & bit:
            raise PitrError(f"the restored server runs as {os_user} (PITR_OS_USER), who cannot enter {folder}: "
                            f"choose a data directory {os_user} can reach, or allow it (chmod o+x {folder})")


class RestoredServer:
    """A server started on a restored data directory, listening on 127.0.0.1:`port` only."""

    def __init__(self, server: PhysicalClient, data_dir: Path, port: int, os_user: str):
        self.server, self.data_dir, self.port = server, data_dir, port
        self.prefix, self.uid, self.gid = as_server_user(os_user)
        self.log_file = data_dir / "log" / "pitr-restore.log"

    def chown(self) -> None:
        """Give the whole data directory to the server's user (when we are root); a link is
        changed itself, never what it points to."""
        if self.uid is None:
            return
        for root, dirs, files in os.walk(self.data_dir):
            for path in (root, *(os.path.join(root, name) for name in files)):
                os.chown(path, self.uid, self.gid, follow_symlinks=False)

    def pg_ctl(self, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, self.server.program("pg_ctl"), "-D", str(self.data_dir), *args],
                              env=child_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              cwd="/", timeout=timeout)

    def start(self) -> None:
        """Start it; PitrError with the server's log when it does not come up."""
        self.log_file.parent.mkdir(exist_ok=True)
        self.chown()
        result = self.pg_ctl("-l", str(self.log_file), "-w", "-t", "3600", "start")
        if result.returncode != 0:
            raise PitrError(f"the restored server did not start: {self.log_tail() or result.stderr.strip()}")

    def log(self) -> str:
        """The server's log. The server's user could have replaced it with a link (to /proc/self/environ,
        say): only a regular file is read, and never through a link."""
        try:
            fd = os.open(self.log_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return ""
        with open(fd, "rb") as log:
            if not stat.S_ISREG(os.fstat(log.fileno()).st_mode):
                return ""
            return log.read().decode(errors="replace")

    def log_tail(self, lines: int = 8) -> str:
        wanted = [line for line in self.log().splitlines() if re.search(r"FATAL|ERROR|PANIC", line)]
        return " | ".join((wanted or self.log().splitlines())[-lines:])

    def running(self) -> bool:
        return self.pg_ctl("status").returncode == 0

    def wait_promoted(self, timeout: float = 3600) -> None:
        """Wait until the server has left recovery (`pg_ctl -w` returns while it still replays), read
        from its pg_control: no session is opened on it, so none of its roles' settings, triggers or
        functions (the source's code) runs for it."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if not self.running():
                raise PitrError(f"the restored server stopped during recovery: {self.log_tail()}")
            state = self.server.control_data(self.data_dir).get("Database cluster state", "")
            if state == "in production":
                return
            time.sleep(0.2)
        raise PitrError(f"the restored server was still recovering after {timeout:.0f} s ({state})")

    def accepts_connections(self, dbname: str) -> bool:
        """Whether it accepts connections (pg_isready: a start-up packet, no session, no login)."""
        result = subprocess.run([self.server.program("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
                                 "-d", dbname, "-t", "10"], env=child_env(), stdin=subprocess.DEVNULL,
                                capture_output=True)
        return result.returncode == 0

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self.pg_ctl("-m", "fast", "-w", "stop", timeout=120)
