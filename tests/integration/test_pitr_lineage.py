"""A PITR target whose server changes under it: a promoted standby takes the target's address
(a failover, followed across the timeline switch without a hole), or another cluster does (a
rebuilt server: its WAL is never archived as the old one's, until `--new-cluster`)."""
import hashlib
import shutil
import time
from datetime import datetime
from pathlib import Path

import pytest

from backup_app import wiring
from backup_app.adapters.pgtools import wheel_bin_dir
from backup_app.extensions import db
from backup_app.jobs.receivers import ReceiverSupervisor, spool_folder
from backup_app.models import WalFile
from backup_app.services import events
from backup_app.services.overview import target_overviews
from devtools.localservers import DEBIAN_PG_BIN, PostgresCluster
from tests.helpers import add_target, error_line, invoke, new_key
from tests.integration.pitr_support import covered, insert_batch, restored, restored_rows, status, wait_for

TABLE = "CREATE TABLE orders (id int PRIMARY KEY, batch int NOT NULL, at timestamptz DEFAULT now())"


def new_cluster(base: Path, bin_dir: str, **options) -> PostgresCluster:
    cluster = PostgresCluster(base, bin_dir=bin_dir, **options).start()
    cluster.createdb("shop")
    cluster.psql(TABLE, "shop")
    return cluster


@pytest.fixture
def lineage_app(make_app, s3_settings):
    def build(cluster: PostgresCluster):
        app = make_app(WAL_PARTIAL_UPLOAD_SECONDS=1, PITR_LEASE_SECONDS=5, APP_ENCRYPTION_KEY=new_key(),
                       **s3_settings)
        runner = app.test_cli_runner()
        invoke(runner, "storage", "init")
        add_target(runner, "shop", cluster.url("shop"), "--encrypt")
        return app
    return build


@pytest.fixture
def supervisors():
    started = []

    def start(app):
        supervisor = ReceiverSupervisor(app)
        supervisor.start()
        started.append(supervisor)
        return supervisor
    yield start
    for supervisor in started:
        if supervisor.is_alive():
            supervisor.stop()


def rows_at(runner, cluster, moment, data_dir: Path, bin_dir: str) -> dict[int, int]:
    with restored(runner, "--to", moment, "--data-dir", str(data_dir), bin_dir=bin_dir) as out:
        return restored_rows(cluster, out["port"])


def just_after(cluster: PostgresCluster, batch: int) -> datetime:
    moment = insert_batch(cluster, batch)
    time.sleep(1.2)  # the next batch commits a clear second later
    return moment


