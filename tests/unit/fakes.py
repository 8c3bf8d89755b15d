"""Fake adapters for unit tests of the service layer."""
import io
from contextlib import contextmanager
from types import SimpleNamespace

from backup_app.adapters.databases import Swap
from backup_app.adapters.store import StoredObject
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


class FakeServer:
    """A server's databases by name (`databases`: name → what was restored into it)."""

    def __init__(self, databases: dict[str, list[bytes]]):
        self.databases = databases
        self.swaps = []

    def exists(self, name):
        return name in self.databases

    def swap_problems(self, name):
        return []

    def role_names(self):
        return {"postgres"}

    def shape(self, name):
        return SimpleNamespace(name=name, allow_connections=True)

    def create(self, name, like=None):
        assert name not in self.databases, f"{name} exists"
        self.databases[name] = []

    def give_shape(self, name, like):
        assert name in self.databases

    def drop(self, name):
        self.databases.pop(name, None)

    def swap(self, current, replacement, previous, allow=True):
        self.databases[previous] = self.databases.pop(current)
        self.databases[current] = self.databases.pop(replacement)
        self.swaps.append((current, previous))
        return Swap(0.01, 0)

    def subscriptions(self, name):
        return []

    def logical_slots(self, name):
        return []


class FakePg:
    """PgTools with one client, 15.4, whose pg_dump 'dumps' fixed bytes, optionally failing at the end;
    restores go into the databases of one fake server (`restored`: what each restore read)."""

    version = "15.4"

    def __init__(self, data: bytes = b"PGDMP" + bytes(range(256)) * 5000, error: str | None = None,
                 databases: tuple[str, ...] = ("shop",)):
        self.data = data
        self.error = error
        self.restored = []
        self.server = FakeServer({name: [] for name in databases})

    def databases(self, conn):
        return self.server

    def table_row_counts(self, conn):
        return {}

    def snapshot_counter(self, conn):
        return None

    def for_dump(self, conn):
        return "15.2", self

    def for_restore(self, conn, dump_version):
        return self

    def dump(self, conn, fmt="custom", options=()):
        self.last_dump = FakeDump(self.data, self.error)
        return self.last_dump

    lock_timeout = 60

    def archive_schema(self, source):
        """The archive's SQL: no role named but the superuser's."""
        source.read()
        return io.BytesIO(b"ALTER TABLE public.t OWNER TO postgres;\n")

    def restore(self, conn, source, fmt, *, in_place=False, jobs=1, lock_timeout=60, progress=None,
                no_owner=False):
        data = source.read()
        self.restored.append(data)
        self.server.databases[conn.dbname].append(data)


class FakeS3:
    """An in-memory bucket (a Store); `down` makes every call fail, `fail_upload_after` cuts uploads."""

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

    def put(self, filename, stream, metadata, content_type):
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

    def stat(self, filename):
        self._check_up()
        if filename not in self.objects:
            return None
        return StoredObject(len(self.objects[filename]), metadata={k.lower(): v for k, v in
                                                                   self.metadata[filename].items()})

    def list(self):
        self._check_up()
        return [(name, len(data)) for name, data in sorted(self.objects.items())]

    def delete(self, filename):
        self._check_up()
        self.objects.pop(filename, None)
