"""Point-in-time recovery against real servers: restore to a moment, from the object store alone,
one database put back, and the error paths."""
import json
import time
from datetime import datetime, timezone
from pathlib import Path

from backup_app.extensions import db
from backup_app.models import Job, PreviousDatabase
from tests.helpers import add_target, error_line, invoke
from tests.integration.pitr_support import (  # noqa: F401 - fixtures
    archiving,
    covered,
    insert_batch,
    pitr_app,
    pitr_cluster,
    receivers,
    restored,
    restored_rows,
    status,
    wait_for,
)
from tests.web_helpers import add_user, sign_in


def test_restore_to_a_moment_between_two_batches(pitr_app, pitr_cluster, receivers, data_root):
    runner = pitr_app.test_cli_runner()
    enabled = invoke(runner, "pitr", "enable", "shop").stdout
    assert "PITR is on for shop" in enabled and "max_slot_wal_keep_size" in enabled
    base = archiving(runner, receivers)
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
    add_user(pitr_app)
    web = pitr_app.test_client()
    sign_in(web)
    dashboard = web.get("/dashboard").text
    assert "streaming</span></a>" in dashboard and "recoverable to" in dashboard
    metrics = web.get("/metrics", headers={"Authorization": "Bearer metrics-token"}).text
    assert 'backup_pitr_receiver_up{database="shop"} 1.0' in metrics
    assert 'backup_pitr_recoverable_to_timestamp_seconds{database="shop"}' in metrics
    # The base backup's end switched segments, and the window needs that segment archived.
    assert state["last_segment"] is not None and state["last_segment_at"] is not None
    assert isinstance(state["bytes_behind"], int) and state["bytes_behind"] >= 0

    with restored(runner, "--to", between.isoformat(), "--data-dir", str(data_root / "at-between")) as out:
        assert out["base_backup"] == base["id"]
        assert restored_rows(pitr_cluster, out["port"]) == {1: 100}
        assert (Path(out["data_dir"]).stat().st_mode & 0o777) == 0o700

    # From the object store alone: the local folder emptied.
    with pitr_app.app_context():
        local = Path(pitr_app.config["BACKUP_DIR"]) / "pitr"
    for path in local.iterdir():
        if path.is_file():
            path.unlink()
    with restored(runner, "--to", "latest", "--data-dir", str(data_root / "latest")) as out:
        assert restored_rows(pitr_cluster, out["port"]) == {1: 100, 2: 100}


def test_a_moment_outside_the_window_is_refused(pitr_app, pitr_cluster, data_root):
    runner = pitr_app.test_cli_runner()
    result = invoke(runner, "pitr", "restore", "shop", "--to", "2001-01-01T00:00:00Z",
                    "--data-dir", str(data_root / "x"), ok=False)
    assert "outside the recoverable window of shop" in error_line(result)
    assert not (data_root / "x").exists()
    result = invoke(runner, "pitr", "restore", "shop", "--to", "2001-01-01T00:00:00",
                    "--data-dir", str(data_root / "x"), ok=False)
    assert "has no time zone" in error_line(result)


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
    # tmp_path is private to root (the suite runs as root, as CI does): the server's user cannot enter it
    result = invoke(runner, "pitr", "restore", "shop", "--to", "latest",
                    "--data-dir", str(tmp_path / "private" / "pg"), ok=False)
    assert "the restored server runs as postgres (PITR_OS_USER), who cannot enter" in error_line(result)
    assert not (tmp_path / "private").exists()


def test_one_database_put_back_as_it_was(pitr_app, pitr_cluster, receivers, data_root):
    runner = pitr_app.test_cli_runner()
    archiving(runner, receivers)
    insert_batch(pitr_cluster, 21)
    time.sleep(1.5)
    moment = datetime.now(timezone.utc)
    time.sleep(1.5)
    pitr_cluster.psql("DELETE FROM orders WHERE batch = 21", "shop")  # the mistake to undo
    deleted = datetime.now(timezone.utc)
    wait_for(lambda: covered(runner, deleted), what="the delete archived")
    out = json.loads(invoke(runner, "pitr", "restore", "shop", "--to", moment.isoformat(), "--data-dir",
                            str(data_root / "rewind"), "--into-database", "shop", "--json").stdout)
    assert out["into_database"] == "shop" and not (data_root / "rewind").exists()
    assert pitr_cluster.psql("SELECT count(*) FROM orders WHERE batch = 21", "shop") == "100"
    kept = pitr_cluster.psql("SELECT datname FROM pg_database WHERE datname LIKE 'shop_before_restore_%'")
    assert kept and pitr_cluster.psql("SELECT count(*) FROM orders WHERE batch = 21", kept.splitlines()[0]) == "0"
    # The dump of the moment was a scratch file: no backup of shop (none listed, none for retention, GFS or
    # staleness to count), no file left; the database it replaced is kept, recorded with the job.
    assert json.loads(invoke(runner, "backup", "list", "--json").stdout) == []
    assert leftovers(pitr_app) == []
    with pitr_app.app_context():
        [job] = db.session.scalars(db.select(Job).where(Job.kind == "pitr-restore")).all()
        [previous] = db.session.scalars(db.select(PreviousDatabase)).all()
        assert (previous.name, previous.backup_id, previous.job_id) == (kept.splitlines()[0], None, job.id)
    add_user(pitr_app)
    web = pitr_app.test_client()
    sign_in(web)
    assert f'<a href="/jobs/?highlight={job.id}">point-in-time restore</a>' in web.get("/targets/").text

    # A dump that fails (no such database on the restored server) leaves no backup and no file either.
    receivers.stop()  # the partial segment, replaced each second, is then one the restore can fetch
    result = invoke(runner, "pitr", "restore", "shop", "--to", moment.isoformat(), "--data-dir",
                    str(data_root / "rewind"), "--into-database", "nosuch", ok=False)
    assert 'database "nosuch" does not exist' in error_line(result)
    assert json.loads(invoke(runner, "backup", "list", "--json").stdout) == []
    assert leftovers(pitr_app) == [] and not (data_root / "rewind").exists()


def leftovers(app) -> list[str]:
    """The files in BACKUP_DIR besides the PITR archive's folder."""
    return [path.name for path in Path(app.config["BACKUP_DIR"]).iterdir() if path.name != "pitr"]
