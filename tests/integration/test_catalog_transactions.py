"""No catalog transaction or connection stays open while bytes stream: on a PostgreSQL catalog
a transaction held for the length of a dump, a restore or a download holds locks for hours
(blocking `flask db upgrade`), and 15 downloads at once would empty the connection pool."""
import time
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from backup_app.extensions import db
from tests.helpers import create, invoke
from tests.web_helpers import add_user, sign_in

pytestmark = pytest.mark.integration
on_a_postgresql_catalog = pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)


class PoolWatch:
    """How long each catalog connection was checked out of the pool, and how long it all took."""

    def __init__(self):
        self.durations: list[float] = []
        self.seconds = 0.0

    @property
    def longest(self) -> float:
        return max(self.durations, default=0.0)

    def __str__(self) -> str:
        return f"a catalog connection was held {self.longest:.2f} s of {self.seconds:.2f} s"


@contextmanager
def checkouts(app):
    """Watch the catalog's connection pool while the block runs."""
    with app.app_context():
        engine = db.engine
    watch, started = PoolWatch(), {}

    def checkout(_dbapi, record, _proxy):
        started[id(record)] = time.monotonic()

    def checkin(_dbapi, record):
        if id(record) in started:
            watch.durations.append(time.monotonic() - started.pop(id(record)))

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)
    began = time.monotonic()
    try:
        yield watch
    finally:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "checkin", checkin)
        watch.seconds = time.monotonic() - began
        watch.durations.extend(time.monotonic() - at for at in started.values())  # still out at the end


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
        assert watch.longest < min(0.5, watch.seconds / 3), f"{what}: {watch}"
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
    assert watch.longest < 0.5, str(watch)
