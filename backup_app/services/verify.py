"""Restore-verify: check every copy's SHA-256, restore into a scratch database, count rows, drop it."""
import secrets
import time
from collections.abc import Callable

from sqlalchemy.orm import Session

from ..adapters.pgtools import PgTools
from ..adapters.postgres import ConnInfo
from ..adapters.storage import LocalStorage, PartialFile
from ..crypto import MasterKey
from ..errors import BackupError
from ..models import FAILED, LOCAL, Verification, utcnow
from . import events
from .backups import (
    Stores,
    decoding_key,
    fetch_from_store,
    get_completed_backup,
    restore_from_file,
    verified_local_path,
)

PASSED = "passed"


def compare_counts(expected: dict[str, int] | None, restored: dict[str, int]) -> list[str]:
    """Differences between the rows counted at backup time and those restored."""
    if not expected:
        return []
    problems = []
    for table in sorted(set(expected) | set(restored)):
        if expected.get(table) != restored.get(table):
            problems.append(f"{table}: {expected.get(table, 'absent')} rows at backup time, "
                            f"{restored.get(table, 'absent')} restored")
    return problems


def verify_backup(session: Session, backup_id: str, server: ConnInfo, local: LocalStorage,
                  stores: Stores, pg: PgTools, key: MasterKey | None = None,
                  on_restoring: Callable[[], None] | None = None) -> Verification:
    """Verify one backup; the returned Verification says `passed` or `failed` and why.

    Each copy is read whole and its SHA-256 checked (a bad copy is marked failed/missing on the
    backup, not repaired: sync does that). A good copy is restored into a new database on
    `server`'s server, its tables counted and compared with the counts taken at backup time,
    and the database dropped again. `on_restoring` is called once the copies are checked.
    """
    backup = get_completed_backup(session, backup_id)
    decoding_key(backup, key)
    verification = Verification(backup=backup, started_at=utcnow())
    session.add(verification)
    session.commit()
    started = time.monotonic()
    problems: list[str] = []

    source = verified_local_path(session, backup, local)
    local_copy = backup.copy(LOCAL)
    if source is None and local_copy is not None:
        problems.append(f"local copy {local_copy.status}: {local_copy.error}")
    fetched = None  # a store's copy, read into a scratch file, to restore when the local one is bad
    for store in stores:
        try:
            store_path = fetch_from_store(session, backup, store,
                                       PartialFile(local.root / f"verify-{backup.id}-{secrets.token_hex(4)}.tmp"))
        except BackupError as exc:
            problems.append(f"{store.location} copy: {exc}")
            continue
        if source is None:
            source = fetched = store_path
        else:
            store_path.unlink()

    scratch = server.with_dbname(f"verify_{backup.id}_{secrets.token_hex(3)}")
    client = None
    try:
        client = pg.for_restore(scratch, backup.client_version)
        if source is None:
            problems.append("no intact copy to restore")
        else:
            if on_restoring:
                on_restoring()
            restore_from_file(backup, source, scratch, pg, key)
            verification.tables = client.table_row_counts(scratch)
            problems += compare_counts(backup.row_counts, verification.tables)
    except BackupError as exc:
        problems.append(f"restore into a scratch database failed: {exc}")
    finally:
        try:
            if client is not None:
                client.drop_database(scratch)
        except BackupError as exc:
            problems.append(f"could not drop scratch database {scratch.dbname}: {exc}")
        if fetched is not None:
            fetched.unlink(missing_ok=True)

    verification.status = FAILED if problems else PASSED
    verification.error = "; ".join(problems) or None
    verification.finished_at = utcnow()
    verification.duration_seconds = round(time.monotonic() - started, 3)
    session.commit()
    if verification.status == FAILED:
        events.verification_failed.send(verification)
    return verification
