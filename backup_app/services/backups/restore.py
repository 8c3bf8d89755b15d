"""Restore a backup without putting the current data at risk.

Into a database that exists, the backup is restored into a new database beside it, made like
it (owner, encoding, locale, settings, grants); only when that restore and its row counts
have succeeded are the current database's sessions ended and the two swapped by renaming. The
previous database is kept as `<name>_before_restore_<UTC time>` (or dropped, when asked), so
the target holds exactly what the backup holds and nothing is lost. Into a database that does
not exist, it is created and restored. `in_place` is the old way, for a role that may not
create databases: `pg_restore --clean --if-exists` over the current objects, in one transaction.
"""
from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, BinaryIO

from sqlalchemy.orm import Session

from backup_app.adapters.local import LocalStorage
from backup_app.adapters.pgtools import PgTools
from backup_app.adapters.postgres import PgClient
from backup_app.adapters.store import Stores
from backup_app.core import codecs
from backup_app.core.conninfo import ConnInfo, identifier_bytes
from backup_app.core.crypto import MasterKey
from backup_app.core.streams import CountingReader, Progress
from backup_app.errors import BackupError, ConfigurationError, HostNotAllowed, RestoreFailed
from backup_app.models import GLOBALS, BackupFile, utcnow
from backup_app.services.allowed_hosts import host_key
from backup_app.services.backups.copies import decoding_key, open_checked_copy
from backup_app.services.backups.queries import get_completed_backup
from backup_app.services.backups.restore_roles import ReadGlobals, check_no_owner, ensure_roles, globals_reader

if TYPE_CHECKING:
    from backup_app.adapters.databases import DatabaseServer, DatabaseShape

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestoreOptions:
    """How to restore: `in_place` (the old way), `drop_previous` once swapped, and how many
    pg_restore jobs may run at once (used when pg_restore can read the stored file itself)."""

    in_place: bool = False
    drop_previous: bool = False
    jobs: int = 1
    new_database: bool = False  # a restore by name: the database must not exist
    # What the database was like when it was backed up (a set's): a missing one is created like it.
    database_shape: dict | None = None
    create_roles: bool = False  # the roles the dump needs and the server lacks are created from globals
    no_owner: bool = False  # objects owned by the restoring role, grants left out (an archive only)


@dataclass(frozen=True)
class Restored:
    """Where a backup went: the database, where the data it replaced is kept (None: nowhere,
    it did not exist, was restored in place or dropped), how the swap went, and what did not
    work out once the target held the backup (the restore itself succeeded)."""

    backup_id: str
    database: str
    previous_database: str | None = None
    swap_seconds: float | None = None
    sessions_ended: int = 0
    warnings: tuple[str, ...] = ()
    roles_created: tuple[str, ...] = ()


class SwapImpossible(RestoreFailed):
    """The role cannot build a database beside the target and swap it in; `--in-place` still works."""

    def __init__(self, database: str, problems: list[str]):
        super().__init__(f"cannot restore beside {database} and swap: {'; '.join(problems)}. Restore with "
                         "--in-place instead (replaces the objects in place, in one transaction)")


def server_hosts(conn: ConnInfo) -> list[str]:
    """The hosts libpq would try for `conn` (a `host` URL parameter wins; no host: this machine)."""
    hosts = dict(conn.params).get("host") or conn.host or "localhost"
    return [host_key(host) for host in hosts.split(",")]


def check_restore_host(conn: ConnInfo, target_hosts: Iterable[str | None], allowed: Iterable[str]) -> None:
    """Refuse (HostNotAllowed) a restore into a host that no target names (`target_hosts`) and
    RESTORE_ALLOWED_HOSTS (`allowed`) does not list: whoever may restore must not be able to make
    the app connect, and write, anywhere. Hosts are compared as written (`localhost` is not `127.0.0.1`)."""
    permitted = {host_key(host or "localhost") for host in target_hosts} | {host_key(host) for host in allowed}
    refused = [host for host in server_hosts(conn) if host not in permitted]
    if refused:
        raise HostNotAllowed(f"cannot restore into {', '.join(refused)}: a restore may only go to a host that a "
                             "target names or RESTORE_ALLOWED_HOSTS lists")


def check_new_database(server: DatabaseServer, own: str, name: str) -> None:
    """ConfigurationError unless `name` can be made as a new database on `server`, beside its
    target's own database `own` (a restore by name never replaces a database)."""
    if not name or "\x00" in name or len(name.encode()) > 63:
        raise ConfigurationError(f"{name!r} cannot be a database name: give 1 to 63 bytes")
    if name == own:
        raise ConfigurationError(f"{name} is the target's own database: a restore into it replaces it (the swap); "
                                 "give the name of a new database, or restore into its own database instead")
    if server.exists(name):
        raise ConfigurationError(f"a database {name} already exists on {server.conn.with_dbname('').display()}: "
                                 "give a new name (a restore by name never replaces a database)")


