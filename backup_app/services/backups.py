"""Create, restore, download, delete and list backups."""
import errno
import hashlib
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from .. import codecs
from ..adapters.pgtools import PgTools
from ..adapters.postgres import PgClient, SnapshotCounter
from ..adapters.storage import LocalStorage, PartialFile, S3Storage, ScratchFile, sha256_of
from ..crypto import MasterKey
from ..errors import (
    BackupError,
    BackupFileMissing,
    BackupNotFound,
    ChecksumMismatch,
    ConfigurationError,
    InvalidBackupState,
    ObjectNotFound,
    StorageUnavailable,
)
from ..models import (
    COMPLETED,
    COPY_FAILED,
    FAILED,
    LOCAL,
    MISSING,
    PRESENT,
    RUNNING,
    S3,
    Backup,
    BackupCopy,
    BackupFile,
    new_id,
    utcnow,
)
from ..pipeline import CHUNK_SIZE, StreamResult, Upload, UploadOutcome, stream_to_file
from . import events
from .targets import DumpSpec

Progress = Callable[[int], None]
Stores = Sequence[S3Storage]  # every configured S3 store; empty in local-only mode


def make_filename(database: str, created_at: datetime, backup_id: str, suffix: str) -> str:
    """`backup-<db>-<UTC time>-<id><suffix>`: unique, sortable, safe on disk and as a key."""
    safe_db = re.sub(r"[^A-Za-z0-9_.-]+", "_", database).strip("._-") or "db"
    stamp = created_at.strftime("%Y-%m-%dT%H-%M-%SZ")
    return f"backup-{safe_db}-{stamp}-{backup_id}{suffix}"


def content_type(backup: Backup | BackupFile) -> str:
    return codecs.content_type(backup.format, backup.codec, backup.encrypted)


def object_metadata(backup: Backup | BackupFile) -> dict[str, str]:
    """S3 object metadata: enough to rebuild the catalog row from the bucket alone."""
    metadata = {
        "X-Backup-Timestamp": backup.created_at.isoformat().replace("+00:00", "Z"),
        "X-Database": backup.database,
        "X-Backup-Id": backup.id,
        "X-Backup-Format": backup.format,
        "X-Backup-Codec": backup.codec,
        "X-Backup-Encrypted": "true" if backup.encrypted else "false",
    }
    if backup.server_version:
        metadata["X-Server-Version"] = backup.server_version
    if backup.client_version:
        metadata["X-Client-Version"] = backup.client_version
    if backup.sha256:
        metadata["X-Backup-Sha256"] = backup.sha256
    return metadata


def set_copy(backup: Backup, location: str, uri: str, status: str, *, error: str | None = None,
             size_bytes: int | None = None, verified: bool = False) -> BackupCopy:
    """Record where a copy of `backup` lives and in what state (insert or update)."""
    copy = backup.copy(location)
    if copy is None:
        copy = BackupCopy(location=location, uri=uri)
        backup.copies.append(copy)
    copy.uri, copy.status, copy.error = uri, status, error
    if size_bytes is not None:
        copy.size_bytes = size_bytes
    if verified:
        copy.verified_at = utcnow()
    return copy


# --- queries ---------------------------------------------------------------------------

def backups_query(database: str | None = None, status: str | None = None) -> Select:
    """The query for backups, newest first, optionally filtered (pages paginate it)."""
    # Both columns descending, so one index (scanned backwards) serves the whole order.
    query = select(Backup).order_by(Backup.created_at.desc(), Backup.id.desc())
    if database:
        query = query.where(Backup.database == database)
    if status:
        query = query.where(Backup.status == status)
    return query


def list_backups(session: Session, database: str | None = None, status: str | None = None) -> list[Backup]:
    """Backups, newest first, optionally filtered."""
    return list(session.scalars(backups_query(database, status)))


def latest_backups(session: Session) -> dict[str, Backup]:
    """The newest backup (of any status) of each database, by database name."""
    newest = (select(Backup.database, func.max(Backup.created_at).label("created_at"))
              .group_by(Backup.database).subquery())
    query = select(Backup).join(newest, (Backup.database == newest.c.database)
                                & (Backup.created_at == newest.c.created_at))
    return {backup.database: backup for backup in session.scalars(query)}


def get_backup(session: Session, backup_id: str) -> Backup:
    """The backup with this id, or BackupNotFound."""
    backup = session.get(Backup, backup_id) if isinstance(backup_id, str) else None
    if backup is None:
        raise BackupNotFound(backup_id)
    return backup


def get_completed_backup(session: Session, backup_id: str) -> Backup:
    backup = get_backup(session, backup_id)
    if backup.status != COMPLETED:
        raise InvalidBackupState(f"backup {backup.id} is {backup.status}, not completed")
    return backup


