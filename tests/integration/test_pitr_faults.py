"""Point-in-time recovery when things fail or change: a receiver killed, a store down, a worker
killed and its lease taken over, and on PostgreSQL 18 an incremental, the drill and retention."""
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from backup_app.core.wal import segment_of_lsn
from backup_app.extensions import db
from backup_app.jobs.receivers import ReceiverSupervisor
from backup_app.models import WalFile
from backup_app.services.pitr.window import usable
from tests.helpers import add_target, invoke, new_key
from tests.integration.pitr_support import (  # noqa: F401 - fixtures
    archiving,
    covered,
    insert_batch,
    pitr18_cluster,
    pitr_app,
    pitr_cluster,
    receivers,
    restored,
    restored_rows,
    status,
    wait_for,
)
from tests.web_helpers import BIN, live_env


def test_receiver_killed_and_restarted_leaves_no_gap(pitr_app, pitr_cluster, receivers, data_root):
    runner = pitr_app.test_cli_runner()
    archiving(runner, receivers)
    before = pitr_cluster.psql("SELECT count(*) FROM orders", "shop")
    receivers.receivers["shop"].process.kill()
    insert_batch(pitr_cluster, 7)
    pitr_cluster.psql("SELECT pg_switch_wal()")
    insert_batch(pitr_cluster, 8)
    after = datetime.now(timezone.utc)
    wait_for(lambda: covered(runner, after), what="the WAL after the kill archived")
    with restored(runner, "--to", "latest", "--data-dir", str(data_root / "after-kill")) as out:
        rows = restored_rows(pitr_cluster, out["port"])
        assert rows[7] == 100 and rows[8] == 100 and sum(rows.values()) == int(before) + 200


def test_a_store_down_gets_the_segments_it_missed(pitr_app, make_app, pitr_cluster, start_store, s3_settings):
    offsite = start_store("offsite")
    store = {"name": "offsite", "endpoint": offsite.endpoint, "access_key": offsite.access_key,
             "secret_key": offsite.secret_key, "bucket": "offsite-wal", "secure": False, "region": None}
    app = make_app(WAL_PARTIAL_UPLOAD_SECONDS=1, APP_ENCRYPTION_KEY=pitr_app.config["APP_ENCRYPTION_KEY"],
                   SQLALCHEMY_DATABASE_URI=pitr_app.config["SQLALCHEMY_DATABASE_URI"],
                   BACKUP_DIR=pitr_app.config["BACKUP_DIR"], S3_STORES=[store], **s3_settings)
    runner = app.test_cli_runner()
    invoke(runner, "storage", "init")
    invoke(runner, "pitr", "enable", "shop")
    supervisor = ReceiverSupervisor(app)
    supervisor.start()
    try:
        wait_for(lambda: status(runner)["receiver"] == "streaming", what="streaming")
        offsite.kill()
        insert_batch(pitr_cluster, 9)
        pitr_cluster.psql("SELECT pg_switch_wal()")

        def copies():
            with app.app_context():
                rows = db.session.scalars(db.select(WalFile).where(WalFile.kind == "segment")).all()
                db.session.commit()
                return [{loc: c["status"] for loc, c in row.copies.items()} for row in rows]
        missed = wait_for(lambda: [c for c in copies() if c.get("s3:offsite") == "failed"], what="a missed copy")
        assert all(c["local"] == "present" and c["s3"] == "present" for c in missed)
        offsite.restart()
        wait_for(lambda: all(c.get("s3:offsite") == "present" for c in copies()), timeout=90,
                 what="the store filled again")
    finally:
        supervisor.stop()


