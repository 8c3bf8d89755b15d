"""Restore a backup set onto a server: the roles first (missing ones created from the set's globals,
existing ones kept), then each database as its own step — created like it was (owner, locale,
settings, grants) when missing, built beside and swapped in when present. One database that fails
does not stop the others; the result names each outcome."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from backup_app.adapters.local import LocalStorage
from backup_app.adapters.pgtools import PgTools
from backup_app.adapters.store import Stores
from backup_app.core import codecs
from backup_app.core.conninfo import ConnInfo
from backup_app.core.crypto import MasterKey
from backup_app.errors import BackupError, InvalidBackupState
from backup_app.models import COMPLETED, GLOBALS, Backup
from backup_app.services.backups.copies import decoding_key, open_checked_copy
from backup_app.services.backups.restore import Restored, RestoreOptions, restore_backup
from backup_app.services.backups.sets import find_set

RESTORED, FAILED, SKIPPED = "restored", "failed", "skipped"
GLOBALS_MAX_BYTES = 256 * 1024 * 1024  # a globals dump is read whole: roles, not data


@dataclass
class SetRestore:
    """How a set restore went: the roles created, kept and skipped, and each database's outcome."""

    set_id: str
    server: str
    roles: dict = field(default_factory=lambda: {"created": [], "existing": [], "skipped": []})
    databases: list[dict] = field(default_factory=list)  # {database, backup, status, error, previous_database}

    @property
    def failed(self) -> list[dict]:
        """The databases not restored: failed, or skipped because their backup had failed."""
        return [item for item in self.databases if item["status"] != RESTORED]

    def to_dict(self) -> dict:
        """`flask backup restore-set --json`."""
        return {"set_id": self.set_id, "server": self.server, "roles": self.roles, "databases": self.databases}

    def lines(self) -> list[str]:
        """The summary, one line per database after one for the roles."""
        roles = self.roles
        lines = [f"roles: {len(roles['created'])} created ({', '.join(roles['created']) or 'none'}), "
                 f"{len(roles['existing'])} kept as they were"
                 + (f", skipped: {'; '.join(roles['skipped'])}" if roles["skipped"] else "")]
        for item in self.databases:
            line = f"{item['database']}: {item['status']}"
            if item["error"]:
                line += f": {item['error']}"
            if item["previous_database"]:
                line += f" (the previous one is kept as {item['previous_database']})"
            lines.append(line)
        return lines

    def error(self) -> str:
        names = ", ".join(item["database"] for item in self.failed)
        return f"{len(self.failed)} of {len(self.databases)} databases of set {self.set_id} failed to restore: {names}"


def get_set(session: Session, set_id: str) -> list[Backup]:
    """The backups of a set (SetNotFound when there is none), checked restorable: its globals and at
    least one database completed."""
    backups = find_set(session, set_id)
    if not any(b.format == GLOBALS and b.status == COMPLETED for b in backups):
        raise InvalidBackupState(f"the globals backup of set {set_id} did not complete: the set cannot put its "
                                 "roles back (restore its databases one by one with --no-owner)")
    if not any(b.format != GLOBALS and b.status == COMPLETED for b in backups):
        raise InvalidBackupState(f"no database backup of set {set_id} completed")
    return backups


def read_globals(session: Session, backup: Backup, local: LocalStorage, stores: Stores,
                 key: MasterKey | None) -> str:
    """The SQL of a globals backup (pg_dumpall --globals-only's output), from a checked copy."""
    with open_checked_copy(session, backup, local, stores) as stored:
        text = codecs.decode(stored, backup.format, backup.codec, decoding_key(backup, key)).read(GLOBALS_MAX_BYTES + 1)
    if len(text) > GLOBALS_MAX_BYTES:
        raise InvalidBackupState(f"the globals backup {backup.id} is over {GLOBALS_MAX_BYTES} bytes: not a roles dump")
    return text.decode("utf-8")


def restore_set(session: Session, set_id: str, conn: ConnInfo, local: LocalStorage, stores: Stores, pg: PgTools,
                *, create_roles: Callable[[ConnInfo, str], object], key: MasterKey | None = None,
                options: RestoreOptions = RestoreOptions(),
                step: Callable[[str, int | None, str], None] | None = None,
                restored: Callable[[Backup, ConnInfo, Restored], str | None] | None = None) -> SetRestore:
    """Restore set `set_id` onto `conn`'s server (see the module's docstring).

    `create_roles(conn, globals_sql)` creates the missing roles and returns what it did (created,
    existing, skipped); `step(phase, bytes, line)` is told each database as it begins;
    `restored(backup, conn, result)` is told each database restored and may return where its
    previous copy is kept. A failure creating the roles stops everything before any database.
    """
    step = step or (lambda _phase, _size, _line: None)
    backups = get_set(session, set_id)
    outcome = SetRestore(set_id, conn.with_dbname("").display())
    globals_backup = next(b for b in backups if b.format == GLOBALS and b.status == COMPLETED)
    step("roles", globals_backup.size_bytes, f"creating the roles of set {set_id} missing on {outcome.server}")
    report = create_roles(conn, read_globals(session, globals_backup, local, stores, key))
    outcome.roles = {"created": list(report.created), "existing": list(report.existing),
                     "skipped": list(report.skipped)}
    for backup in (b for b in backups if b.format != GLOBALS):
        name = backup.source_database
        item = {"database": name, "backup": backup.id, "status": SKIPPED, "error": None, "previous_database": None}
        outcome.databases.append(item)
        if backup.status != COMPLETED:
            item["error"] = f"its backup {backup.id} {backup.status}" + (f": {backup.error}" if backup.error else "")
            continue
        step(f"restoring {name}", backup.size_bytes, f"restoring {name} from {backup.filename}")
        into = conn.with_dbname(name)
        try:
            done = restore_backup(session, backup.id, into, local, stores, pg, key=key,
                                  options=RestoreOptions(drop_previous=options.drop_previous, jobs=options.jobs,
                                                         database_shape=backup.database_shape))
        except BackupError as exc:
            session.rollback()
            item.update(status=FAILED, error=str(exc))
            continue
        item.update(status=RESTORED, previous_database=restored(backup, into, done) if restored else
                    done.previous_database)
    return outcome