def describe_restore(database: str, *, in_place: bool = False, drop_previous: bool = False,
                     keep_hours: int = 24, new_database: bool = False) -> str:
    """What a restore into `database` will do, said before anything runs (the CLI's question, the page)."""
    if new_database:
        return f"The backup is restored into the new database {database}; no other database changes."
    if in_place:
        return (f"The objects of {database} that the backup contains are replaced in place, in one transaction "
                "(pg_restore --clean): objects made since the backup stay, and a failure changes nothing.")
    if drop_previous:
        kept = f"the current {database} is then dropped"
    else:
        kept = (f"the current {database} is then kept as {side_name(database, '_before_restore_')}<UTC time>"
                + (f" (dropped after {keep_hours} h)" if keep_hours > 0 else ""))
    return (f"The backup is restored into a new database beside {database} first; only when that has succeeded "
            f"are the sessions connected to {database} ended and the two swapped, and {kept}. "
            f"If {database} does not exist, it is created.")


def restore_backup(session: Session, backup_id: str, conn: ConnInfo, local: LocalStorage,
                   stores: Stores, pg: PgTools, *, key: MasterKey | None = None,
                   options: RestoreOptions = RestoreOptions(), progress: Progress | None = None,
                   report: Callable[[str], None] | None = None, source: ConnInfo | None = None) -> Restored:
    """Restore a backup into `conn`'s database (see the module's docstring). `source` is the server it
    was backed up from (its roles are read there for --create-roles when it has no globals backup yet).

    Uses the local file when it is intact, else the first intact S3 copy (saved locally again).
    Whatever can be checked before anything is fetched is: the decryption key, a client that
    fits the dump and the server (VersionMismatch), and for a swap the role's rights
    (SwapImpossible, naming `--in-place`). A failure leaves the current database as it was and
    drops what was half built. `report(line)` is told each step once the file is ready.
    """
    backup = get_completed_backup(session, backup_id)
    file = backup.file()
    session.commit()  # what follows asks the target server: no catalog transaction waits on it
    return restore_file(file, lambda: open_checked_copy(session, backup, local, stores, progress), conn, pg,
                        key=key, options=options, progress=progress, report=report,
                        read_globals=globals_reader(session, file.database, local, stores, key,
                                                    (lambda: pg.globals_sql(source)) if source else None, report))


def restore_file(file: BackupFile, open_stored: Callable[[], BinaryIO], conn: ConnInfo, pg: PgTools, *,
                 key: MasterKey | None = None, options: RestoreOptions = RestoreOptions(),
                 progress: Progress | None = None, report: Callable[[str], None] | None = None,
                 read_globals: ReadGlobals | None = None) -> Restored:
    """Restore the dump `open_stored()` opens (described by `file`) into `conn`'s database, as
    restore_backup does; the key, the client and the swap are checked before it is opened, and
    it is closed when done. Then, before anything is written, the roles the dump needs: the
    server lacking one is MissingRoles, unless `options.create_roles` (they are made from
    `read_globals()`, the SQL of a globals backup) or `options.no_owner`."""
    report = report or (lambda _line: None)
    if file.format == GLOBALS:
        raise ConfigurationError(f"backup {file.id} holds a server's roles (pg_dumpall --globals-only), not a database: "
                                 "restore its set (flask backup restore-set) or a database's backup with --create-roles")
    if options.no_owner:
        check_no_owner(file)
    decoding_key(file, key)
    client = pg.for_restore(conn, file.client_version)
    server = pg.databases(conn)
    exists = server.exists(conn.dbname)
    if exists and options.new_database:
        raise RestoreFailed(f"a database {conn.dbname} exists now (made since the restore was asked for): a restore "
                            "by name never replaces a database")
    if exists and not options.in_place:
        problems = server.swap_problems(conn.dbname)
        if problems:
            raise SwapImpossible(conn.dbname, problems)
    with open_stored() as stored:
        roles = ensure_roles(file, stored, client, server, key, create=options.create_roles,
                             no_owner=options.no_owner, read_globals=read_globals, report=report)
        load = Loader(file, stored, client, key, pg.lock_timeout, progress, no_owner=options.no_owner)
        if options.in_place:
            report(f"restoring into {conn.display()} in place")
            restored = restore_in_place(server, conn, load, exists)
        elif not exists:
            jobs = load.parallel(options.jobs)
            report(f"restoring into the new database {conn.dbname} ({jobs} pg_restore jobs)")
            restored = restore_new(server, conn, load, jobs, report, shape_on(server, options.database_shape))
        else:
            restored = restore_beside_and_swap(server, conn, load, load.parallel(options.jobs), options.drop_previous,
                                               report)
    if roles is None:
        return restored
    return replace(restored, roles_created=tuple(roles.created),
                   warnings=tuple(f"not run from the globals backup: {item}" for item in roles.skipped)
                   + restored.warnings)


