"""Fake adapters for unit tests of the service layer."""
import io
from contextlib import contextmanager

from backup_app.errors import DumpFailed, ObjectNotFound, StorageUnavailable


class FakeDump:
    def __init__(self, data: bytes, error: str | None):
        self.stdout = io.BytesIO(data)
        self.pid = 0
        self.error = error
        self.killed = False

    def finish(self):
        if self.error:
            raise DumpFailed(self.error)

    def kill(self):
        self.killed = True


class FakePg:
    """PgTools with one client, 15.4, whose pg_dump 'dumps' fixed bytes, optionally failing at the end."""

    version = "15.4"

    def __init__(self, data: bytes = b"PGDMP" + bytes(range(256)) * 5000, error: str | None = None):
        self.data = data
        self.error = error
        self.restored = []

    def snapshot_counter(self, conn):
        return None

    def for_dump(self, conn):
        return "15.2", self

    def for_restore(self, conn, dump_version):
        return self

    def dump(self, conn, fmt="custom", options=()):
        self.last_dump = FakeDump(self.data, self.error)
        return self.last_dump

    def database_exists(self, conn):
        return True

    lock_timeout = 60

    def restore(self, conn, source, fmt, lock_timeout=60):
        self.restored.append(source.read())


class FakeS3:
    """An in-memory bucket; `down` makes every call fail, `fail_upload_after` cuts uploads."""

    def __init__(self, location: str = "s3"):
        self.location = location
        self.bucket = "fake"
        self.objects: dict[str, bytes] = {}
        self.metadata: dict[str, dict] = {}
        self.down = False
        self.fail_upload_after: int | None = None

    def _check_up(self):
        if self.down:
            raise StorageUnavailable("cannot reach S3 at fake: connection refused")

    def uri(self, filename):
        return f"s3://{self.bucket}/{filename}"

    def check(self):
        self._check_up()

    def upload(self, filename, stream, metadata, content_type):
        self._check_up()
        data = b""
        while chunk := stream.read(64 * 1024):
            data += chunk
            if self.fail_upload_after is not None and len(data) > self.fail_upload_after:
                raise StorageUnavailable("connection reset during upload")
        self.objects[filename] = data
        self.metadata[filename] = dict(metadata, content_type=content_type)

    def set_metadata(self, filename, metadata, content_type):
        self._check_up()
        self.metadata[filename] = dict(metadata, content_type=content_type)

    @contextmanager
    def open(self, filename):
        self._check_up()
        if filename not in self.objects:
            raise ObjectNotFound(filename)
        yield io.BytesIO(self.objects[filename])

    def delete(self, filename):
        self._check_up()
        self.objects.pop(filename, None)