def test_a_killed_worker_hands_its_receiver_to_another(pitr_app, pitr_cluster, s3_settings, data_root, tmp_path):
    import signal
    import subprocess

    from backup_app.models import WalReceiver

    runner = pitr_app.test_cli_runner()
    invoke(runner, "pitr", "enable", "shop")
    invoke(runner, "pitr", "base-backup", "shop")
    config = pitr_app.config
    env = live_env(tmp_path, config["SQLALCHEMY_DATABASE_URI"], BACKUP_DIR=config["BACKUP_DIR"],
                   APP_ENCRYPTION_KEY=config["APP_ENCRYPTION_KEY"], WAL_PARTIAL_UPLOAD_SECONDS=1,
                   PITR_LEASE_SECONDS=4, **s3_settings)
    flask = str(BIN / "flask")
    logs = [open(tmp_path / f"worker{i}.log", "wb") for i in range(2)]
    workers = [subprocess.Popen([flask, "worker", "--workers", "1"], env=env, stdout=log, stderr=log,
                                start_new_session=True) for log in logs]
    try:
        def holder():
            with pitr_app.app_context():
                row = db.session.get(WalReceiver, "shop")
                db.session.commit()
                return row.holder if row and row.state == "streaming" else None
        first = wait_for(holder, what="a worker streaming")
        assert sum(f":{w.pid}:" in first for w in workers) == 1
        insert_batch(pitr_cluster, 11)
        os.kill(next(w for w in workers if f":{w.pid}:" in first).pid, signal.SIGKILL)
        insert_batch(pitr_cluster, 12)
        second = wait_for(lambda: (h := holder()) and h != first and h, what="the lease taken over")
        assert second != first
        insert_batch(pitr_cluster, 13)
        after = datetime.now(timezone.utc)
        wait_for(lambda: covered(runner, after), what="the WAL archived by the second worker")
        with restored(runner, "--to", "latest", "--data-dir", str(data_root / "after-takeover")) as out:
            rows = restored_rows(pitr_cluster, out["port"])
            assert rows[11] == rows[12] == rows[13] == 100
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
        for log in logs:
            log.close()


def test_incremental_on_18_then_the_drill_then_retention(make_app, pitr18_cluster, s3_settings, data_root):
    app = make_app(WAL_PARTIAL_UPLOAD_SECONDS=1, APP_ENCRYPTION_KEY=new_key(), **s3_settings)
    runner = app.test_cli_runner()
    invoke(runner, "storage", "init")
    add_target(runner, "shop", pitr18_cluster.url("shop"), "--pitr", "--keep-last", "1", "--keep-days", "0")
    supervisor = ReceiverSupervisor(app)
    try:
        full = archiving(runner, supervisor)
        insert_batch(pitr18_cluster, 1)
        incremental = json.loads(invoke(runner, "pitr", "base-backup", "shop", "--incremental", "--json").stdout)
        assert incremental["kind"] == "incremental" and incremental["parent_id"] == full["id"]
        assert incremental["size_bytes"] < full["size_bytes"]
        insert_batch(pitr18_cluster, 2)
        after = datetime.now(timezone.utc)
        wait_for(lambda: covered(runner, after), what="the second batch archived")

        with restored(runner, "--to", "latest", "--data-dir", str(data_root / "combined"),
                      bin_dir=pitr18_cluster.bin_dir) as out:
            assert out["base_backup"] == incremental["id"]
            assert restored_rows(pitr18_cluster, out["port"]) == {0: 20000, 1: 100, 2: 100}

        drill = json.loads(invoke(runner, "pitr", "verify", "shop", "--json").stdout)
        assert drill["status"] == "passed" and status(runner)["verified_at"] == drill["verified_at"]

        # A newer full backup: keep-last 1 drops the old chain (both) and the WAL before the new one.
        newest = json.loads(invoke(runner, "pitr", "base-backup", "shop", "--json").stdout)
        first = segment_of_lsn(newest["timeline"], newest["start_lsn"])

        def segments():
            with app.app_context():
                return db.session.scalars(db.select(WalFile.name).where(WalFile.kind == "segment")).all()
        assert any(name < first for name in segments())
        insert_batch(pitr18_cluster, 3)

        def newest_usable():
            with app.app_context():
                return newest["id"] in {r.base.id for r in usable(db.session, "shop", every=True)}
        wait_for(newest_usable, what="the newest base backup recoverable")
        invoke(runner, "backup", "prune", "--database", "shop")
        assert [b["id"] for b in status(runner)["base_backups"]] == [newest["id"]]
        assert not any(name < first for name in segments())
        local = Path(app.config["BACKUP_DIR"]) / "pitr"
        assert not any(full["id"] in p.name or incremental["id"] in p.name for p in local.iterdir())
    finally:
        if supervisor.is_alive():
            supervisor.stop()
