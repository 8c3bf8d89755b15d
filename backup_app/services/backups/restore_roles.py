"""The roles a restore needs, known before anything is written: the owners, grantees, policy roles
and user mappings its dump names (read from a plain dump's SQL, or from what `pg_restore
--schema-only` prints of an archive), and which of them the server lacks. Then, as asked: stop
naming them (MissingRoles), create them from the newest globals backup of the backup's target
(`create_roles`), or leave owners and grants out (`no_owner`: only the roles of policies and user
mappings are still needed).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app.adapters.local import LocalStorage
from backup_app.adapters.pgtools import PgTools
from backup_app.adapters.postgres import CHUNK_SIZE, PgClient
from backup_app.adapters.store import Stores
from backup_app.core import codecs
from backup_app.core.conninfo import ConnInfo
from backup_app.core.crypto import MasterKey
from backup_app.core.dumproles import required, roles_needed
from backup_app.core.sqltext import names, statements
from backup_app.errors import BackupError, ConfigurationError, MissingRoles, ObjectNotFound
from backup_app.models import COMPLETED, GLOBALS, Backup, BackupFile
from backup_app.services.backups.copies import decoding_key

if TYPE_CHECKING:
    from backup_app.adapters.databases import DatabaseServer
    from backup_app.services.roles import RolesReport

ReadGlobals = Callable[[], str]


def lines_of(stream: BinaryIO) -> Iterator[bytes]:
    """The lines of a binary stream (any reader: decompressing, decrypting), each with its newline."""
    rest = b""
    while chunk := stream.read(CHUNK_SIZE):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from (line + b"\n" for line in lines)
    if rest:
        yield rest


def dump_roles(file: BackupFile, stored: BinaryIO, client: PgClient, key: MasterKey | None) -> dict[str, set[str]]:
    """Each role the backup's dump names, with what for (see core/dumproles); `stored` is read from
    where it is and put back at its start."""
    try:
        source = codecs.decode(stored, file.format, file.codec, decoding_key(file, key))
        if file.format == "plain":
            return roles_needed(statements(lines_of(source)))
        with client.archive_schema(source) as schema:
            return roles_needed(statements(schema))
    finally:
        stored.seek(0)


def check_no_owner(file: BackupFile) -> None:
    """ConfigurationError for `--no-owner` with a plain SQL backup: psql runs it as it is."""
    if file.format == "plain":
        raise ConfigurationError(f"--no-owner needs an archive (custom format): backup {file.id} is plain SQL, which "
                                 "psql runs as it is, with its owners and grants; restore it with --create-roles")


def missing_message(missing: list[str], server: str, target: str, no_owner: bool) -> str:
    one = len(missing) == 1
    return (f"the backup needs the role{'' if one else 's'} {names(missing)} (its objects' "
            f"{'policies or user mappings' if no_owner else 'owners, grantees, policies or user mappings'}), which "
            f"{server} lacks: restore with --create-roles (creates {'it' if one else 'them'} from the newest globals "
            f"backup of {target})" + ("" if no_owner else " or --no-owner (the objects are then owned by the "
                                                          "restoring role, and the grants left out)"))


def missing_roles(needed: dict[str, set[str]], server: DatabaseServer, no_owner: bool) -> list[str]:
    """The roles the restore needs (`needed`, less those only owning or granted to with `no_owner`)
    that `server` lacks."""
    return sorted(required(needed, no_owner) - server.role_names())


def ensure_roles(file: BackupFile, stored: BinaryIO, client: PgClient, server: DatabaseServer,
                 key: MasterKey | None, *, create: bool, no_owner: bool, read_globals: ReadGlobals | None,
                 report: Callable[[str], None]) -> RolesReport | None:
    """Make sure `server` has the roles the dump in `stored` needs, before anything is written:
    MissingRoles naming those it lacks, or with `create` they are created from `read_globals()`
    (nothing is created when that fails). What was created, or None when nothing was missing."""
    from backup_app.services.roles import create_roles

    missing = missing_roles(dump_roles(file, stored, client, key), server, no_owner)
    if not missing:
        return None
    server_name = server.conn.with_dbname("").display()
    if not create or read_globals is None:
        raise MissingRoles(missing_message(missing, server_name, file.database, no_owner))
    report(f"creating the roles {names(missing)} on {server_name} from the newest globals backup of {file.database}")
    made = create_roles(server.conn, read_globals(), set(missing))
    for line in made.lines():
        report(line)
    return made


def newest_globals(session: Session, target: str) -> Backup | None:
    """The newest completed globals backup of `target` (None: it has none)."""
    return session.scalars(select(Backup).where(Backup.database == target, Backup.format == GLOBALS,
                                                Backup.status == COMPLETED)
                           .order_by(Backup.created_at.desc(), Backup.id.desc()).limit(1)).first()


def globals_reader(session: Session, target: str, local: LocalStorage, stores: Stores,
                   key: MasterKey | None, live: ReadGlobals | None = None,
                   report: Callable[[str], None] | None = None) -> ReadGlobals:
    """Reads, when called, the SQL of the newest globals backup of `target`; when it has none, the
    globals of its server now (`live`: the roles as they are, said in `report`); MissingRoles when
    neither is there."""
    from backup_app.services.backups.set_restore import read_globals

    def read() -> str:
        found = newest_globals(session, target)
        if found is not None:
            return read_globals(session, found, local, stores, key)
        if live is None:
            raise MissingRoles(f"no globals backup of {target} yet to create the roles from, and its server is not "
                               "known: its scheduled backups record its server's roles (as every set of a server "
                               "target does); restore after the next one, or with --no-owner")
        if report:
            report(f"no globals backup of {target} yet: the roles are read from its server as they are now")
        return live()
    return read


# A plain dump is read whole to find its roles: before a restore is queued, only a small one is.
PLAIN_CHECK_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RolesCheck:
    """The roles a backup needs (each with what for), and those of them a server lacks (None: the
    server could not be asked: `error` says why)."""

    needed: dict[str, set[str]]
    missing: list[str] | None
    error: str | None = None


def check_roles(file: BackupFile, local: LocalStorage, conn: ConnInfo | None, pg: PgTools, key: MasterKey | None,
                *, no_owner: bool = False) -> RolesCheck | None:
    """The roles `file` needs and which of them `conn`'s server lacks, told before a restore is
    queued (the restore page, the API) from the backup's local file; None when that cannot be told
    cheaply (no local file, a large plain dump, no key): the restore itself checks, before it writes."""
    if file.format == "plain" and (file.size_bytes or 0) > PLAIN_CHECK_BYTES:
        return None
    try:
        stored = local.open(file.filename)
    except ObjectNotFound:
        return None
    try:
        with stored:
            needed = dump_roles(file, stored, pg.clients[-1], key)
    except BackupError:
        return None
    if conn is None:
        return RolesCheck(needed, None)
    try:
        return RolesCheck(needed, missing_roles(needed, pg.databases(conn), no_owner))
    except BackupError as exc:
        return RolesCheck(needed, None, str(exc))


def refuse_missing_roles(session: Session, file: BackupFile, local: LocalStorage, conn: ConnInfo, pg: PgTools,
                         key: MasterKey | None, *, create: bool, no_owner: bool) -> None:
    """What the restore would refuse for its roles, refused before it is queued when it can be told
    then (see check_roles): MissingRoles for roles `conn`'s server lacks without `create`, or with
    it when the target has no globals backup; ConfigurationError for `no_owner` with a plain dump."""
    if no_owner:
        check_no_owner(file)
    found = check_roles(file, local, conn, pg, key, no_owner=no_owner)
    if found is None or not found.missing:
        return
    if not create:
        raise MissingRoles(missing_message(found.missing, conn.with_dbname("").display(), file.database, no_owner))
    newest_globals(session, file.database)