class Loader:
    """Feeds one checked, opened backup file to pg_restore (or psql): decoded on the way, or read
    by pg_restore itself when it is a bare archive restored with several jobs."""

    def __init__(self, file: BackupFile, stored: BinaryIO, client: PgClient, key: MasterKey | None,
                 lock_timeout: float, progress: Progress | None, *, no_owner: bool = False):
        self.file, self.stored, self.client = file, stored, client
        self.key, self.lock_timeout, self.progress = key, lock_timeout, progress
        self.no_owner = no_owner  # pg_restore --no-owner --no-acl

    def parallel(self, jobs: int) -> int:
        """How many jobs pg_restore can run: `jobs` when it can read the stored file itself, else 1."""
        return jobs if codecs.is_bare_archive(self.file.format, self.file.codec, self.file.encrypted) else 1

    def __call__(self, conn: ConnInfo, *, in_place: bool = False, jobs: int = 1) -> None:
        if jobs > 1:  # pg_restore reads the file itself: what its processes read is the progress
            size = self.file.size_bytes or 0
            read = (lambda nbytes: self.progress(min(nbytes, size))) if self.progress and size else None
            self.client.restore(conn, self.stored, self.file.format, jobs=jobs, progress=read, no_owner=self.no_owner)
            return
        counted = CountingReader(self.stored, self.progress) if self.progress else self.stored
        source = codecs.decode(counted, self.file.format, self.file.codec, decoding_key(self.file, self.key))
        self.client.restore(conn, source, self.file.format, in_place=in_place, lock_timeout=self.lock_timeout,
                            no_owner=self.no_owner)

    def into_new_database(self, server: DatabaseServer, conn: ConnInfo, make: Callable[[], None], jobs: int,
                          report: Callable[[str], None]) -> None:
        """Make the database `conn` names (`make()`) and restore into it. Parallel jobs of pg_restore
        can deadlock on each other (one attaching a partition's index while another reads the
        partition): the database is then made again and restored with one job."""
        make()
        try:
            self(conn, jobs=jobs)
        except RestoreFailed as exc:
            if jobs == 1 or "deadlock detected" not in str(exc):
                raise
            report(f"pg_restore's {jobs} jobs deadlocked on each other; restoring again with one job")
            server.drop(conn.dbname)
            make()
            self.stored.seek(0)
            self(conn, jobs=1)

    def check_rows(self, conn: ConnInfo) -> None:
        """RestoreFailed unless every table has the rows counted when the backup was made."""
        problems = compare_counts(self.file.row_counts, self.client.table_row_counts(conn))
        if problems:
            raise RestoreFailed(f"the restored rows differ from the backup's: {'; '.join(problems)}")


def compare_counts(expected: dict[str, int] | None, restored: dict[str, int]) -> list[str]:
    """Differences between the rows counted at backup time and those restored."""
    if not expected:
        return []
    return [f"{table}: {expected.get(table, 'absent')} rows at backup time, {restored.get(table, 'absent')} restored"
            for table in sorted(set(expected) | set(restored)) if expected.get(table) != restored.get(table)]


def restore_in_place(server: DatabaseServer, conn: ConnInfo, load: Loader, exists: bool) -> Restored:
    """`--clean --if-exists` over the current objects in one transaction (a missing database is created)."""
    created = not exists
    if created:
        server.create(conn.dbname)
    try:
        load(conn, in_place=True)
    except BaseException:
        if created:
            drop_quietly(server, conn.dbname)
        raise
    return Restored(load.file.id, conn.dbname)


def restore_new(server: DatabaseServer, conn: ConnInfo, load: Loader, jobs: int,
                report: Callable[[str], None], like: DatabaseShape | None = None) -> Restored:
    """Create the database (like `like`: owner, locale, settings, grants) and restore into it; on any
    failure it is dropped again."""
    try:
        load.into_new_database(server, conn, lambda: server.create(conn.dbname, like=like), jobs, report)
        load.check_rows(conn)
        if like is not None:
            server.give_shape(conn.dbname, like)
    except BaseException:
        drop_quietly(server, conn.dbname)
        raise
    return Restored(load.file.id, conn.dbname)


def shape_on(server: DatabaseServer, recorded: dict | None) -> DatabaseShape | None:
    """The recorded shape of a backed-up database, as a database on `server` can have it: in the default
    tablespace when `server` lacks the one it was in."""
    if recorded is None:
        return None
    from backup_app.adapters.databases import DatabaseShape

    shape = DatabaseShape(**{**recorded, "settings": tuple(map(tuple, recorded["settings"])),
                             "grants": None if recorded["grants"] is None else tuple(map(tuple, recorded["grants"]))})
    if shape.tablespace != "pg_default" and not server.has_tablespace(shape.tablespace):
        shape = replace(shape, tablespace="pg_default")
    return shape


