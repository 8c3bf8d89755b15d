"""Bring every completed backup back to all its copies after an outage.

Uploads to each S3 store the backups whose copy there is missing or failed, and (with
`fetch_local`) fetches S3-only backups back to disk. SHA-256 is checked both ways: the
source file before it is uploaded and the object as read back after; fetched bytes while
they are written. A backup with no intact local file is uploaded from the local copy that
its first healthy store gives back.
"""
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app.adapters.local import LocalStorage, sha256_of
from backup_app.adapters.store import Store, Stores
from backup_app.errors import BackupError, ChecksumMismatch, StorageUnavailable
from backup_app.models import COMPLETED, COPY_FAILED, LOCAL, MISSING, PRESENT, Backup, BackupCopy
from backup_app.services.backups.copies import (
    content_type,
    object_metadata,
    open_checked_copy,
    open_local_copy,
    set_copy,
)
from backup_app.services.backups.queries import list_backups


@dataclass
class SyncReport:
    """One entry per copy that sync acted on: {id, filename, action, location, error};
    and one line per store that could not be reached (nothing was synced with it)."""

    actions: list[dict] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)

    def add(self, backup: Backup, action: str, location: str, error: str | None = None) -> None:
        self.actions.append({"id": backup.id, "filename": backup.filename, "action": action,
                             "location": location, "error": error})

    @property
    def failed(self) -> list[dict]:
        return [a for a in self.actions if a["error"]]

    @property
    def error(self) -> str | None:
        """One line naming every store and backup that could not be synced, or None."""
        problems = list(self.unreachable)
        if self.failed:
            problems.append(f"{len(self.failed)} backup(s) could not be synced: "
                            + "; ".join(f"{a['id']} ({a['location']}): {a['error']}" for a in self.failed))
        return "; ".join(problems) or None


def copy_present(session: Session, backup: Backup, store: Store) -> bool:
    """Whether the object really is in the store with the recorded size (one HEAD request, with
    no catalog transaction open)."""
    copy = backup.copy(store.location)
    file = backup.file()
    session.commit()
    if copy is None or copy.status != PRESENT:
        return False
    stat = store.stat(file.filename)
    return stat is not None and (file.size_bytes is None or stat.size == file.size_bytes)


def upload_copy(session: Session, backup: Backup, local: LocalStorage, store: Store, others: Stores) -> None:
    """Upload the verified local file (fetched back from `others` if need be), then read the
    object back and check its SHA-256. No catalog transaction is open while bytes move."""
    copy = backup.copy(store.location)
    if copy is not None and copy.status == PRESENT:
        set_copy(backup, store.location, store.uri(backup.filename), MISSING, error="object not found")
        session.commit()
    file = backup.file()
    if others:
        stored = open_checked_copy(session, backup, local, others)
    else:
        stored = open_local_copy(session, backup, local)
        if stored is None:
            raise BackupError("no intact local copy to upload")
    uri = store.uri(file.filename)
    with stored:
        store.put(file.filename, stored, object_metadata(file), content_type(file))
    with store.open(file.filename) as stream:
        uploaded = sha256_of(stream)
    if file.sha256 and uploaded != file.sha256:
        set_copy(backup, store.location, uri, COPY_FAILED, error="SHA-256 mismatch after upload")
        session.commit()
        raise ChecksumMismatch(f"the uploaded copy of {backup.filename} reads back with another SHA-256")
    backup.storage_url = backup.storage_url or uri
    set_copy(backup, store.location, uri, PRESENT, size_bytes=backup.size_bytes, verified=True)
    session.commit()


def needs_sync(session: Session, locations: Sequence[str], fetch_local: bool = False) -> bool:
    """Whether the catalog has a completed backup without a present copy in one of the stores'
    `locations` (or, with `fetch_local`, without a present local copy): what a periodic sync is for."""
    for location in [*locations, LOCAL] if fetch_local else locations:
        present = select(BackupCopy.id).where(BackupCopy.backup_id == Backup.id, BackupCopy.location == location,
                                              BackupCopy.status == PRESENT)
        if session.scalar(select(Backup.id).where(Backup.status == COMPLETED, ~present.exists()).limit(1)):
            return True
    return False


def reachable_stores(stores: Stores, report: SyncReport) -> list[Store]:
    """The stores that answer; the others are noted in `report`. Raises when none answers."""
    reachable = []
    for store in stores:
        try:
            store.check()
        except StorageUnavailable as exc:
            report.unreachable.append(f"{store.location}: {exc}")
        else:
            reachable.append(store)
    if not reachable:
        raise StorageUnavailable("; ".join(report.unreachable))
    return reachable


def sync_backups(session: Session, local: LocalStorage, stores: Stores, *,
                 fetch_local: bool = False) -> SyncReport:
    """Give every completed backup its copy in each S3 store (and, with `fetch_local`, its local copy).

    With no store (local-only) there is nothing to do."""
    report = SyncReport()
    if not stores:
        return report
    reachable = reachable_stores(stores, report)
    for backup in list_backups(session, status=COMPLETED):
        for store in reachable:
            try:
                if not copy_present(session, backup, store):
                    upload_copy(session, backup, local, store, [other for other in reachable if other is not store])
                    report.add(backup, "uploaded", store.location)
            except BackupError as exc:
                session.rollback()
                report.add(backup, "failed", store.location, str(exc))
        if fetch_local and not local.exists(backup.filename):
            try:
                open_checked_copy(session, backup, local, reachable).close()
                report.add(backup, "fetched", LOCAL)
            except BackupError as exc:
                session.rollback()
                report.add(backup, "failed", LOCAL, str(exc))
    return report
