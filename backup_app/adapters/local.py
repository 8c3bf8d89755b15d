"""The local backup folder: no name can address a path outside it; files are written as
partial files and renamed into place.
"""
import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from backup_app.adapters.store import StoredObject
from backup_app.errors import ObjectNotFound, UnsafeFilename

# Filenames are made by the app, never taken from a user; this is the second fence.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
READ_SIZE = 1024 * 1024


def is_safe_name(filename: str) -> bool:
    """Whether `filename` is a plain file name: no folder, nothing outside the folder it is put in."""
    return bool(SAFE_NAME.fullmatch(filename)) and ".." not in filename


def check_name(filename: str) -> str:
    """Return `filename` if it is a plain file name, else raise UnsafeFilename."""
    if not is_safe_name(filename):
        raise UnsafeFilename(filename)
    return filename


def sha256_of(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(READ_SIZE):
        digest.update(chunk)
    return digest.hexdigest()


class ScratchFile:
    """An unnamed temporary file in `folder`, gone once closed: a copy to be read only once."""

    def __init__(self, folder: Path):
        self._file = tempfile.TemporaryFile(dir=folder, buffering=0)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._file.write(view):]

    def commit_open(self) -> BinaryIO:
        """The file, opened for reading from its start: the very bytes written."""
        self._file.seek(0)
        return self._file

    def discard(self) -> None:
        self._file.close()


class PartialFile(ScratchFile):
    """A new file written as `<name>.<random>.partial`, fsynced and renamed into place on commit.

    Each writer has a partial file of its own, so two fetches of the same backup never write
    into one file; the last to commit replaces the other's (identical, checked) file whole.
    """

    def __init__(self, final_path: Path):
        self.final_path = final_path
        self.path = final_path.with_name(f"{final_path.name}.{secrets.token_hex(4)}.partial")
        self._file = open(self.path, "x+b", buffering=0)

    def commit(self) -> Path:
        self.commit_open().close()
        return self.final_path

    def commit_open(self) -> BinaryIO:
        """Commit, and return the file opened for reading from its start: the very bytes written,
        whatever later replaces the file at that name."""
        os.fsync(self._file.fileno())
        os.replace(self.path, self.final_path)
        fsync_dir(self.final_path.parent)
        return super().commit_open()

    def discard(self) -> None:
        super().discard()
        self.path.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage:
    """Backup files in one folder (a Store); no name can address a path outside it."""

    location = "local"

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, filename: str) -> Path:
        path = (self.root / check_name(filename)).resolve()
        if path.parent != self.root:
            raise UnsafeFilename(filename)
        return path

    def uri(self, filename: str) -> str:
        return str(self.path(filename))

    def check(self) -> None:
        """Raise OSError unless a file can be written in the folder (an unnamed temporary one)."""
        with tempfile.TemporaryFile(dir=self.root) as probe:
            probe.write(b"ready")

    def exists(self, filename: str) -> bool:
        return self.path(filename).is_file()

    def size(self, filename: str) -> int:
        return self.path(filename).stat().st_size

    def open_partial(self, filename: str) -> PartialFile:
        return PartialFile(self.path(filename))

    def put(self, filename: str, stream: BinaryIO, metadata: dict[str, str] | None = None,
            content_type: str | None = None) -> None:
        """Write the file through a partial file renamed into place (metadata: S3's alone)."""
        partial = self.open_partial(filename)
        try:
            while chunk := stream.read(READ_SIZE):
                partial.write(chunk)
            partial.commit()
        except BaseException:
            partial.discard()
            raise

    def open(self, filename: str) -> BinaryIO:
        """The file opened for reading (a context manager too); ObjectNotFound if there is none."""
        try:
            return open(self.path(filename), "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFound(f"{self.path(filename)} does not exist") from None

    def stat(self, filename: str) -> StoredObject | None:
        try:
            found = self.path(filename).stat()
        except FileNotFoundError:
            return None
        return StoredObject(found.st_size, datetime.fromtimestamp(found.st_mtime, timezone.utc))

    def sha256(self, filename: str) -> str:
        with self.open(filename) as f:
            return sha256_of(f)

    def delete(self, filename: str) -> None:
        """Remove the file; one already gone is fine."""
        self.path(filename).unlink(missing_ok=True)

    def list(self) -> Iterator[tuple[str, int]]:
        """(name, size) of the complete files in the folder (no `.partial`, nothing hidden)."""
        for path in sorted(self.root.iterdir()):
            if path.is_file() and SAFE_NAME.fullmatch(path.name) and not path.name.endswith(".partial"):
                yield path.name, path.stat().st_size

    def remove_partial(self, filename: str) -> bool:
        """Delete the `.partial` leftovers of interrupted writes of one file (`<name>.<random>.partial`,
        or `<name>.partial` of earlier versions); False if there were none."""
        name = self.path(filename).name
        leftovers = [*self.root.glob(f"{name}.*.partial"), *self.root.glob(f"{name}.partial")]
        for partial in leftovers:
            partial.unlink(missing_ok=True)
        return bool(leftovers)

    def scratch_file(self) -> ScratchFile:
        return ScratchFile(self.root)
