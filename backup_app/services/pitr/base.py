"""Base backups: `pg_basebackup -Ft -D - -X none` streamed through the dump pipeline (hashed,
zstd, encrypted when the target encrypts, into the local folder and every S3 store at once);
its backup_manifest is caught on the way and kept for incrementals."""
import json
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app.adapters.local import LocalStorage
from backup_app.adapters.physical import PhysicalClient, server_clock, server_facts, slot_name
from backup_app.adapters.pipeline import Upload, stream_to_file
from backup_app.adapters.store import Store
from backup_app.core import codecs
from backup_app.core.crypto import MasterKey
from backup_app.core.streams import Progress
from backup_app.core.wal import TarWatcher
from backup_app.errors import BackupError, ConfigurationError, PitrError
from backup_app.models import (
    COMPLETED,
    COPY_FAILED,
    FAILED,
    FULL,
    INCREMENTAL,
    PRESENT,
    RUNNING,
    BaseBackup,
    new_id,
)
from backup_app.services.targets import DumpSpec

INCREMENTAL_FROM = 17  # pg_basebackup --incremental, with summarize_wal=on


class WatchedReader:
    """Reads a stream while a TarWatcher looks at every byte."""

    def __init__(self, stream, watcher: TarWatcher):
        self._stream, self._watcher = stream, watcher

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._watcher.feed(data)
        return data


def base_filename(target: str, lineage: str, started_at, backup_id: str, encrypted: bool) -> str:
    return (f"{target}.{lineage}.base.{started_at:%Y-%m-%dT%H-%M-%SZ}.{backup_id}.tar.zst"
            + (".enc" if encrypted else ""))


def wal_range(manifest: str) -> tuple[int, str, str]:
    """(timeline, start LSN, end LSN) of a backup, from its backup_manifest's WAL-Ranges."""
    ranges = json.loads(manifest)["WAL-Ranges"]
    return ranges[-1]["Timeline"], ranges[0]["Start-LSN"], ranges[-1]["End-LSN"]


def newest_completed(session: Session, target: str, lineage: str) -> BaseBackup | None:
    return session.scalars(select(BaseBackup).where(BaseBackup.target == target, BaseBackup.status == COMPLETED,
                                                    BaseBackup.system_identifier == lineage)
                           .order_by(BaseBackup.started_at.desc()).limit(1)).first()


def take_base_backup(session: Session, spec: DumpSpec, client: PhysicalClient, stores: Sequence[Store],
                     key: MasterKey | None, lineage: str, *, incremental: bool = False,
                     progress: Progress | None = None) -> BaseBackup:
    """Back up the whole server of `spec`'s target, the cluster `lineage`, into every store; the
    completed BaseBackup.

    `stores[0]` is the local folder (its file is written through a partial file, the S3
    uploads read it as it grows). An incremental builds on the newest completed base backup
    and needs PostgreSQL 17+ with summarize_wal=on. A failure records the backup failed and
    leaves no file and no object."""
    if spec.encrypt and key is None:
        raise ConfigurationError(f"{spec.name} is set to encrypt backups but APP_ENCRYPTION_KEY is not set")
    facts = server_facts(spec.conn, slot_name(spec.name))
    parent = newest_completed(session, spec.name, lineage) if incremental else None
    if incremental:
        if facts.version_num // 10000 < INCREMENTAL_FROM or not facts.summarize_wal:
            raise PitrError(f"an incremental base backup needs PostgreSQL {INCREMENTAL_FROM}+ with "
                            f"summarize_wal = on (the server runs {facts.version}, summarize_wal is "
                            f"{'on' if facts.summarize_wal else 'off'})")
        if parent is None or not parent.manifest:
            raise PitrError(f"{spec.name} has no completed base backup to build an incremental on; take a full one")
    started, began = server_clock(spec.conn), time.monotonic()
    backup_id = new_id()
    backup = BaseBackup(id=backup_id, target=spec.name, system_identifier=lineage,
                        kind=INCREMENTAL if incremental else FULL,
                        parent_id=parent.id if parent else None, status=RUNNING, started_at=started,
                        server_version=facts.version, encrypted=spec.encrypt, codec="zstd",
                        filename=base_filename(spec.name, lineage, started, backup_id, spec.encrypt), copies={})
    session.add(backup)
    session.commit()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            manifest_path = None
            if parent is not None:
                manifest_path = Path(scratch) / "parent_manifest"
                manifest_path.write_text(parent.manifest)
            outcome = stream_base_backup(backup.filename, spec, client, stores, key, manifest_path, progress)
    except BaseException as exc:
        session.rollback()
        # the server may be what failed: its clock is not asked again
        backup.status, backup.finished_at = FAILED, started + timedelta(seconds=time.monotonic() - began)
        backup.error = str(exc) if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
        session.commit()
        raise
    size, sha256, manifest, copies, finished = outcome
    backup.timeline, backup.start_lsn, backup.end_lsn = wal_range(manifest)
    backup.size_bytes, backup.sha256, backup.manifest, backup.copies = size, sha256, manifest, copies
    backup.status, backup.finished_at = COMPLETED, finished
    session.commit()
    return backup


def stream_base_backup(filename: str, spec: DumpSpec, client: PhysicalClient, stores: Sequence[Store],
                       key: MasterKey | None, parent_manifest: Path | None, progress: Progress | None):
    """pg_basebackup → zstd (→ cipher) → the local partial file, each S3 store's upload reading it
    as it grows. (size, SHA-256, manifest text, copies, the server's clock once pg_basebackup ended)."""
    local: LocalStorage = stores[0]
    copies: dict = {}
    reachable = []
    for store in stores[1:]:
        try:
            store.check()
            reachable.append(store)
        except BackupError as exc:
            copies[store.location] = {"status": COPY_FAILED, "uri": store.uri(filename), "error": str(exc)}
    process = client.base_backup(spec.conn, parent_manifest)
    try:
        partial = local.open_partial(filename)
    except OSError as exc:
        process.kill()
        raise PitrError(f"writing to {local.root} failed: {exc}") from exc
    uploads = {store.location: Upload(partial.path, lambda reader, s=store: s.put(
        filename, reader, {"x-base-backup": filename}, "application/octet-stream"), name=f"upload-{store.location}")
        for store in reachable}
    watcher = TarWatcher()
    try:
        stored = codecs.encode(WatchedReader(process.stdout, watcher), "zstd", key if spec.encrypt else None)
        result = stream_to_file(stored, partial, list(uploads.values()), progress)
        process.finish()
        if watcher.found is None:
            raise PitrError("pg_basebackup's output has no backup_manifest")
        finished = server_clock(spec.conn)
        path = partial.commit()
    except BaseException:
        for upload in uploads.values():
            upload.abort()
        process.kill()
        partial.discard()
        raise
    copies[local.location] = {"status": PRESENT, "uri": str(path)}
    for location, upload in uploads.items():
        error = upload.finish().error
        store = next(s for s in reachable if s.location == location)
        copies[location] = ({"status": PRESENT, "uri": store.uri(filename)} if error is None else
                            {"status": COPY_FAILED, "uri": store.uri(filename), "error": str(error)})
    return result.size_bytes, result.sha256, watcher.found.decode(), copies, finished
