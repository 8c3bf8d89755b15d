"""Making a backup: one pg_dump streamed to the local file and every S3 store at once.
"""
import errno
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app.adapters.local import LocalStorage, PartialFile, ScratchFile
from backup_app.adapters.pgtools import PgTools
from backup_app.adapters.pipeline import StreamResult, Upload, stream_to_file
from backup_app.adapters.postgres import PgClient
from backup_app.adapters.store import Store, Stores
from backup_app.core import codecs
from backup_app.core.crypto import MasterKey
from backup_app.core.streams import Progress
from backup_app.errors import (
    BackupError,
    ConfigurationError,
    StorageUnavailable,
)
from backup_app.models import (
    COMPLETED,
    COPY_FAILED,
    FAILED,
    LOCAL,
    PRESENT,
    RUNNING,
    Backup,
    BackupFile,
    new_id,
    utcnow,
)
from backup_app.services import events
from backup_app.services.backups.copies import content_type, object_metadata, set_copy
from backup_app.services.targets import DumpSpec


def make_filename(database: str, created_at: datetime, backup_id: str, suffix: str) -> str:
    """`backup-<db>-<UTC time>-<id><suffix>`: unique, sortable, safe on disk and as a key."""
    safe_db = re.sub(r"[^A-Za-z0-9_.-]+", "_", database).strip("._-") or "db"
    stamp = created_at.strftime("%Y-%m-%dT%H-%M-%SZ")
    return f"backup-{safe_db}-{stamp}-{backup_id}{suffix}"


def expected_dump_size(session: Session, spec: DumpSpec, pg: PgTools) -> int | None:
    """The bytes a dump of `spec` is expected to write: the size of its last backup made the same way,
    else the database's size on its server (more than the dump, which is compressed and holds no
    index); None when neither is known."""
    last = session.scalar(
        select(Backup.size_bytes).where(Backup.database == spec.name, Backup.status == COMPLETED,
                                        Backup.source_database == spec.source_database,
                                        Backup.format == spec.format, Backup.codec == spec.codec,
                                        Backup.encrypted == spec.encrypt)
        .order_by(Backup.created_at.desc()).limit(1))
    session.commit()
    return last or pg.database_size(spec.conn) or None


def create_backup(session: Session, spec: DumpSpec, local: LocalStorage, stores: Stores,
                  pg: PgTools, *, key: MasterKey | None = None, progress: Progress | None = None,
                  backup_id: str | None = None) -> Backup:
    """Dump `spec`'s database once, streaming to the local file and to every S3 store at the same time.

    Every table's rows are counted in pg_dump's own snapshot, for verify to compare. The dump
    runs the client `pg` picks for the server; both versions are recorded.

    Returns the completed backup; a store's copy that failed is recorded as `failed` with the
    reason (the backup still completes locally and in the other stores). Raises DumpFailed,
    VersionMismatch (no client can dump the server) or another BackupError after recording the
    backup as failed, leaving no file and no object; any other exception is recorded as the
    failure too before it propagates: a backup never stays `running`. `backup_id` lets a
    caller (a job) know the new backup's id before it exists.
    """
    codecs.check(spec.format, spec.codec, codecs.STORED_FORMATS)
    if spec.encrypt and key is None:
        raise ConfigurationError(f"{spec.name} is set to encrypt backups but APP_ENCRYPTION_KEY is not set")
    created_at = utcnow()
    backup_id = backup_id or new_id()
    label = f"{spec.name}-{spec.source_database}" if spec.source_database else spec.name
    backup = Backup(id=backup_id, database=spec.name, format=spec.format, codec=spec.codec,
                    encrypted=spec.encrypt, status=RUNNING, created_at=created_at, set_id=spec.set_id,
                    source_database=spec.source_database, database_shape=spec.database_shape, notes=spec.notes,
                    filename=make_filename(label, created_at, backup_id,
                                           codecs.file_suffix(spec.format, spec.codec, spec.encrypt)))
    session.add(backup)
    session.commit()
    try:
        backup.server_version, client = pg.for_dump(spec.conn)
        backup.client_version = client.version
        file = backup.file()
        session.commit()  # no catalog transaction stays open while the dump streams
        dumped = dump_everywhere(file, spec, client, local, stores, pg, key, progress)
    except BackupError as exc:
        return _fail(session, backup, exc)
    except BaseException as exc:
        cause = "internal error" if isinstance(exc, Exception) else "interrupted"
        _fail(session, backup, BackupError(f"{cause}: {type(exc).__name__}: {exc}"), raise_error=False)
        raise

    complete(backup, dumped, stores)
    session.commit()
    events.announce(events.backup_completed, backup)
    return backup


def complete(backup: Backup, dumped: "Dumped", stores: Stores) -> None:
    """Record what `dumped` left on `backup`: its size, SHA-256, row counts and every copy (a store's
    copy that failed as `failed`, with why); the backup is then completed."""
    backup.size_bytes, backup.sha256, backup.row_counts = dumped.size_bytes, dumped.sha256, dumped.row_counts
    set_copy(backup, LOCAL, str(dumped.path), PRESENT, size_bytes=dumped.size_bytes, verified=True)
    for store in stores:
        uri, error = store.uri(backup.filename), dumped.store_errors[store.location]
        if error is None:
            backup.storage_url = backup.storage_url or uri
            set_copy(backup, store.location, uri, PRESENT, size_bytes=dumped.size_bytes, verified=True)
        else:
            set_copy(backup, store.location, uri, COPY_FAILED, error=error)
    backup.status = COMPLETED
    backup.completed_at = utcnow()


