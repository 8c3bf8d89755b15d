"""What the PITR tests share: a PostgreSQL cluster of their own per test module (its whole WAL is
archived), the app, the WAL receivers run by a supervisor in the test's process, and helpers."""
import json
import shutil
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest

from backup_app.jobs.receivers import ReceiverSupervisor
from devtools.localservers import DEBIAN_PG_BIN, PostgresCluster
from tests.helpers import add_target, invoke, new_key


@pytest.fixture(scope="module")
def pitr_cluster(tmp_path_factory):
    cluster = PostgresCluster(tmp_path_factory.mktemp("pitr15"), bin_dir=DEBIAN_PG_BIN).start()
    cluster.createdb("shop")
    cluster.psql("CREATE TABLE orders (id int PRIMARY KEY, batch int NOT NULL, at timestamptz DEFAULT now())",
                 "shop")
    yield cluster
    cluster.stop()


@pytest.fixture
def pitr_app(make_app, pitr_cluster, s3_settings):
    return app_archiving(make_app, pitr_cluster, s3_settings)


def app_archiving(make_app, cluster, s3_settings, **config):
    """An app whose target `shop` is `cluster`'s database shop, its stores initialised (`config`:
    more settings)."""
    app = make_app(WAL_PARTIAL_UPLOAD_SECONDS=1, PITR_LEASE_SECONDS=5, APP_ENCRYPTION_KEY=new_key(),
                   METRICS_TOKEN="metrics-token", **s3_settings, **config)
    runner = app.test_cli_runner()
    invoke(runner, "storage", "init")
    add_target(runner, "shop", cluster.url("shop"))
    return app


@pytest.fixture
def receivers(pitr_app):
    supervisor = ReceiverSupervisor(pitr_app)
    yield supervisor
    if supervisor.is_alive():
        supervisor.stop()


def status(runner, name="shop") -> dict:
    return json.loads(invoke(runner, "pitr", "status", name, "--json").stdout)


def wait_for(check, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached within {timeout} s")


def insert_batch(cluster, batch: int, rows: int = 100) -> datetime:
    """Insert a batch of rows; the moment just after its commit."""
    start = int(cluster.psql("SELECT coalesce(max(id), 0) FROM orders", "shop"))
    cluster.psql(f"INSERT INTO orders (id, batch) SELECT {start} + g, {batch} FROM generate_series(1, {rows}) g",
                 "shop")
    return datetime.now(timezone.utc)


def covered(runner, moment: datetime) -> bool:
    to = status(runner)["recoverable_to"]
    return to is not None and datetime.fromisoformat(to.replace("Z", "+00:00")) >= moment


def restored_rows(cluster, port: int) -> dict[int, int]:
    out = PostgresCluster(cluster.base_dir, port=port, password=cluster.password).psql(
        "SELECT batch, count(*) FROM orders GROUP BY batch ORDER BY batch", "shop")
    return {int(b): int(n) for b, n in (line.split("|") for line in out.splitlines() if line)}


def stop_restored(data_dir: Path, bin_dir=DEBIAN_PG_BIN):
    PostgresCluster(data_dir.parent, bin_dir=bin_dir)._run_server_tool(
        f"{bin_dir}/pg_ctl", "-D", str(data_dir), "-m", "immediate", "-w", "stop")


def archiving(runner, receivers, name="shop") -> dict:
    """PITR on for `name` (unless it is already), its WAL streaming through `receivers` (a
    ReceiverSupervisor, started here) and a full base backup taken: the base backup's JSON."""
    if not status(runner, name)["enabled"]:
        invoke(runner, "pitr", "enable", name)
    receivers.start()
    wait_for(lambda: status(runner, name)["receiver"] == "streaming", what="streaming")
    return json.loads(invoke(runner, "pitr", "base-backup", name, "--json").stdout)


@contextmanager
def restored(runner, *args: str, name="shop", bin_dir=DEBIAN_PG_BIN):
    """`flask pitr restore NAME *args --json`'s output, the restored server stopped and its data
    directory removed on leaving (`bin_dir`: the programs of the backup's PostgreSQL)."""
    out = json.loads(invoke(runner, "pitr", "restore", name, *args, "--json").stdout)
    data_dir = Path(out["data_dir"])
    try:
        yield out
    finally:
        stop_restored(data_dir, bin_dir)
        shutil.rmtree(data_dir)


@pytest.fixture(scope="module")
def pitr18_cluster(tmp_path_factory):
    from backup_app.adapters.pgtools import wheel_bin_dir

    cluster = PostgresCluster(tmp_path_factory.mktemp("pitr18"), bin_dir=str(wheel_bin_dir())).start()
    cluster.psql("ALTER SYSTEM SET summarize_wal = on")
    cluster.psql("SELECT pg_reload_conf()")
    cluster.createdb("shop")
    cluster.psql("CREATE TABLE orders (id int PRIMARY KEY, batch int NOT NULL, at timestamptz DEFAULT now())",
                 "shop")
    cluster.psql("INSERT INTO orders (id, batch) SELECT g, 0 FROM generate_series(1, 20000) g", "shop")
    yield cluster
    cluster.stop()
