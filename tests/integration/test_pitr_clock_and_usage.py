"""PITR against a real server and real stores: base-backup times on the server's clock, and the
bytes the archive takes in each store counted by `storage usage`, the storage page and the dashboard."""
import json
from datetime import datetime, timedelta

from backup_app import models, wiring
from backup_app.core.formatting import human_size
from backup_app.extensions import db
from backup_app.jobs.pitr import BASE_BACKUP
from tests.conftest import both_catalogs
from tests.helpers import invoke
from tests.integration.pitr_support import (  # noqa: F401 - fixtures
    archiving,
    covered,
    insert_batch,
    pitr_app,
    pitr_cluster,
    receivers,
    wait_for,
)
from tests.web_helpers import add_user, sign_in, text


class AnHourAhead(datetime):
    """The app machine's clock, an hour ahead of the database server's."""

    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + timedelta(hours=1)


def server_now(cluster) -> datetime:
    return datetime.fromisoformat(cluster.psql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                                               "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"))


def test_base_backup_times_are_the_servers_clock_not_the_apps(pitr_app, pitr_cluster, monkeypatch):
    runner = pitr_app.test_cli_runner()
    invoke(runner, "pitr", "enable", "shop")
    monkeypatch.setattr(models, "datetime", AnHourAhead)
    before = server_now(pitr_cluster)

    base = json.loads(invoke(runner, "pitr", "base-backup", "shop", "--json").stdout)

    after = server_now(pitr_cluster)
    started, finished = (datetime.fromisoformat(base[key].replace("Z", "+00:00")) for key in
                         ("started_at", "finished_at"))
    assert before <= started <= finished <= after, (before, base["started_at"], base["finished_at"], after)
    state = json.loads(invoke(runner, "pitr", "status", "shop", "--json").stdout)
    assert state["base_backups"][0]["finished_at"] == base["finished_at"]


def test_a_base_backup_expects_the_size_of_the_whole_server(pitr_app, pitr_cluster):
    runner = pitr_app.test_cli_runner()
    invoke(runner, "pitr", "enable", "shop")
    json.loads(invoke(runner, "pitr", "base-backup", "shop", "--json").stdout)

    with pitr_app.app_context():
        job = db.session.query(models.Job).filter_by(kind=BASE_BACKUP).one()
        assert job.status == "completed" and job.bytes_total, job.log
        conn = wiring.target_conn("shop")
        server, database = wiring.pg_tools().server_size(conn), wiring.pg_tools().database_size(conn)
        broken = wiring.pg_tools().server_size(conn.with_dbname("no_such_database"))
    listed = int(pitr_cluster.psql("SELECT sum(pg_database_size(oid)) FROM pg_database"))
    assert server > database > 0 and abs(server - listed) < listed // 10, (server, database, listed)
    assert broken == 0, "a server that cannot be asked expects nothing"


def stored_bytes(app) -> dict[str, int]:
    """What each store holds under its PITR folder, as the store lists it."""
    with app.app_context():
        return {store.location: sum(size for _, size in store.list()) for store in wiring.pitr_stores()}


@both_catalogs  # the copies' JSON is read by the catalog's own SQL
def test_pitr_bytes_are_counted_per_location_on_the_cli_the_storage_page_and_the_dashboard(
        pitr_app, pitr_cluster, receivers):
    runner = pitr_app.test_cli_runner()
    archiving(runner, receivers)
    pitr_cluster.psql("SELECT pg_switch_wal()")
    written = insert_batch(pitr_cluster, 1)
    wait_for(lambda: covered(runner, written), what="a batch archived")
    receivers.stop()  # nothing more arrives while the stores and the catalog are compared
    stored = stored_bytes(pitr_app)
    assert stored["local"] > 0 and stored["s3"] > 0

    usage = json.loads(invoke(runner, "storage", "usage", "--json").stdout)

    assert {location: usage[location]["pitr_bytes"] for location in ("local", "s3")} == stored
    assert usage["by_database"]["shop"] == {location: {"bytes": 0, "backups": 0, "pitr_bytes": size}
                                            for location, size in stored.items()}
    assert f"+ {human_size(stored['local'])} PITR" in invoke(runner, "storage", "usage").stdout
    add_user(pitr_app)
    client = pitr_app.test_client()
    sign_in(client)
    for page in ("/storage", "/dashboard"):
        shown = text(client.get(page))
        for size in stored.values():
            assert f'<span data-field="pitr-bytes">+ {human_size(size)}</span>' in shown, page
