"""A server target's run: a backup set, one ordinary backup per database of the server and one of
its globals (roles, memberships, tablespaces), `parallel` databases dumped at once.

Every backup of the set is made by create_backup, so each has its own file, copies, SHA-256,
verify and retention; they share a `set_id`. A database that fails does not stop the others.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app.adapters.local import LocalStorage
from backup_app.adapters.pgtools import PgTools
from backup_app.adapters.store import Stores
from backup_app.core.crypto import MasterKey
from backup_app.core.streams import Progress
from backup_app.errors import BackupError, SetNotFound
from backup_app.models import COMPLETED, FAILED, GLOBALS, Backup, new_id
from backup_app.services.backups.create import create_backup, expected_dump_size
from backup_app.services.targets import DumpSpec

Sessions = Callable[[], AbstractContextManager[Session]]
# Role settings that would load code into every session of the role on the server it is restored to.
LIBRARY_SETTINGS = ("session_preload_libraries", "local_preload_libraries")


@dataclass
class SetResult:
    """What a set run made: its backups (the globals first, then each database's, failed ones too)
    and the databases it left out, with why."""

    set_id: str
    backups: list[Backup]
    skipped: list[dict] = field(default_factory=list)  # {"database", "reason"}

    @property
    def failed(self) -> list[Backup]:
        return [backup for backup in self.backups if backup.status == FAILED]

    def to_dict(self) -> dict:
        """`flask backup create --json` of a server target."""
        return {"set_id": self.set_id, "backups": [backup.to_dict() for backup in self.backups],
                "skipped": self.skipped}

    def summary(self) -> str:
        """'3 databases and the globals backed up; failed: crm (…); not backed up: legacy (…)'."""
        good = [b for b in self.backups if b.status == COMPLETED and b.format != GLOBALS]
        globals_ok = any(b.format == GLOBALS and b.status == COMPLETED for b in self.backups)
        text = f"set {self.set_id}: {len(good)} database(s)" + (" and the globals" if globals_ok else "") + \
            " backed up"
        if self.failed:
            text += "; failed: " + "; ".join(f"{b.source_database or 'the globals'} ({b.error})" for b in self.failed)
        if self.skipped:
            text += "; not backed up: " + "; ".join(f"{s['database']} ({s['reason']})" for s in self.skipped)
        return text


class SharedProgress:
    """One progress callback fed by several dumps at once: each part's bytes added up."""

    def __init__(self, progress: Progress | None):
        self._progress, self._done, self._lock = progress, {}, threading.Lock()

    def part(self, name: str) -> Progress | None:
        if self._progress is None:
            return None

        def moved(nbytes: int) -> None:
            with self._lock:
                self._done[name] = nbytes
                self._progress(sum(self._done.values()))
        return moved


def server_databases(spec: DumpSpec) -> tuple[list[str], list[dict]]:
    """The databases of a server target's server to back up (not templates, not excluded), and those
    left out because its role may not connect to them or they take no connections."""
    from backup_app.adapters.databases import list_databases

    names, skipped = [], []
    for name, allows_connections, may_connect in list_databases(spec.conn):
        if name in spec.exclude:
            continue
        if not allows_connections:
            skipped.append({"database": name, "reason": "it does not allow connections (ALLOW_CONNECTIONS false)"})
        elif not may_connect:
            skipped.append({"database": name, "reason": f"the role {spec.conn.user or 'of the target'} may not "
                                                        "connect to it (CONNECT privilege)"})
        else:
            names.append(name)
    return names, skipped


def globals_spec(spec: DumpSpec, pg: PgTools, set_id: str | None = None) -> DumpSpec:
    """How to back up `spec`'s server's globals: pg_dumpall --globals-only, stored plain or zstd,
    encrypted like the target's backups, without role passwords when the role may not read them."""
    _server, client = pg.for_dump(spec.conn)
    options, notes = (), None
    if not client.can_read_passwords(spec.conn):
        options = ("--no-role-passwords",)
        notes = (f"role passwords are not in this backup: the role {spec.conn.user or 'of the target'} may not "
                 "read them (pg_authid; a superuser may); roles created from it have no password")
    return replace(spec, format=GLOBALS, codec="zstd" if spec.codec == "zstd" else "plain", set_id=set_id,
                   source_database=None, options=options, notes=notes)


def database_spec(spec: DumpSpec, name: str, set_id: str, pg: PgTools) -> DumpSpec:
    """One database of the set, with what it is like (owner, locale, settings, grants) for a restore
    onto a server that lacks it; settings that load libraries are left out (untrusted input)."""
    conn = spec.conn.with_dbname(name)
    shape, notes = None, None
    try:
        found = asdict(pg.databases(spec.conn).shape(name))
    except BackupError as exc:
        notes = f"what the database is like (owner, settings, grants) could not be read: {exc}"
    else:
        found["settings"] = [list(item) for item in found["settings"]
                             if item[1].split("=", 1)[0].lower() not in LIBRARY_SETTINGS]
        shape = found
    return replace(spec, conn=conn, set_id=set_id, source_database=name, database_shape=shape, notes=notes,
                   all_databases=False, exclude=())


def create_set(session: Session, sessions: Sessions, spec: DumpSpec, local: LocalStorage, stores: Stores,
               pg: PgTools, *, key: MasterKey | None = None, parallel: int = 2, progress: Progress | None = None,
               expect: Callable[[int | None], None] | None = None, set_id: str | None = None,
               report: Callable[[str], None] | None = None) -> SetResult:
    """Back up the globals, then every database of `spec`'s server, `parallel` at once, each dump in a
    session of its own from `sessions()`. Returns every backup made, failed ones included; `expect`
    is told the bytes the dumps are expected to write once the databases are known."""
    report = report or (lambda _line: None)
    set_id = set_id or new_id()
    names, skipped = server_databases(spec)
    report(f"set {set_id}: the globals and {len(names)} database(s): {', '.join(names) or 'none'}"
           + "".join(f"; leaving out {s['database']}: {s['reason']}" for s in skipped))
    shared = SharedProgress(progress)
    _create_one(session, globals_spec(spec, pg, set_id), local, stores, pg, key, shared.part(GLOBALS))
    specs = [database_spec(spec, name, set_id, pg) for name in names]
    if expect is not None:
        expect(sum(expected_dump_size(session, one, pg) or 0 for one in specs) or None)

    def dump(one: DumpSpec) -> None:
        report(f"dumping {one.source_database}")
        with sessions() as own:
            made = _create_one(own, one, local, stores, pg, key, shared.part(one.source_database))
            report(f"{one.source_database}: {made.status}" + (f" ({made.error})" if made.error else ""))

    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="set-dump") as pool:
        for future in [pool.submit(dump, one) for one in specs]:
            future.result()
    session.expire_all()
    return SetResult(set_id, set_backups(session, set_id), skipped)


def _create_one(session: Session, spec: DumpSpec, local: LocalStorage, stores: Stores, pg: PgTools,
                key: MasterKey | None, progress: Progress | None) -> Backup:
    """create_backup, its failure kept as the failed backup it recorded."""
    backup_id = new_id()
    try:
        return create_backup(session, spec, local, stores, pg, key=key, progress=progress, backup_id=backup_id)
    except BackupError:
        session.rollback()
        return session.get(Backup, backup_id)


def set_backups(session: Session, set_id: str) -> list[Backup]:
    """The backups of a set: the globals first, then the databases by name."""
    backups = session.scalars(select(Backup).where(Backup.set_id == set_id))
    return sorted(backups, key=lambda b: (b.format != GLOBALS, b.source_database or ""))


def find_set(session: Session, set_id: str) -> list[Backup]:
    """The backups of set `set_id`, the globals first (SetNotFound when there is none)."""
    backups = set_backups(session, set_id)
    if not backups:
        raise SetNotFound(set_id)
    return backups
