"""Point-in-time recovery against real servers: a PostgreSQL cluster of its own per module (its
whole WAL is archived), SeaweedFS, the WAL receivers run by a supervisor in the test's process
or by real `flask worker` processes."""
import json
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from backup_app.core.wal import segment_of_lsn
from backup_app.extensions import db
from backup_app.jobs.receivers import ReceiverSupervisor
from backup_app.models import WalFile
from devtools.localservers import DEBIAN_PG_BIN, PostgresCluster, SeaweedS3
from tests.helpers import add_target, error_line, invoke, new_key


@pytest.fixture(scope="module")
def pitr_cluster(tmp_path_factory):
    cluster = PostgresCluster(tmp_path_factory.mktemp("pitr15"), bin_dir=DEBIAN_PG_BIN).start()
    cluster.createdb("shop")
    cluster.psql("CREATE TABLE orders (id int PRIMARY KEY, batch int NOT NULL, at timestamptz DEFAULT now())",
                 "shop")
    yield cluster
    cluster.stop()


@pytest.fixture
def data_root():
    """A folder the restored server's OS user can reach (pytest's own are private to root)."""
    root = Path(tempfile.mkdtemp(prefix="pitr-restores-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pitr_app(make_app, pitr_cluster, s3_settings):
    app = make_app(WAL_PARTIAL_UPLOAD_SECONDS=1, PITR_LEASE_SECONDS=5, APP_ENCRYPTION_KEY=new_key(),
                   METRICS_TOKEN="metrics-token", **s3_settings)
    runner = app.test_cli_runner()
    invoke(runner, "storage", "init")
    add_target(runner, "shop", pitr_cluster.url("shop"))
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


def stop_restored(data_dir: Path):
    PostgresCluster(data_dir.parent, bin_dir=DEBIAN_PG_BIN)._run_server_tool(
        f"{DEBIAN_PG_BIN}/pg_ctl", "-D", str(data_dir), "-m", "immediate", "-w", "stop")


def test_restore_to_a_moment_between_two_batches(pitr_app, pitr_cluster, receivers, data_root):
    runner = pitr_app.test_cli_runner()
    enabled = invoke(runner, "pitr", "enable", "shop").stdout
    assert "PITR is on for shop" in enabled and "max_slot_wal_keep_size" in enabled
    receivers.start()
    wait_for(lambda: status(runner)["receiver"] == "streaming", what="streaming")
    base = json.loads(invoke(runner, "pitr", "base-backup", "shop", "--json").stdout)
    assert base["status"] == "completed" and base["kind"] == "full"
    assert {c["location"]: c["status"] for c in base["copies"]} == {"local": "present", "s3": "present"}

    first = insert_batch(pitr_cluster, 1)
    time.sleep(1.5)
    between = datetime.now(timezone.utc)
    time.sleep(1.5)
    insert_batch(pitr_cluster, 2)
    after = datetime.now(timezone.utc)
    wait_for(lambda: covered(runner, after), what="the second batch archived")
    state = status(runner)
    assert state["recoverable_from"] <= first.isoformat().replace("+00:00", "Z")
    from tests.web_helpers import add_user, sign_in
    add_user(pitr_app)
    web = pitr_app.test_client()
    sign_in(web)
    dashboard = web.get("/dashboard").text
    assert "streaming</span></a>" in dashboard and "recoverable to" in dashboard
    metrics = web.get("/metrics", headers={"Authorization": "Bearer metrics-token"}).text
    assert 'backup_pitr_receiver_up{database="shop"} 1.0' in metrics
    assert 'backup_pitr_recoverable_to_timestamp_seconds{database="shop"}' in metrics
    assert state["last_segment"] is not None or state["bytes_behind"] is not None

    out = json.loads(invoke(runner, "pitr", "restore", "shop", "--to", between.isoformat(),
                            "--data-dir", str(data_root / "at-between"), "--json").stdout)
    try:
        assert out["base_backup"] == base["id"]
        assert restored_rows(pitr_cluster, out["port"]) == {1: 100}
        assert (Path(out["data_dir"]).stat().st_mode & 0o777) == 0o700
    finally:
        stop_restored(Path(out["data_dir"]))

    # From the object store alone: the local folder emptied.
    with pitr_app.app_context():
        local = Path(pitr_app.config["BACKUP_DIR"]) / "pitr"
    for path in local.iterdir():
        if path.is_file():
            path.unlink()
    out = json.loads(invoke(runner, "pitr", "restore", "shop", "--to", "latest",
                            "--data-dir", str(data_root / "latest"), "--json").stdout)
    try:
        assert restored_rows(pitr_cluster, out["port"]) == {1: 100, 2: 100}
    finally:
        stop_restored(Path(out["data_dir"]))


def test_a_moment_outside_the_window_is_refused(pitr_app, pitr_cluster, data_root):
    runner = pitr_app.test_cli_runner()
    result = invoke(runner, "pitr", "restore", "shop", "--to", "2001-01-01T00:00:00Z",
                    "--data-dir", str(data_root / "x"), ok=False)
    assert "outside the recoverable window of shop" in error_line(result)
    assert not (data_root / "x").exists()
    result = invoke(runner, "pitr", "restore", "shop", "--to", "2001-01-01T00:00:00",
                    "--data-dir", str(data_root / "x"), ok=False)
    assert "has no time zone" in error_line(result)


def test_receiver_killed_and_restarted_leaves_no_gap(pitr_app, pitr_cluster, receivers, data_root):
    runner = pitr_app.test_cli_runner()
    invoke(runner, "pitr", "enable", "shop")
    receivers.start()
    wait_for(lambda: status(runner)["receiver"] == "streaming", what="streaming")
    invoke(runner, "pitr", "base-backup", "shop")
    before = pitr_cluster.psql("SELECT count(*) FROM orders", "shop")
    receivers.receivers["shop"].process.kill()
    insert_batch(pitr_cluster, 7)
    pitr_cluster.psql("SELECT pg_switch_wal()")
    insert_batch(pitr_cluster, 8)
    after = datetime.now(timezone.utc)
    wait_for(lambda: covered(runner, after), what="the WAL after the kill archived")
    out = json.loads(invoke(runner, "pitr", "restore", "shop", "--to", "latest",
                            "--data-dir", str(data_root / "after-kill"), "--json").stdout)
    try:
        rows = restored_rows(pitr_cluster, out["port"])
        assert rows[7] == 100 and rows[8] == 100 and sum(rows.values()) == int(before) + 200
    finally:
        stop_restored(Path(out["data_dir"]))


def test_a_store_down_gets_the_segments_it_missed(pitr_app, make_app, pitr_cluster, tmp_path, s3_settings):
    offsite = SeaweedS3(tmp_path / "offsite").start()
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
        offsite = SeaweedS3(offsite.base_dir, offsite.access_key, offsite.secret_key, port=offsite.port).start()
        wait_for(lambda: all(c.get("s3:offsite") == "present" for c in copies()), timeout=90,
                 what="the store filled again")
    finally:
        supervisor.stop()
        offsite.kill()


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


def test_incremental_on_18_then_the_drill_then_retention(make_app, pitr18_cluster, s3_settings, data_root):
    app = make_app(WAL_PARTIAL_UPLOAD_SECONDS=1, APP_ENCRYPTION_KEY=new_key(), **s3_settings)
    runner = app.test_cli_runner()
    invoke(runner, "storage", "init")
    add_target(runner, "shop", pitr18_cluster.url("shop"), "--pitr", "--keep-last", "1", "--keep-days", "0")
    supervisor = ReceiverSupervisor(app)
    supervisor.start()
    try:
        wait_for(lambda: status(runner)["receiver"] == "streaming", what="streaming")
        full = json.loads(invoke(runner, "pitr", "base-backup", "shop", "--json").stdout)
        insert_batch(pitr18_cluster, 1)
        incremental = json.loads(invoke(runner, "pitr", "base-backup", "shop", "--incremental", "--json").stdout)
        assert incremental["kind"] == "incremental" and incremental["parent_id"] == full["id"]
        assert incremental["size_bytes"] < full["size_bytes"]
        insert_batch(pitr18_cluster, 2)
        after = datetime.now(timezone.utc)
        wait_for(lambda: covered(runner, after), what="the second batch archived")

        out = json.loads(invoke(runner, "pitr", "restore", "shop", "--to", "latest",
                                "--data-dir", str(data_root / "combined"), "--json").stdout)
        try:
            assert out["base_backup"] == incremental["id"]
            assert restored_rows(pitr18_cluster, out["port"]) == {0: 20000, 1: 100, 2: 100}
        finally:
            PostgresCluster(data_root, bin_dir=pitr18_cluster.bin_dir)._run_server_tool(
                str(pitr18_cluster.bin_dir / "pg_ctl"), "-D", out["data_dir"], "-m", "immediate", "-w", "stop")

        drill = json.loads(invoke(runner, "pitr", "verify", "shop", "--json").stdout)
        assert drill["status"] == "passed" and status(runner)["verified_at"] == drill["verified_at"]

        # A newer full backup: keep-last 1 drops the old chain (both) and the WAL before the new one.
        newest = json.loads(invoke(runner, "pitr", "base-backup", "shop", "--json").stdout)
        first = segment_of_lsn(newest["timeline"], newest["start_lsn"])

        def segments():
            with app.app_context():
                return db.session.scalars(db.select(WalFile.name).where(WalFile.kind == "segment")).all()
        assert any(name < first for name in segments())
        invoke(runner, "backup", "prune", "--database", "shop")
        assert [b["id"] for b in status(runner)["base_backups"]] == [newest["id"]]
        assert not any(name < first for name in segments())
        local = Path(app.config["BACKUP_DIR"]) / "pitr"
        assert not any(full["id"] in p.name or incremental["id"] in p.name for p in local.iterdir())
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
    env = {**os.environ, "FLASK_APP": "app.py", "FLASK_SKIP_DOTENV": "1", "SECRET_KEY": "x",
           "CATALOG_DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"], "BACKUP_DIR": config["BACKUP_DIR"],
           "HUEY_SQLITE_PATH": str(tmp_path / "huey.db"), "APP_ENCRYPTION_KEY": config["APP_ENCRYPTION_KEY"],
           "WAL_PARTIAL_UPLOAD_SECONDS": "1", "PITR_LEASE_SECONDS": "4", **s3_settings}
    flask = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "flask")
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
        out = json.loads(invoke(runner, "pitr", "restore", "shop", "--to", "latest",
                                "--data-dir", str(data_root / "after-takeover"), "--json").stdout)
        try:
            rows = restored_rows(pitr_cluster, out["port"])
            assert rows[11] == rows[12] == rows[13] == 100
        finally:
            stop_restored(Path(out["data_dir"]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)


def test_error_paths_say_what_to_do_and_leave_nothing(pitr_app, pitr_cluster, data_root, tmp_path):
    runner = pitr_app.test_cli_runner()
    result = invoke(runner, "pitr", "base-backup", "shop", ok=False)
    assert error_line(result).startswith("Error: PITR is off for shop: turn it on first (flask pitr enable shop")
    pitr_cluster.psql("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'clerk') THEN "
                      "CREATE ROLE clerk LOGIN PASSWORD 'clerk-pw'; END IF; END$$")
    add_target(runner, "clerkshop", pitr_cluster.url("shop", user="clerk", password="clerk-pw"))
    result = invoke(runner, "pitr", "enable", "clerkshop", ok=False)
    assert "the role clerk cannot replicate: ALTER ROLE clerk REPLICATION" in error_line(result)
    assert status(runner, "clerkshop")["enabled"] is False

    invoke(runner, "pitr", "enable", "shop")
    result = invoke(runner, "pitr", "restore", "shop", "--to", "latest", "--data-dir", str(data_root / "x"), ok=False)
    assert "shop has nothing to recover yet" in error_line(result)
    busy = data_root / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    result = invoke(runner, "pitr", "restore", "shop", "--to", "latest", "--data-dir", str(busy), ok=False)
    assert "exists and is not an empty directory" in error_line(result)
    assert (busy / "keep.txt").read_text() == "mine"
    if os.geteuid() == 0:  # tmp_path is private to root: the server's user cannot enter it
        result = invoke(runner, "pitr", "restore", "shop", "--to", "latest",
                        "--data-dir", str(tmp_path / "private" / "pg"), ok=False)
        assert "who cannot enter" in error_line(result)
        assert not (tmp_path / "private").exists()


def test_one_database_put_back_as_it_was(pitr_app, pitr_cluster, receivers, data_root):
    runner = pitr_app.test_cli_runner()
    invoke(runner, "pitr", "enable", "shop")
    receivers.start()
    wait_for(lambda: status(runner)["receiver"] == "streaming", what="streaming")
    invoke(runner, "pitr", "base-backup", "shop")
    insert_batch(pitr_cluster, 21)
    time.sleep(1.5)
    moment = datetime.now(timezone.utc)
    time.sleep(1.5)
    pitr_cluster.psql("DELETE FROM orders WHERE batch = 21", "shop")  # the mistake to undo
    wait_for(lambda: covered(runner, datetime.now(timezone.utc)), what="the delete archived")
    out = json.loads(invoke(runner, "pitr", "restore", "shop", "--to", moment.isoformat(), "--data-dir",
                            str(data_root / "rewind"), "--into-database", "shop", "--json").stdout)
    assert out["into_database"] == "shop" and not (data_root / "rewind").exists()
    assert pitr_cluster.psql("SELECT count(*) FROM orders WHERE batch = 21", "shop") == "100"
    kept = pitr_cluster.psql("SELECT datname FROM pg_database WHERE datname LIKE 'shop_before_restore_%'")
    assert kept and pitr_cluster.psql("SELECT count(*) FROM orders WHERE batch = 21", kept.splitlines()[0]) == "0"
    backups = json.loads(invoke(runner, "backup", "list", "--json").stdout)
    assert [b["database"] for b in backups] == ["shop"]  # the dump of the moment, kept as a backup of shop