@dataclass
class Dumped:
    """What one dump left: the local file, its size and SHA-256, the row counts, and per store
    location why its copy failed (None: the object is complete, with its final metadata)."""

    path: Path
    size_bytes: int
    sha256: str
    row_counts: dict[str, int] | None
    store_errors: dict[str, str | None]


def dump_everywhere(file: BackupFile, spec: DumpSpec, client: PgClient, local: LocalStorage, stores: Stores,
                    pg: PgTools, key: MasterKey | None, progress: Progress | None) -> Dumped:
    """Run pg_dump once into the local file and every store that answers; touches no catalog row."""
    counted = {}

    def write(partial: ScratchFile, uploads: list[Upload]) -> StreamResult:
        result, counted["rows"] = dump_into(partial, spec, client, pg, key, progress, uploads)
        return result
    return replace(store_everywhere(file, write, local, stores), row_counts=counted.get("rows"))


def store_everywhere(file: BackupFile, write: Callable[[ScratchFile, list[Upload]], StreamResult],
                     local: LocalStorage, stores: Stores) -> Dumped:
    """Write a backup's bytes once (`write(partial, uploads)`) into the local `.partial` file, committed
    at the end, while each store that answers uploads it as it grows; then give each object its final
    metadata. On any failure: uploads aborted, no file left. Touches no catalog row."""
    store_errors: dict[str, str | None] = {}
    for store in stores:
        try:
            store.check()
        except StorageUnavailable as exc:
            store_errors[store.location] = str(exc)
    reachable = [store for store in stores if store.location not in store_errors]
    try:
        partial = local.open_partial(file.filename)
    except OSError as exc:
        raise BackupError(local_write_error(local, exc)) from exc
    uploads = {store.location: start_upload(store, file, partial) for store in reachable}
    try:
        result = write(partial, list(uploads.values()))
        path = partial.commit()
    except BaseException as exc:
        for upload in uploads.values():
            upload.abort()
        partial.discard()
        if isinstance(exc, OSError):
            raise BackupError(local_write_error(local, exc)) from exc
        raise
    outcomes = {location: upload.finish() for location, upload in uploads.items()}
    final = replace(file, size_bytes=result.size_bytes, sha256=result.sha256)
    for store in reachable:
        error = outcomes[store.location].error
        if error is None:
            try:
                store.set_metadata(file.filename, object_metadata(final), content_type(final))
            except BackupError as exc:
                error = f"the object was uploaded but its metadata could not be set: {exc}"
        store_errors[store.location] = None if error is None else str(error)
    return Dumped(path, result.size_bytes, result.sha256, None, store_errors)


def dump_into(sink: ScratchFile, spec: DumpSpec, client: PgClient, pg: PgTools, key: MasterKey | None,
              progress: Progress | None, uploads: list[Upload] | None = None
              ) -> tuple[StreamResult, dict[str, int] | None]:
    """pg_dump → codec → `sink` (and `uploads`); the size and SHA-256 written, and every table's
    rows counted in pg_dump's own snapshot (None when they could not be). pg_dump is killed on
    any failure; the caller discards `sink`."""
    counter = None if spec.format == codecs.GLOBALS else pg.snapshot_counter(spec.conn)
    options = codecs.pg_dump_compression(spec.format, spec.codec) + list(spec.options)
    if counter is not None:
        options.append(f"--snapshot={counter.snapshot_id}")
    try:
        dump = client.dump(spec.conn, spec.format, options)
        if counter is not None:
            counter.start()
        try:
            stored = codecs.encode(dump.stdout, spec.codec, key if spec.encrypt else None)
            result = stream_to_file(stored, sink, uploads or [], progress)
            dump.finish()
        except BaseException:
            dump.kill()
            raise
    finally:
        row_counts = counter.counts() if counter is not None else None
    return result, row_counts


def start_upload(store: Store, file: BackupFile, partial: PartialFile) -> Upload:
    """Upload the growing `.partial` file of a backup to `store`, in a thread of its own."""
    metadata, kind = object_metadata(file), content_type(file)
    return Upload(partial.path, lambda reader: store.put(file.filename, reader, metadata, kind),
                  name=f"upload-{store.location}")


def local_write_error(local: LocalStorage, exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return f"the backup folder {local.root} is full (no space left on device)"
    return f"writing to the backup folder {local.root} failed: {exc.strerror or exc}"


def _fail(session: Session, backup: Backup, exc: BackupError, raise_error: bool = True) -> Backup:
    session.rollback()
    backup.status = FAILED
    backup.error = str(exc)
    backup.completed_at = utcnow()
    session.commit()
    events.announce(events.backup_failed, backup)
    if raise_error:
        raise exc
    return backup
