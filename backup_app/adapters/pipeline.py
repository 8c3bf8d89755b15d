"""The streaming dump: one pass over pg_dump's output feeds the SHA-256, the local file and the uploads.

An upload never makes pg_dump wait. Each runs in its own thread (one per S3 store) and reads
the local `.partial` file as it grows (DESIGN.md: feeding the uploader through a pipe stalls
pg_dump on every part and is slower than not streaming at all). Memory stays bounded by the
chunk size plus one upload part per store, whatever the size of the database.
"""
import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from backup_app.adapters.local import ScratchFile

CHUNK_SIZE = 1024 * 1024


class PipelineAborted(Exception):
    """Raised to the uploader when the dump failed: the upload must not complete."""


class GrowingFileReader:
    """A reader of a file that another thread is still writing.

    `read(n)` blocks until `n` bytes are written or the writer finished, so the
    uploader sees whole parts; it raises PipelineAborted once the writer aborted.
    """

    def __init__(self, path):
        self._file = open(path, "rb")
        self._cond = threading.Condition()
        self._written = 0
        self._read = 0
        self._finished = False
        self._aborted = False

    # Writer side.
    def advance(self, nbytes: int) -> None:
        with self._cond:
            self._written += nbytes
            self._cond.notify_all()

    def finish(self) -> None:
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._cond.notify_all()

    # Reader side.
    def read(self, size: int = -1) -> bytes:
        with self._cond:
            self._cond.wait_for(lambda: self._aborted or self._finished
                                or (size >= 0 and self._written - self._read >= size))
            if self._aborted:
                raise PipelineAborted("the dump failed; upload abandoned")
            available = self._written - self._read
        nbytes = available if size < 0 else min(size, available)
        data = self._file.read(nbytes)
        self._read += len(data)
        return data

    def close(self) -> None:
        self._file.close()


@dataclass
class UploadOutcome:
    """What the upload thread did: `error` is None when the object is complete."""

    error: Exception | None = None


class Upload:
    """Runs `upload(reader)` in a thread (called `name`) fed by a GrowingFileReader."""

    def __init__(self, partial_path, upload: Callable[[BinaryIO], None], name: str = "upload"):
        self.reader = GrowingFileReader(partial_path)
        self.outcome = UploadOutcome()
        self._thread = threading.Thread(target=self._run, args=(upload,), name=name, daemon=True)
        self._thread.start()

    def _run(self, upload: Callable[[BinaryIO], None]) -> None:
        try:
            upload(self.reader)
        except Exception as exc:  # noqa: BLE001 - any failure just marks this copy failed
            self.outcome.error = exc
        finally:
            self.reader.close()

    def finish(self) -> UploadOutcome:
        self.reader.finish()
        self._thread.join()
        return self.outcome

    def abort(self) -> None:
        self.reader.abort()
        self._thread.join()


@dataclass
class StreamResult:
    size_bytes: int
    sha256: str


def stream_to_file(source: BinaryIO, partial: ScratchFile, uploads: Sequence[Upload] = (),
                   progress: Callable[[int], None] | None = None) -> StreamResult:
    """Copy `source` to `partial` in chunks, hashing as it goes and feeding every upload.

    The caller commits or discards `partial` and finishes or aborts the uploads.
    """
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(CHUNK_SIZE):
        digest.update(chunk)
        partial.write(chunk)
        size += len(chunk)
        for upload in uploads:
            upload.reader.advance(len(chunk))
        if progress:
            progress(size)
    return StreamResult(size, digest.hexdigest())