def archive_snapshot(app) -> dict[str, str]:
    """SHA-256 of every archived object, local and S3, by location and name."""
    with app.app_context():
        local = Path(app.config["BACKUP_DIR"]) / "pitr"
        found = {f"local/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in local.iterdir() if p.is_file()}
        store = wiring.pitr_stores()[1]
        for name, _size in store.list():
            with store.open(name) as stream:
                found[f"s3/{name}"] = hashlib.sha256(stream.read()).hexdigest()
    return found


def make_standby(primary: PostgresCluster, base: Path, bin_dir: str) -> PostgresCluster:
    standby = PostgresCluster(base, bin_dir=bin_dir, password=primary.password, env={"PGPASSWORD": primary.password})
    standby.base_dir.mkdir()
    standby._run_server_tool(f"{bin_dir}/pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U",
                             "postgres", "-D", str(standby.data_dir), "-R", "-X", "stream")
    return standby.start()


def fail_over(primary: PostgresCluster, standby: PostgresCluster, rows: int) -> PostgresCluster:
    """Stop the primary, promote the standby, and move it to the primary's address."""
    primary.stop()  # a fast shutdown: the standby gets every commit first
    wait_for(lambda: standby.psql("SELECT count(*) FROM orders", "shop") == str(rows), what="the standby caught up")
    standby._run_server_tool(f"{standby.bin_dir}/pg_ctl", "-D", str(standby.data_dir), "-w", "promote")
    standby.stop()
    return PostgresCluster(standby.base_dir, bin_dir=str(standby.bin_dir), port=primary.port,
                           password=primary.password)


@pytest.mark.parametrize("bin_dir,fresh_spool", [(DEBIAN_PG_BIN, False), ("wheel", True)], ids=["pg15", "pg18-new-spool"])
def test_a_promoted_standby_at_the_targets_address_is_followed_across_the_timeline_switch(
        lineage_app, supervisors, tmp_path, data_root, bin_dir, fresh_spool):
    bin_dir = str(wheel_bin_dir()) if bin_dir == "wheel" else bin_dir
    primary = new_cluster(tmp_path / "primary", bin_dir)
    app = lineage_app(primary)
    runner = app.test_cli_runner()
    invoke(runner, "pitr", "enable", "shop")
    supervisor = supervisors(app)
    wait_for(lambda: status(runner)["receiver"] == "streaming", what="streaming")
    invoke(runner, "pitr", "base-backup", "shop")
    primary.psql("ALTER SYSTEM SET wal_keep_size = '1GB'")  # as an HA standby keeps its WAL for the others
    standby = make_standby(primary, tmp_path / "standby", bin_dir)
    first = just_after(primary, 1)
    wait_for(lambda: covered(runner, first), what="the first batch archived")
    supervisor.stop()  # the worker is away while the old primary writes its last segments
    second = just_after(primary, 2)
    for table in range(3):  # segments the archive lacks, which only the new primary still has
        primary.psql(f"CREATE TABLE filler{table} AS SELECT g FROM generate_series(1, 1000) g; SELECT pg_switch_wal()",
                     "shop")
    promoted = fail_over(primary, standby, 200)
    if fresh_spool:  # another worker, whose spool is empty, takes over
        shutil.rmtree(spool_folder(app.config["BACKUP_DIR"], "shop"))
    promoted.start()
    supervisors(app)
    third = just_after(promoted, 3)
    wait_for(lambda: covered(runner, third), timeout=180, what="WAL after the switch archived")

    state = status(runner)
    assert state["receiver"] == "streaming" and state["error"] is None and state["timeline"] == 2
    assert [lineage["current"] for lineage in state["lineages"]] == [True]
    with app.app_context():
        assert db.session.scalar(db.select(WalFile).where(WalFile.name == "00000002.history")) is not None
    assert rows_at(runner, promoted, first.isoformat(), data_root / "before", bin_dir) == {1: 100}
    assert rows_at(runner, promoted, second.isoformat(), data_root / "at-switch", bin_dir) == {1: 100, 2: 100}
    assert rows_at(runner, promoted, "latest", data_root / "after", bin_dir) == {1: 100, 2: 100, 3: 100}
    promoted.stop()


def test_a_new_primary_that_lacks_the_wal_the_archive_needs_is_archived_from_its_slot_and_the_hole_is_told(
        lineage_app, supervisors, tmp_path, data_root):
    primary = new_cluster(tmp_path / "primary", DEBIAN_PG_BIN)
    app = lineage_app(primary)
    runner = app.test_cli_runner()
    invoke(runner, "pitr", "enable", "shop")
    supervisor = supervisors(app)
    wait_for(lambda: status(runner)["receiver"] == "streaming", what="streaming")
    invoke(runner, "pitr", "base-backup", "shop")
    first = just_after(primary, 1)
    wait_for(lambda: covered(runner, first), what="the first batch archived")
    supervisor.stop()
    second = just_after(primary, 2)
    primary.psql("SELECT pg_switch_wal()")
    standby = make_standby(primary, tmp_path / "standby", DEBIAN_PG_BIN)  # made late: it never had that WAL
    promoted = fail_over(primary, standby, 200)
    promoted.start()
    announced = []

    def tell(receiver):
        announced.append(receiver.error)
    events.wal_receiver_failing.connect(tell)
    try:
        supervisors(app)
        wait_for(lambda: any("cannot continue the archive" in error for error in announced), what="the hole told")
    finally:
        events.wal_receiver_failing.disconnect(tell)
    assert "flask pitr base-backup shop" in next(error for error in announced if "cannot continue" in error)
    wait_for(lambda: status(runner)["timeline"] == 2, what="archiving on the new timeline")
    state = status(runner)  # the hole stays until a base backup after it: said, not hidden as `streaming`
    assert state["receiver"] == "failing" and "is not archived while later WAL is" in state["error"]
    with app.app_context():  # the dashboard says the same
        shown = target_overviews(db.session, [wiring.target("shop")], None, [])[0]
        db.session.remove()
    assert shown.pitr_state == "failing" and "is not archived while later WAL is" in shown.pitr_error
    result = invoke(runner, "pitr", "restore", "shop", "--to", second.isoformat(), "--data-dir",
                    str(data_root / "in-hole"), ok=False)
    assert "outside the recoverable window" in error_line(result)
    invoke(runner, "pitr", "base-backup", "shop")
    wait_for(lambda: status(runner)["receiver"] == "streaming", what="the hole behind the new base backup")
    assert status(runner)["error"] is None
    fourth = just_after(promoted, 4)
    wait_for(lambda: covered(runner, fourth), what="the batch after the new base backup archived")
    assert rows_at(runner, promoted, first.isoformat(), data_root / "before", DEBIAN_PG_BIN) == {1: 100}
    assert rows_at(runner, promoted, "latest", data_root / "after", DEBIAN_PG_BIN) == {1: 100, 2: 100, 4: 100}
    promoted.stop()


def test_another_cluster_at_the_targets_address_is_never_archived_as_the_old_one(
        lineage_app, supervisors, tmp_path, data_root):
    old = new_cluster(tmp_path / "old", DEBIAN_PG_BIN)
    app = lineage_app(old)
    runner = app.test_cli_runner()
    invoke(runner, "pitr", "enable", "shop")
    supervisors(app)
    wait_for(lambda: status(runner)["receiver"] == "streaming", what="streaming")
    invoke(runner, "pitr", "base-backup", "shop")
    before = just_after(old, 1)
    wait_for(lambda: covered(runner, before), what="the old cluster's first batch archived")
    old_id = status(runner)["system_identifier"]
    old.stop()
    announced = []

    def tell(receiver):
        announced.append(receiver.error)
    events.wal_receiver_failing.connect(tell)
    try:
        rebuilt = new_cluster(tmp_path / "rebuilt", DEBIAN_PG_BIN, port=old.port, password=old.password)
        snapshot = archive_snapshot(app)
        insert_batch(rebuilt, 7)
        wait_for(lambda: "another cluster" in (status(runner)["error"] or ""), what="the receiver failing")
        state = status(runner)
        assert state["receiver"] == "failing" and state["system_identifier"] == old_id
        assert "flask pitr enable shop --new-cluster" in state["error"]
        assert any("another cluster" in error for error in announced)
    finally:
        events.wal_receiver_failing.disconnect(tell)
    time.sleep(3)  # the receiver retries meanwhile: still nothing of the new cluster's stored
    assert archive_snapshot(app) == snapshot
    result = invoke(runner, "pitr", "base-backup", "shop", ok=False)
    assert "another cluster" in error_line(result)

    enabled = invoke(runner, "pitr", "enable", "shop", "--new-cluster").stdout
    assert "base backup" in enabled
    new_id = status(runner)["system_identifier"]
    assert new_id != old_id
    after = just_after(rebuilt, 8)
    wait_for(lambda: covered(runner, after), what="the new cluster's batch archived")
    state = status(runner)
    assert state["receiver"] == "streaming"
    lineages = {lineage["system_identifier"]: lineage for lineage in state["lineages"]}
    assert lineages[old_id]["current"] is False and lineages[new_id]["current"] is True
    assert lineages[old_id]["recoverable_to"] is not None
    assert all(snapshot_value == archive_snapshot(app).get(name) for name, snapshot_value in snapshot.items())
    assert rows_at(runner, rebuilt, before.isoformat(), data_root / "old", DEBIAN_PG_BIN) == {1: 100}
    assert rows_at(runner, rebuilt, "latest", data_root / "new", DEBIAN_PG_BIN) == {7: 100, 8: 100}
    shown = invoke(runner, "pitr", "status", "shop").stdout
    assert f"cluster {new_id}, timeline 1" in shown and f"earlier cluster {old_id}: recoverable from" in shown
    result = invoke(runner, "pitr", "enable", "shop", "--new-cluster", ok=False)
    assert "already follows" in error_line(result)
    rebuilt.stop()
