"""Rebuild catalog rows from what storage holds: for an app whose catalog was lost.

Objects carry their backup's id, database, timestamp, format, codec, SHA-256 and the server's
and pg_dump's versions in their metadata; the file names (`backup-<db>-<time>-<id><suffix>`)
carry the same except the SHA-256, which is computed, and the versions. A backup's completion
time is taken from its object's (or file's) last modification. Existing rows are never
duplicated: a copy found for a known backup is recorded on that backup.
"""
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app.adapters.local import LocalStorage, is_safe_name
from backup_app.adapters.s3 import S3Storage, user_metadata
from backup_app.models import COMPLETED, LOCAL, PRESENT, Backup
from backup_app.services.backups.copies import Stores, open_local_copy, set_copy

BACKUP_ID = re.compile(r"[a-z][a-z0-9]{5,31}")
FILENAME = re.compile(
    rf"backup-(?P<database>.+)-(?P<stamp>\d{{4}}-\d\d-\d\dT\d\d-\d\d-\d\dZ)-(?P<id>{BACKUP_ID.pattern})"
    r"(?P<format>\.dump|\.sql)(?P<zst>\.zst)?(?P<gz>\.gz)?(?P<enc>\.enc)?")


@dataclass
class RescanReport:
    added: list[dict] = field(default_factory=list)      # new backup rows
    recorded: list[dict] = field(default_factory=list)   # copies recorded on existing rows
    skipped: list[str] = field(default_factory=list)     # names that are not our backups


def describe_filename(filename: str) -> dict | None:
    """What a backup file name says about its backup, or None if it is not one of ours.

    Only plain names can be ours: a key with a folder in it, or any other name that could not
    address a file inside BACKUP_DIR, is not.
    """
    match = FILENAME.fullmatch(filename)
    if not match or not is_safe_name(filename):
        return None
    fmt = "custom" if match["format"] == ".dump" else "plain"
    codec = "zstd" if match["zst"] else ("gzip" if match["gz"] or fmt == "custom" else "plain")
    created = datetime.strptime(match["stamp"], "%Y-%m-%dT%H-%M-%SZ").replace(tzinfo=timezone.utc)
    return {"id": match["id"], "database": match["database"], "format": fmt, "codec": codec,
            "encrypted": bool(match["enc"]), "created_at": created, "sha256": None,
            "server_version": None, "client_version": None}


def with_metadata(info: dict, metadata: dict[str, str]) -> dict:
    """A file name's description, corrected and completed by its object's metadata (if it has a valid id)."""
    if not BACKUP_ID.fullmatch(metadata.get("x-backup-id", "")):
        return info
    info.update(id=metadata["x-backup-id"], database=metadata.get("x-database", info["database"]),
                format=metadata.get("x-backup-format", info["format"]),
                codec=metadata.get("x-backup-codec", info["codec"]),
                encrypted=metadata.get("x-backup-encrypted", str(info["encrypted"]).lower()) == "true",
                sha256=metadata.get("x-backup-sha256"), server_version=metadata.get("x-server-version"),
                client_version=metadata.get("x-client-version"))
    if "x-backup-timestamp" in metadata:
        info["created_at"] = datetime.fromisoformat(metadata["x-backup-timestamp"].replace("Z", "+00:00"))
    return info


def find_backup(session: Session, info: dict, filename: str) -> Backup | None:
    return session.scalar(select(Backup).where((Backup.id == info["id"]) | (Backup.filename == filename)))


def add_backup(session: Session, info: dict, filename: str, size: int, completed_at: datetime,
               report: RescanReport) -> Backup:
    backup = Backup(id=info["id"], filename=filename, database=info["database"], format=info["format"],
                    codec=info["codec"], encrypted=info["encrypted"], sha256=info["sha256"],
                    server_version=info["server_version"], client_version=info["client_version"],
                    size_bytes=size, status=COMPLETED, created_at=info["created_at"], completed_at=completed_at)
    session.add(backup)
    report.added.append({"id": backup.id, "filename": filename, "database": backup.database})
    return backup


def rescan(session: Session, local: LocalStorage, stores: Stores) -> RescanReport:
    """Add catalog rows (and copy records) for backups found in every bucket and in BACKUP_DIR."""
    report = RescanReport()
    added_ids: set[str] = set()
    for store in stores:
        rescan_store(session, store, report, added_ids)
    for filename in local.filenames():
        info = describe_filename(filename)
        if info is None:
            report.skipped.append(str(local.path(filename)))
            continue
        backup = find_backup(session, info, filename)
        session.commit()  # no catalog transaction while a file is hashed
        if backup is None:
            info["sha256"] = local.sha256(filename)
            modified = datetime.fromtimestamp(local.path(filename).stat().st_mtime, timezone.utc)
            backup = add_backup(session, info, filename, local.size(filename), modified, report)
        elif backup.copy(LOCAL) is not None and backup.copy(LOCAL).status == PRESENT:
            continue
        elif backup.id not in added_ids:
            report.recorded.append({"id": backup.id, "filename": filename, "location": LOCAL})
        if backup.sha256 is None:
            session.commit()
            digest = local.sha256(filename)
            backup.sha256 = digest
        session.commit()
        checked = open_local_copy(session, backup, local)  # records the copy: present, or failed on mismatch
        if checked is not None:
            checked.close()
    return report


def rescan_store(session: Session, store: S3Storage, report: RescanReport, added_ids: set[str]) -> None:
    """Record every backup object of one store; ids of the rows it adds go into `added_ids`."""
    for filename, size in store.list():
        info = describe_filename(filename)  # first: a key that is no plain name is never read
        if info is None:
            report.skipped.append(f"{store.location}: s3://{store.bucket}/{filename}")
            continue
        stat = store.stat(filename)
        if stat is None:  # deleted since it was listed
            continue
        info = with_metadata(info, user_metadata(stat))
        backup = find_backup(session, info, filename)
        if backup is None:
            backup = add_backup(session, info, filename, size, stat.last_modified, report)
            added_ids.add(backup.id)
        elif backup.copy(store.location) is not None and backup.copy(store.location).status == PRESENT:
            continue
        elif backup.id not in added_ids:
            report.recorded.append({"id": backup.id, "filename": filename, "location": store.location})
        backup.storage_url = backup.storage_url or store.uri(filename)
        set_copy(backup, store.location, store.uri(filename), PRESENT, size_bytes=size)
        session.commit()
