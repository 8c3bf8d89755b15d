"""What every place a backup is kept offers, the local folder and each S3 store alike: put a
stream, open a stream, stat, delete, list. The services loop over places through this."""
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class StoredObject:
    """A stored file or object: its size and time, and (in S3) its content type, ETag and user
    metadata (lowercase names, without `x-amz-meta-`)."""

    size: int
    modified: datetime | None = None
    content_type: str | None = None
    etag: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


class Store(Protocol):
    """A place that keeps backups under their file names; `location` names its copies in the catalog."""

    location: str

    def uri(self, filename: str) -> str:
        """Where the copy is, for people: a path or `s3://bucket/key`."""

    def check(self) -> None:
        """Raise (StorageUnavailable, OSError) unless the place can be written now."""

    def put(self, filename: str, stream: BinaryIO, metadata: dict[str, str], content_type: str) -> None:
        """Store the bytes read from `stream`; all of them or none (the place never shows half a file)."""

    def open(self, filename: str) -> AbstractContextManager[BinaryIO]:
        """The stored bytes as a stream (ObjectNotFound when there are none, StorageUnavailable)."""

    def stat(self, filename: str) -> StoredObject | None:
        """What is stored under `filename`, or None."""

    def delete(self, filename: str) -> None:
        """Remove it; a file that is already gone is not an error."""

    def list(self) -> Iterator[tuple[str, int]]:
        """(name, size) of everything kept there."""


Stores = Sequence[Store]  # the S3 stores (empty: local only); the local folder is given beside them
PITR_FOLDER = "pitr/"  # the WAL archive and base backups: BACKUP_DIR/pitr, and this prefix in each bucket
