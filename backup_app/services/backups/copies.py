"""A backup's copies: their records, and reading one back whose SHA-256 matches (the local
file, else the first healthy store's), with no catalog transaction open while it streams.
"""
from collections.abc import Callable, Sequence
from typing import BinaryIO

from sqlalchemy.orm import Session

from backup_app.adapters.local import LocalStorage, ScratchFile, sha256_of
from backup_app.adapters.pipeline import stream_to_file
from backup_app.adapters.store import Store, Stores
from backup_app.core import codecs
from backup_app.core.crypto import MasterKey
from backup_app.core.streams import CountingReader, Progress
from backup_app.errors import (
    BackupError,
    BackupFileMissing,
    ChecksumMismatch,
    ConfigurationError,
    ObjectNotFound,
    StorageUnavailable,
)
from backup_app.models import (
    COPY_FAILED,
    LOCAL,
    MISSING,
    PRESENT,
    Backup,
    BackupCopy,
    BackupFile,
    utcnow,
)


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


def open_local_copy(session: Session, backup: Backup, local: LocalStorage,
                    progress: Progress | None = None) -> BinaryIO | None:
    """The local file, opened, if it is there and its SHA-256 (read through this handle, told to
    `progress`) matches; records what was found."""
    file = backup.file()
    session.commit()
    try:
        handle = local.open(file.filename)
    except ObjectNotFound:
        if backup.copy(LOCAL):
            set_copy(backup, LOCAL, local.uri(file.filename), MISSING, error="file not found")
            session.commit()
        return None
    digest = sha256_of(CountingReader(handle, progress) if progress else handle)
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


def fetch_from_store(session: Session, backup: Backup, store: Store, dest: ScratchFile,
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


def healthy_first(backup: Backup, stores: Stores) -> list[Store]:
    """The stores, those whose copy of `backup` is recorded present first (otherwise in order)."""
    def known_bad(store: Store) -> bool:
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
    handle = open_local_copy(session, backup, local, progress)
    if handle is not None:
        return handle
    handle = fetch_to(session, backup, stores, lambda: local.open_partial(backup.filename), progress)
    set_copy(backup, LOCAL, local.uri(backup.filename), PRESENT, size_bytes=backup.size_bytes, verified=True)
    session.commit()
    return handle


def decoding_key(backup: Backup | BackupFile, key: MasterKey | None) -> MasterKey | None:
    """The key to decrypt `backup` with (None if it is not encrypted); a clear error if missing."""
    if not backup.encrypted:
        return None
    if key is None:
        raise ConfigurationError(f"backup {backup.id} is encrypted; set APP_ENCRYPTION_KEY to read it")
    return key
