"""No catalog transaction or connection stays open while bytes stream: on a PostgreSQL catalog
a transaction held for the length of a dump, a restore or a download holds locks for hours
(blocking `flask db upgrade`), and 15 downloads at once would empty the connection pool."""
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event

from backup_app.extensions import db
from tests.helpers import create, invoke
from tests.web_helpers import add_user, sign_in

pytestmark = pytest.mark.integration
on_a_postgresql_catalog = pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)


MIB = 1024 * 1024


def thread_io(tid: int) -> int:
    """Bytes the thread `tid` of this process has read and written so far (files, pipes, sockets)."""
    fields = dict(line.split(": ") for line in Path(f"/proc/self/task/{tid}/io").read_text().splitlines())
    return int(fields["rchar"]) + int(fields["wchar"])


class PoolWatch:
    """For each catalog connection checked out of the pool: the bytes its thread moved meanwhile. A
    thread that holds a connection (and so any transaction) while it streams a backup moves megabytes;
    one that only talks to the catalog, kilobytes."""

    def __init__(self):
        self.moved: list[int] = []
        self.total = 0

    @property
    def most(self) -> int:
        return max(self.moved, default=0)

    def __str__(self) -> str:
        return (f"a thread moved {self.most / MIB:.1f} MiB while holding a catalog connection "
                f"(the operation: {self.total / MIB:.1f} MiB)")


@contextmanager
def checkouts(app):
    """Watch the catalog's connection pool while the block runs."""
    with app.app_context():
        engine = db.engine
    watch, started = PoolWatch(), {}

    def checkout(_dbapi, record, _proxy):
        tid = threading.get_native_id()
        started[id(record)] = (tid, thread_io(tid))

    def checkin(_dbapi, record):
        if id(record) in started:
            tid, at = started.pop(id(record))
            watch.moved.append(thread_io(tid) - at)

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)
    began = thread_io(threading.get_native_id())
    try:
        yield watch
    finally:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "checkin", checkin)
        watch.total = thread_io(threading.get_native_id()) - began
        watch.moved.extend(thread_io(tid) - at for tid, at in started.values())  # still out at the end


@pytest.fixture
def big_app(make_app, pg15_server, big_db, s3_settings):
    app = make_app(BACKUP_DATABASE_URL=pg15_server.url(big_db), **s3_settings)
    invoke(app.test_cli_runner(), "storage", "init")
    return app


@on_a_postgresql_catalog
def test_no_connection_is_held_while_a_dump_a_restore_a_verify_and_a_sync_stream(big_app, pg15_server, big_db,
                                                                                  backup_dir):
    runner = big_app.test_cli_runner()
    with checkouts(big_app) as dump:
        backup = create(runner)
    (backup_dir / backup["filename"]).unlink()  # the restore fetches it from S3 first
    with checkouts(big_app) as restore:
        invoke(runner, "backup", "restore", backup["id"], "--yes", "--drop-previous")
    with checkouts(big_app) as verify:
        invoke(runner, "backup", "verify", backup["id"])
    (backup_dir / backup["filename"]).unlink()
    with checkouts(big_app) as sync:
        invoke(runner, "backup", "sync", "--fetch-local")

    for what, watch in {"dump": dump, "restore": restore, "verify": verify, "sync": sync}.items():
        assert watch.total >= backup["size_bytes"], f"{what}: {watch}"  # the backup streamed, in this thread
        assert watch.most < MIB, f"{what}: {watch}"
    assert pg15_server.psql("SELECT count(*) FROM blobs", big_db) == "200000"
    assert (backup_dir / backup["filename"]).exists(), "the sync fetched it back"


@on_a_postgresql_catalog
def test_no_connection_is_held_while_a_download_streams(big_app):
    backup = create(big_app.test_cli_runner())
    add_user(big_app)
    client = big_app.test_client()
    sign_in(client)

    with checkouts(big_app) as watch:
        response = client.get(f"/backups/{backup['id']}/download", buffered=False)
        first = next(response.response)
        with big_app.app_context():
            out_now = db.engine.pool.checkedout()
        size = len(first) + sum(len(chunk) for chunk in response.response)
        response.close()

    assert size == backup["size_bytes"]
    assert out_now == 0, "the response streams with no catalog connection checked out"
    assert watch.total >= size and watch.most < MIB, str(watch)
