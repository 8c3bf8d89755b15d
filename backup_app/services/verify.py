"""Restore-verify: check every copy's SHA-256, restore into a scratch database, count rows, drop it."""
import secrets
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import BinaryIO

from sqlalchemy.orm import Session

from backup_app.adapters.local import LocalStorage
from backup_app.adapters.pgtools import PgTools
from backup_app.adapters.store import Stores
from backup_app.core import codecs
from backup_app.core.conninfo import ConnInfo
from backup_app.core.crypto import MasterKey
from backup_app.errors import BackupError
from backup_app.models import FAILED, GLOBALS, LOCAL, Backup, Verification, utcnow
from backup_app.services import events
from backup_app.services.backups.copies import decoding_key, fetch_from_store, open_local_copy
from backup_app.services.backups.queries import get_completed_backup
from backup_app.services.backups.restore import Loader, compare_counts

PASSED = "passed"


def verify_backup(session: Session, backup_id: str, server: ConnInfo, local: LocalStorage,
                  stores: Stores, pg: PgTools, key: MasterKey | None = None, *, jobs: int = 1,
                  on_restoring: Callable[[], None] | None = None) -> Verification:
    """Verify one backup; the returned Verification says `passed` or `failed` and why.

    Each copy is read whole and its SHA-256 checked (a bad copy is marked failed/missing on the
    backup, not repaired: sync does that). A good copy is restored into a new database on
    `server`'s server (`jobs` pg_restore jobs when it can read the file itself), its tables
    counted and compared with the counts taken at backup time, and the database dropped again.
    `on_restoring` is called once the copies are checked. Whatever goes wrong, the
    verification ends `failed` with the reason; it never stays `running`.
    """
    backup = get_completed_backup(session, backup_id)
    decoding_key(backup, key)
    verification = Verification(backup=backup, database=backup.database, backup_filename=backup.filename,
                                started_at=utcnow())
    session.add(verification)
    session.commit()
    started = time.monotonic()
    problems: list[str] = []
    tables = None
    try:
        tables = check_and_restore(session, backup, server, local, stores, pg, key, jobs, on_restoring, problems)
    except Exception as exc:  # noqa: BLE001 - an OSError or a bug still ends the verification
        problems.append(f"verify stopped: {type(exc).__name__}: {exc}")
    except BaseException as exc:
        end(session, verification, problems + [f"interrupted: {type(exc).__name__}"], started, tables)
        raise
    return end(session, verification, problems, started, tables)


def check_and_restore(session: Session, backup: Backup, server: ConnInfo, local: LocalStorage, stores: Stores,
                      pg: PgTools, key: MasterKey | None, jobs: int, on_restoring: Callable[[], None] | None,
                      problems: list[str]) -> dict[str, int] | None:
    """Check every copy, then restore the first intact one into a scratch database; the rows per
    table restored (None if nothing could be restored). What is wrong goes into `problems`."""
    file = backup.file()
    with ExitStack() as opened:
        source = open_local_copy(session, backup, local)
        if source is not None:
            opened.enter_context(source)
        elif backup.copy(LOCAL) is not None:
            problems.append(f"local copy {backup.copy(LOCAL).status}: {backup.copy(LOCAL).error}")
        for store in stores:
            try:
                fetched = fetch_from_store(session, backup, store, local.scratch_file())
            except BackupError as exc:
                problems.append(f"{store.location} copy: {exc}")
                continue
            if source is None:
                source = opened.enter_context(fetched)
            else:
                fetched.close()  # checked; the scratch file is gone with it
        if source is None:
            problems.append("no intact copy to restore")
            return None
        if file.format == GLOBALS:
            problems += globals_problems(codecs.decode(source, file.format, file.codec, decoding_key(file, key)))
            return {}
        scratch = server.with_dbname(f"verify_{file.id}_{secrets.token_hex(3)}")
        client = pg.for_restore(scratch, file.client_version)
        if on_restoring:
            on_restoring()
        load = Loader(file, source, client, key, pg.lock_timeout, None)
        databases = pg.databases(scratch)
        tables = None
        try:
            databases.create(scratch.dbname)
            load(scratch, jobs=load.parallel(jobs))
            tables = client.table_row_counts(scratch)
            problems += compare_counts(file.row_counts, tables)
        except BackupError as exc:
            problems.append(f"restore into a scratch database failed: {exc}")
        finally:
            try:
                databases.drop(scratch.dbname)
            except BackupError as exc:
                problems.append(f"could not drop scratch database {scratch.dbname}: {exc}")
        return tables


def globals_problems(dump: BinaryIO) -> list[str]:
    """What is wrong with a globals backup's SQL: it must be a whole pg_dumpall --globals-only output
    (it is read, never run: creating its roles is a restore's choice)."""
    text = dump.read().decode("utf-8", "replace")
    if not text.lstrip().startswith("--\n-- PostgreSQL database cluster dump"):
        return ["not a pg_dumpall --globals-only output (its header is missing)"]
    if "-- PostgreSQL database cluster dump complete" not in text:
        return ["the globals dump is cut short (pg_dumpall's closing line is missing)"]
    return []


def end(session: Session, verification: Verification, problems: list[str], started: float,
        tables: dict[str, int] | None) -> Verification:
    """Record the verification's outcome (passed when there are no problems): the rows per table
    restored, the time it took; announce a failure."""
    session.rollback()  # whatever failed may have left the session unusable
    verification.tables = tables
    verification.status = FAILED if problems else PASSED
    verification.error = "; ".join(problems) or None
    verification.finished_at = utcnow()
    verification.duration_seconds = round(time.monotonic() - started, 3)
    session.commit()
    if verification.status == FAILED:
        events.announce(events.verification_failed, verification)
    return verification