def restore_beside_and_swap(server: DatabaseServer, conn: ConnInfo, load: Loader, jobs: int,
                            drop_previous: bool, report: Callable[[str], None]) -> Restored:
    """Restore into a new database made like the current one, check it, give it the current one's
    settings and grants, then swap the two."""
    current = conn.dbname
    building = side_name(current, f"_restoring_{secrets.token_hex(3)}")
    report(f"restoring into {building} beside {current} ({jobs} pg_restore jobs)")
    like = server.shape(current)
    try:
        load.into_new_database(server, conn.with_dbname(building), lambda: server.create(building, like=like), jobs,
                               report)
        load.check_rows(conn.with_dbname(building))
        shape = server.shape(current)  # as it is now: it may have changed during a long restore
        server.give_shape(building, shape)
        previous = free_name(server, side_name(current, f"_before_restore_{utcnow():%Y%m%dT%H%M%S}"))
        report(f"swapping: ending the sessions on {current}, renaming it {previous} and {building} {current}")
        swap = server.swap(current, building, previous, shape.allow_connections)
    except BaseException:
        drop_quietly(server, building)
        raise
    report(f"swapped in: {current} was unavailable for {swap.seconds:.3f} s ({swap.sessions_ended} session(s) "
           f"ended); what it held is in {previous}")
    warnings = list(swap.warnings)
    try:
        slots = server.logical_slots(previous)
        subscriptions = [sub for sub, enabled in server.subscriptions(current) if not enabled]
    except BackupError as exc:  # the restore itself succeeded
        slots, subscriptions = [], []
        warnings.append(f"the replication slots and subscriptions could not be listed after the swap: {exc}")
    kept = previous
    if drop_previous:
        try:
            server.drop(previous)
        except BackupError as exc:  # the restore itself succeeded: keep the previous one, and say so
            warnings.append(f"{previous} was kept: dropping it failed: {exc}")
        else:
            kept = None
    warnings += replication_warnings(current, previous, kept is not None, swap.subscriptions_disabled,
                                     subscriptions, slots)
    previous = kept
    for warning in warnings:
        report(f"warning: {warning}")
    return Restored(load.file.id, current, previous, swap.seconds, swap.sessions_ended, tuple(warnings))


def replication_warnings(current: str, previous: str, kept: bool, disabled: Iterable[str],
                         restored: Iterable[str], slots: Iterable[str]) -> list[str]:
    """What a swap did to logical replication, said once the restored database is in place: the
    subscriptions disabled to end their apply workers (`kept`: the previous database was not
    dropped), the restored ones (disabled, as pg_dump leaves them: enabled, they would apply from
    where the replaced database had got to, missing what came between), and the slots that stayed
    with the previous database."""
    disabled, restored, slots = ", ".join(disabled), ", ".join(restored), ", ".join(slots)
    warnings = []
    if disabled:
        warnings.append(f"the subscriptions {disabled} of {current} were disabled to end their apply workers for "
                        f"the swap; " + (f"they stay disabled in {previous}" if kept else f"{previous} was dropped"))
    if restored:
        warnings.append(f"the restored {current} has the subscriptions {restored}, disabled as pg_dump leaves them: "
                        "to apply its publishers' changes again, ALTER SUBSCRIPTION … ENABLE and … REFRESH "
                        "PUBLICATION (it goes on from where the replaced database had got to: what that applied "
                        "since the backup is not in it)")
    if slots:
        warnings.append(f"the logical replication slots {slots} belong to {previous}, not to {current}: their "
                        f"subscribers find no slot in {current}; " + (
                            "drop them (pg_drop_replication_slot) if unused, they hold WAL on the server" if kept
                            else f"they were dropped with {previous}"))
    return warnings


def side_name(database: str, suffix: str) -> str:
    """`<database><suffix>` within PostgreSQL's 63-byte limit (the database's part cut)."""
    return identifier_bytes(database, 63 - len(suffix.encode())) + suffix


def free_name(server: DatabaseServer, name: str) -> str:
    """`name`, or `name_2`, `name_3` … if a database already has it."""
    candidate, n = name, 1
    while server.exists(candidate):
        n += 1
        candidate = side_name(name, f"_{n}")
    return candidate


def drop_quietly(server: DatabaseServer, name: str) -> None:
    """Drop a half-built database; a failure is logged, never raised over the restore's own error."""
    try:
        server.drop(name)
    except Exception:  # noqa: BLE001
        log.exception("could not drop the half-built database %s: drop it by hand", name)
