"""Bring every completed backup back to two copies after an outage.

Uploads local copies whose S3 copy is missing or failed, and (with `fetch_local`) fetches
S3-only backups back to disk. SHA-256 is checked both ways: the local file before it is
uploaded and the object as read back after; the fetched bytes while they are written.
"""
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..adapters.storage import LocalStorage, S3Storage, sha256_of
from ..errors import BackupError, ChecksumMismatch, ConfigurationError
from ..models import COMPLETED, COPY_FAILED, LOCAL, MISSING, PRESENT, S3, Backup, BackupCopy
from .backups import content_type, fetch_from_s3, list_backups, object_metadata, set_copy, verified_local_path


@dataclass
class SyncReport:
    """One entry per backup that sync acted on: {id, filename, action, error}."""

    actions: list[dict] = field(default_factory=list)

    def add(self, backup: Backup, action: str, error: str | None = None) -> None:
        self.actions.append({"id": backup.id, "filename": backup.filename, "action": action,
                             "error": error})

    @property
    def failed(self) -> list[dict]:
        return [a for a in self.actions if a["error"]]

    @property
    def error(self) -> str | None:
        """One line naming every backup that could not be synced, or None."""
        if not self.failed:
            return None
        return (f"{len(self.failed)} backup(s) could not be synced: "
                + "; ".join(f"{a['id']}: {a['error']}" for a in self.failed))


def s3_copy_present(backup: Backup, s3: S3Storage) -> bool:
    """Whether the object really is in the bucket with the recorded size (one HEAD request)."""
    copy = backup.copy(S3)
    if copy is None or copy.status != PRESENT:
        return False
    stat = s3.stat(backup.filename)
    return stat is not None and (backup.size_bytes is None or stat.size == backup.size_bytes)


def upload_copy(session: Session, backup: Backup, local: LocalStorage, s3: S3Storage) -> None:
    """Upload the verified local file, then read the object back and check its SHA-256."""
    path = verified_local_path(session, backup, local)
    if path is None:
        raise BackupError("no intact local copy to upload")
    uri = s3.uri(backup.filename)
    with open(path, "rb") as stream:
        s3.upload(backup.filename, stream, object_metadata(backup), content_type(backup))
    with s3.open(backup.filename) as stream:
        uploaded = sha256_of(stream)
    if backup.sha256 and uploaded != backup.sha256:
        set_copy(backup, S3, uri, COPY_FAILED, error="SHA-256 mismatch after upload")
        session.commit()
        raise ChecksumMismatch(f"the uploaded copy of {backup.filename} reads back with another SHA-256")
    backup.storage_url = uri
    set_copy(backup, S3, uri, PRESENT, size_bytes=backup.size_bytes, verified=True)
    session.commit()


def needs_sync(session: Session, fetch_local: bool = False) -> bool:
    """Whether the catalog has a completed backup without a present S3 copy (or, with
    `fetch_local`, without a present local copy): what a periodic sync is for."""
    for location in (S3, LOCAL) if fetch_local else (S3,):
        present = select(BackupCopy.id).where(BackupCopy.backup_id == Backup.id, BackupCopy.location == location,
                                              BackupCopy.status == PRESENT)
        if session.scalar(select(Backup.id).where(Backup.status == COMPLETED, ~present.exists()).limit(1)):
            return True
    return False


def sync_backups(session: Session, local: LocalStorage, s3: S3Storage | None, *,
                 fetch_local: bool = False) -> SyncReport:
    """Give every completed backup its S3 copy (and, with `fetch_local`, its local copy)."""
    if s3 is None:
        raise ConfigurationError("MINIO_ENDPOINT is not set: nothing to sync with")
    s3.check()
    report = SyncReport()
    for backup in list_backups(session, status=COMPLETED):
        try:
            if not s3_copy_present(backup, s3):
                if backup.copy(S3) and backup.copy(S3).status == PRESENT:
                    set_copy(backup, S3, s3.uri(backup.filename), MISSING, error="object not found")
                    session.commit()
                upload_copy(session, backup, local, s3)
                report.add(backup, "uploaded")
            elif fetch_local and not local.exists(backup.filename):
                path = fetch_from_s3(session, backup, s3, local.open_partial(backup.filename))
                set_copy(backup, LOCAL, str(path), PRESENT, size_bytes=backup.size_bytes, verified=True)
                session.commit()
                report.add(backup, "fetched")
        except BackupError as exc:
            session.rollback()
            report.add(backup, "failed", str(exc))
    return report
