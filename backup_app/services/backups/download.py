"""Downloads: a backup written to a file, or streamed to a web response, checked on the way.
"""
import hashlib
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from backup_app.adapters.local import LocalStorage, PartialFile
from backup_app.adapters.pipeline import CHUNK_SIZE
from backup_app.adapters.store import Stores
from backup_app.core import codecs
from backup_app.core.crypto import MasterKey
from backup_app.core.streams import Progress
from backup_app.errors import (
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
    BackupFile,
)
from backup_app.services.backups.copies import (
    decoding_key,
    fetch_to,
    healthy_first,
    missing_error,
    open_checked_copy,
    open_local_copy,
    set_copy,
)
from backup_app.services.backups.queries import get_backup, get_completed_backup


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