# --- create ----------------------------------------------------------------------------

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
    codecs.check(spec.format, spec.codec)
    if spec.encrypt and key is None:
        raise ConfigurationError(f"{spec.name} is set to encrypt backups but APP_ENCRYPTION_KEY is not set")
    created_at = utcnow()
    backup_id = backup_id or new_id()
    backup = Backup(id=backup_id, database=spec.name, format=spec.format, codec=spec.codec,
                    encrypted=spec.encrypt, status=RUNNING, created_at=created_at,
                    filename=make_filename(spec.name, created_at, backup_id,
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
    session.commit()
    events.announce(events.backup_completed, backup)
    return backup


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
    store_errors: dict[str, str | None] = {}
    for store in stores:
        try:
            store.check()
        except StorageUnavailable as exc:
            store_errors[store.location] = str(exc)
    reachable = [store for store in stores if store.location not in store_errors]
    counter = pg.snapshot_counter(spec.conn)
    try:
        path, result, outcomes = stream_dump(file, spec, client, local, reachable, counter, key, progress)
    finally:
        row_counts = counter.counts() if counter is not None else None
    final = replace(file, size_bytes=result.size_bytes, sha256=result.sha256)
    for store in reachable:
        error = outcomes[store.location].error
        if error is None:
            try:
                store.set_metadata(file.filename, object_metadata(final), content_type(final))
            except BackupError as exc:
                error = f"the object was uploaded but its metadata could not be set: {exc}"
        store_errors[store.location] = None if error is None else str(error)
    return Dumped(path, result.size_bytes, result.sha256, row_counts, store_errors)


def stream_dump(file: BackupFile, spec: DumpSpec, client: PgClient, local: LocalStorage, stores: Stores,
                counter: SnapshotCounter | None, key: MasterKey | None,
                progress: Progress | None) -> tuple[Path, StreamResult, dict[str, UploadOutcome]]:
    """pg_dump → codec → the local `.partial` file (committed at the end), each store's upload
    reading it as it grows. On any failure: pg_dump killed, uploads aborted, no file left."""
    options = codecs.pg_dump_compression(spec.format, spec.codec)
    if counter is not None:
        options.append(f"--snapshot={counter.snapshot_id}")
    dump = client.dump(spec.conn, spec.format, options)
    if counter is not None:
        counter.start()
    try:
        partial = local.open_partial(file.filename)
    except OSError as exc:
        dump.kill()
        raise BackupError(local_write_error(local, exc)) from exc
    uploads = {store.location: start_upload(store, file, partial) for store in stores}
    try:
        stored = codecs.encode(dump.stdout, spec.codec, key if spec.encrypt else None)
        result = stream_to_file(stored, partial, list(uploads.values()), progress)
        dump.finish()
        path = partial.commit()
    except BaseException as exc:
        for upload in uploads.values():
            upload.abort()
        dump.kill()
        partial.discard()
        if isinstance(exc, OSError):
            raise BackupError(local_write_error(local, exc)) from exc
        raise
    return path, result, {location: upload.finish() for location, upload in uploads.items()}


def start_upload(store: S3Storage, file: BackupFile, partial: PartialFile) -> Upload:
    """Upload the growing `.partial` file of a backup to `store`, in a thread of its own."""
    metadata, kind = object_metadata(file), content_type(file)
    return Upload(partial.path, lambda reader: store.upload(file.filename, reader, metadata, kind),
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


# --- reading a copy back ---------------------------------------------------------------
# Each of these ends the catalog transaction before bytes move, and returns the file opened:
# what is restored, uploaded or copied is the very file whose SHA-256 was just checked.

def open_local_copy(session: Session, backup: Backup, local: LocalStorage) -> BinaryIO | None:
    """The local file, opened, if it is there and its SHA-256 (read through this handle) matches;
    records what was found."""
    file = backup.file()
    session.commit()
    try:
        handle = local.open(file.filename)
    except (FileNotFoundError, IsADirectoryError):
        if backup.copy(LOCAL):
            set_copy(backup, LOCAL, local.uri(file.filename), MISSING, error="file not found")
            session.commit()
        return None
    digest = sha256_of(handle)
    size = handle.tell()
    if file.sha256 and digest != file.sha256:
        handle.close()
        set_copy(backup, LOCAL, local.uri(file.filename), COPY_FAILED, error="SHA-256 mismatch")
        session.commit()
        return None
    handle.seek(0)
    set_copy(backup, LOCAL, local.uri(file.filename), PRESENT, size_bytes=size, verified=file.sha256 is not None)
    session.commit()
    return handle


def fetch_from_store(session: Session, backup: Backup, store: S3Storage, dest: ScratchFile,
                     progress: Progress | None = None) -> BinaryIO:
    """Stream the store's copy into `dest`, check its SHA-256, commit `dest` and return it opened;
    records the outcome. On any failure `dest` is discarded."""
    try:
        file = backup.file()
        uri = store.uri(file.filename)
        session.commit()
        with store.open(file.filename) as stream:
            result = stream_to_file(stream, dest, progress=progress)
        if file.sha256 and result.sha256 != file.sha256:
            raise ChecksumMismatch(f"the {store.location} copy of {file.filename} does not match its recorded SHA-256")
        handle = dest.commit_open()
    except BaseException as exc:
        dest.discard()
        if isinstance(exc, (ObjectNotFound, ChecksumMismatch)):
            set_copy(backup, store.location, uri, MISSING if isinstance(exc, ObjectNotFound) else COPY_FAILED,
                     error="object not found" if isinstance(exc, ObjectNotFound) else "SHA-256 mismatch")
            session.commit()
        raise
    set_copy(backup, store.location, uri, PRESENT, verified=file.sha256 is not None)
    session.commit()
    return handle


# A copy that cannot be read: the next store is tried.
UNREADABLE = (ObjectNotFound, StorageUnavailable, ChecksumMismatch)


def healthy_first(backup: Backup, stores: Stores) -> list[S3Storage]:
    """The stores, those whose copy of `backup` is recorded present first (otherwise in order)."""
    def known_bad(store: S3Storage) -> bool:
        copy = backup.copy(store.location)
        return copy is not None and copy.status != PRESENT
    return sorted(stores, key=known_bad)


def missing_error(backup: Backup, failures: Sequence[tuple[str, BackupError]] = ()) -> BackupFileMissing:
    """BackupFileMissing, naming each place whose copy is there but unusable (corrupt, or its store
    unreachable): `failures` are (location, error) of the stores tried. Copies that simply do not
    exist need no words: "Backup file not found locally or in storage" says it."""
    copy = backup.copy(LOCAL)
    reasons = [f"local: {copy.error}"] if copy and copy.error and copy.status == COPY_FAILED else []
    reasons += [f"{location}: {exc}" for location, exc in failures if not isinstance(exc, ObjectNotFound)]
    return BackupFileMissing("; ".join(reasons))


def fetch_to(session: Session, backup: Backup, stores: Stores, dest: Callable[[], ScratchFile],
             progress: Progress | None = None) -> BinaryIO:
    """The first healthy store's copy written to a new `dest()`, SHA-256 checked, opened;
    BackupFileMissing if none."""
    failures = []
    for store in healthy_first(backup, stores):
        try:
            return fetch_from_store(session, backup, store, dest(), progress)
        except UNREADABLE as exc:
            failures.append((store.location, exc))
    raise missing_error(backup, failures)


def open_checked_copy(session: Session, backup: Backup, local: LocalStorage, stores: Stores,
                      progress: Progress | None = None) -> BinaryIO:
    """A checked local file of `backup`, opened: the one on disk, else fetched again from the first
    healthy store (and kept there)."""
    handle = open_local_copy(session, backup, local)
    if handle is not None:
        return handle
    handle = fetch_to(session, backup, stores, lambda: local.open_partial(backup.filename), progress)
    set_copy(backup, LOCAL, local.uri(backup.filename), PRESENT, size_bytes=backup.size_bytes, verified=True)
    session.commit()
    return handle


# --- download, delete --------------------------------------------------------------------

def decoding_key(backup: Backup | BackupFile, key: MasterKey | None) -> MasterKey | None:
    """The key to decrypt `backup` with (None if it is not encrypted); a clear error if missing."""
    if not backup.encrypted:
        return None
    if key is None:
        raise ConfigurationError(f"backup {backup.id} is encrypted; set APP_ENCRYPTION_KEY to read it")
    return key


def download_backup(session: Session, backup_id: str, output: Path, local: LocalStorage,
                    stores: Stores, *, decode: bool = False, key: MasterKey | None = None,
                    progress: Progress | None = None) -> Backup:
    """Write the backup to `output` (via a `.partial` file beside it): the stored bytes, checked
    against their SHA-256, or with `decode` pg_dump's original output (decrypted, decompressed)."""
    backup = get_completed_backup(session, backup_id)
    key = decoding_key(backup, key) if decode else None
    output = Path(output)
    if output.is_dir():
        output = output / backup.filename
    file = backup.file()
    stored = open_local_copy(session, backup, local)
    if stored is None and not decode:
        fetch_to(session, backup, stores, lambda: writable(output), progress).close()
        return backup
    if stored is None:
        stored = open_checked_copy(session, backup, local, stores, progress)
    with stored:
        dest = writable(output)
        try:
            stream = codecs.decode(stored, file.format, file.codec, key) if decode else stored
            shutil.copyfileobj(stream, dest, 1024 * 1024)
            dest.commit()
        except BaseException:
            dest.discard()
            raise
    return backup


def writable(output: Path) -> PartialFile:
    """A partial file beside `output`; ConfigurationError saying why when it cannot be written there."""
    try:
        return PartialFile(output)
    except OSError as exc:
        raise ConfigurationError(f"cannot write {output}: {exc.strerror or exc}") from exc


class BackupStream:
    """A completed backup's bytes from one copy, checked against its SHA-256 as they flow.

    Iterating yields chunks. The last chunk is held back until the whole content has
    matched, so a corrupt copy never reaches the reader complete: the copy is marked
    failed and ChecksumMismatch is raised instead. The source is released once read;
    `close()` releases it early (it may be called more than once). `file` holds plain
    values: the response streams with no catalog transaction open.
    """

    def __init__(self, session: Session, file: BackupFile, location: str, uri: str,
                 source: BinaryIO, close: Callable[[], None]):
        self.file = file
        self.location = location
        self._session = session
        self._uri = uri
        self._source = source
        self.close = close

    def __iter__(self) -> Iterator[bytes]:
        digest = hashlib.sha256()
        held = b""
        try:
            while chunk := self._source.read(CHUNK_SIZE):
                digest.update(chunk)
                if held:
                    yield held
                held = chunk
        finally:
            self.close()
        if self.file.sha256 and digest.hexdigest() != self.file.sha256:
            backup = get_backup(self._session, self.file.id)
            set_copy(backup, self.location, self._uri, COPY_FAILED, error="SHA-256 mismatch")
            self._session.commit()
            raise ChecksumMismatch(f"the {self.location} copy of {self.file.filename} "
                                   "does not match its recorded SHA-256")
        if held:
            yield held


def open_backup_stream(session: Session, backup_id: str, local: LocalStorage, stores: Stores) -> BackupStream:
    """A completed backup's bytes for a streaming download, never loaded whole into memory.

    Reads the local file unless it is gone or known to be corrupt, else the first S3 object
    that can be opened; raises BackupFileMissing when none can be read. The catalog
    transaction is over when it returns.
    """
    backup = get_completed_backup(session, backup_id)
    file = backup.file()
    local_copy = backup.copy(LOCAL)
    if local.exists(file.filename):
        if not (local_copy and local_copy.status == COPY_FAILED):
            session.commit()
            source = local.open(file.filename)
            return BackupStream(session, file, LOCAL, local.uri(file.filename), source, source.close)
    elif local_copy and local_copy.status == PRESENT:
        set_copy(backup, LOCAL, local.uri(file.filename), MISSING, error="file not found")
        session.commit()
    failures = []
    for store in healthy_first(backup, stores):
        resources = ExitStack()
        try:
            source = resources.enter_context(store.open(file.filename))
        except ObjectNotFound as exc:
            set_copy(backup, store.location, store.uri(file.filename), MISSING, error="object not found")
            session.commit()
            failures.append((store.location, exc))
            continue
        except StorageUnavailable as exc:
            failures.append((store.location, exc))
            continue
        session.commit()
        return BackupStream(session, file, store.location, store.uri(file.filename), source, resources.close)
    raise missing_error(backup, failures)


def has_store_copy(backup: Backup, location: str) -> bool:
    """Whether the catalog says `backup` has an object at that store (so deleting it matters)."""
    copy = backup.copy(location)
    if copy is None:  # rows from before copies were recorded name their object in storage_url
        return location == S3 and backup.storage_url is not None
    return copy.status == PRESENT


def delete_backup(session: Session, backup_id: str, local: LocalStorage, stores: Stores) -> Backup:
    """Remove a backup from every S3 store, then the catalog, then disk. A copy already gone is fine.

    If an object the catalog knows of cannot be removed (its store is down, or no longer
    configured), the catalog row and the local file stay; an object already removed from
    another store is then recorded as missing.
    """
    backup = get_backup(session, backup_id)
    if backup.status == RUNNING:
        raise InvalidBackupState(f"backup {backup.id} is still running")
    unconfigured = {S3, *(copy.location for copy in backup.copies)} - {LOCAL, *(store.location for store in stores)}
    for location in sorted(unconfigured):
        if has_store_copy(backup, location):
            where = "S3 but MINIO_ENDPOINT is not set" if location == S3 else f"{location} but it is not in S3_STORES"
            raise StorageUnavailable(f"backup {backup.id} has a copy in {where}; nothing deleted")
    removed = []
    for store in stores:
        try:
            store.delete(backup.filename)
        except StorageUnavailable:
            if has_store_copy(backup, store.location):
                for gone in removed:
                    set_copy(backup, gone.location, gone.uri(backup.filename), MISSING, error="deleted")
                session.commit()
                raise
        else:
            removed.append(store)
    filename = backup.filename
    session.delete(backup)
    session.commit()
    local.delete(filename)
    return backup
