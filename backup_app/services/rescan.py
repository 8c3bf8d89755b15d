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
from backup_app.adapters.store import PITR_FOLDER, Store, Stores
from backup_app.models import COMPLETED, LOCAL, PRESENT, Backup
from backup_app.services.backups.copies import open_local_copy, set_copy

BACKUP_ID = re.compile(r"[a-z][a-z0-9]{5,31}")
FILENAME = re.compile(
    rf"backup-(?P<database>.+)-(?P<stamp>\d{{4}}-\d\d-\d\dT\d\d-\d\d-\d\dZ)-(?P<id>{BACKUP_ID.pattern})"
    r"(?P<format>\.dump|\.sql|\.tar)(?P<zst>\.zst)?(?P<gz>\.gz)?(?P<enc>\.enc)?")


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
    fmt = {".dump": "custom", ".tar": "tar"}.get(match["format"], "plain")
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
    """Add catalog rows (and copy records) for the backups found in every bucket and in BACKUP_DIR.

    Every place is read alike: its names, and what each stat says (an S3 object's metadata
    describes its backup whole). The stores are read first, so a row rebuilt from metadata
    then gains its local copy; a local file's SHA-256 is its own (read, then checked as any
    local copy is).
    """
    report = RescanReport()
    added_ids: set[str] = set()
    for place in [*stores, local]:
        for filename, size in place.list():
            if filename.startswith(PITR_FOLDER):
                continue  # the WAL archive and base backups, catalogued apart
            info = describe_filename(filename)  # first: a name that is not a plain one is never read
            if info is None:
                report.skipped.append(f"{place.location}: {place.uri(filename) if is_safe_name(filename) else filename}")
                continue
            found = place.stat(filename)
            if found is not None:  # else deleted since it was listed
                record_found(session, place, filename, size, with_metadata(info, found.metadata), found.modified,
                             report, added_ids)
    return report


def record_found(session: Session, place: Store, filename: str, size: int, info: dict, modified: datetime | None,
                 report: RescanReport, added_ids: set[str]) -> None:
    """Add the row of a backup found at `place` (or the copy record of one the catalog has)."""
    backup = find_backup(session, info, filename)
    copy = backup.copy(place.location) if backup is not None else None
    if copy is not None and copy.status == PRESENT:
        return
    session.commit()  # no catalog transaction while a file is hashed
    if place.location == LOCAL and info["sha256"] is None and (backup is None or backup.sha256 is None):
        info["sha256"] = place.sha256(filename)
    if backup is None:
        backup = add_backup(session, info, filename, size, modified, report)
        added_ids.add(backup.id)
    elif backup.id not in added_ids:
        report.recorded.append({"id": backup.id, "filename": filename, "location": place.location})
    backup.sha256 = backup.sha256 or info["sha256"]
    if place.location == LOCAL:
        session.commit()
        checked = open_local_copy(session, backup, place)  # records the copy: present, or failed on mismatch
        if checked is not None:
            checked.close()
        return
    backup.storage_url = backup.storage_url or place.uri(filename)
    set_copy(backup, place.location, place.uri(filename), PRESENT, size_bytes=size)
    session.commit()
