"""What a backup does when something is wrong: S3 down or refusing keys, pg_dump failing or
killed, a dump that cannot be restored. Each checks the message and that nothing was lost
or left half-written."""
import json
import os
import signal
import time
from pathlib import Path

import pytest

from backup_app import wiring
from backup_app.errors import DumpFailed
from backup_app.extensions import db
from backup_app.localservers import free_port
from backup_app.models import Backup, BackupCopy, utcnow
from backup_app.services import backups as service
from tests.conftest import both_catalogs, fill_shop
from tests.helpers import copy_status, create, error_line, invoke, sha256_file

pytestmark = pytest.mark.integration


def listed(runner) -> list[dict]:
    return json.loads(invoke(runner, "backup", "list", "--json").stdout)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_local_only_mode(make_app, pg_cluster, source_db, tmp_path):
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db))
    runner = app.test_cli_runner()

    backup = create(runner)

    assert backup["status"] == "completed"
    assert backup["storage_url"] is None
    assert copy_status(backup) == {"local": "present"}
    pg_cluster.psql("DELETE FROM orders", source_db)
    invoke(runner, "backup", "restore", backup["id"], "--yes")
    assert pg_cluster.psql("SELECT count(*) FROM orders", source_db) == "3000"
    init = invoke(runner, "storage", "init", ok=False)
    assert "MINIO_ENDPOINT is not set" in error_line(init)
    invoke(runner, "backup", "delete", backup["id"], "--yes")
    assert leftovers(Path(app.config["BACKUP_DIR"])) == []


def test_s3_down_during_create_completes_locally_and_fast(make_app, pg_cluster, source_db, s3_settings):
    dead = {**s3_settings, "MINIO_ENDPOINT": f"127.0.0.1:{free_port()}"}
    runner = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), **dead).test_cli_runner()

    started = time.monotonic()
    result = invoke(runner, "backup", "create", "--json")
    elapsed = time.monotonic() - started

    backup = json.loads(result.stdout)
    assert backup["status"] == "completed"
    assert copy_status(backup) == {"local": "present", "s3": "failed"}
    assert backup["storage_url"] is None
    s3_copy = next(c for c in backup["copies"] if c["location"] == "s3")
    assert "cannot reach S3" in s3_copy["error"]
    assert "Warning: s3 copy failed: cannot reach S3" in result.stderr
    assert elapsed < 30, "fails in seconds, not after the client's minute of retries"


def test_wrong_s3_keys_name_the_credentials(make_app, pg_cluster, source_db, s3_settings):
    wrong = {**s3_settings, "MINIO_SECRET_KEY": "not-the-secret"}
    runner = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), **wrong).test_cli_runner()

    result = invoke(runner, "backup", "create", "--json")

    backup = json.loads(result.stdout)
    assert copy_status(backup) == {"local": "present", "s3": "failed"}
    assert "refused the credentials" in result.stderr
    assert "MINIO_SECRET_KEY" in result.stderr


def test_missing_bucket_names_storage_init(make_app, pg_cluster, source_db, s3_settings):
    runner = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), **s3_settings).test_cli_runner()

    result = invoke(runner, "backup", "create")

    assert "flask storage init" in result.stderr


@both_catalogs
@pytest.mark.parametrize("case, expected", [
    ("bad password", "password authentication failed"),
    ("missing database", "does not exist"),
])
def test_pg_dump_failure_leaves_nothing_behind(case, expected, make_app, pg_cluster, source_db,
                                               s3_settings, s3_server):
    url = (pg_cluster.url(source_db, password="wrong") if case == "bad password"
           else pg_cluster.url("no_such_database"))
    app = make_app(BACKUP_DATABASE_URL=url, **s3_settings)
    runner = app.test_cli_runner()
    invoke(runner, "storage", "init")

    result = invoke(runner, "backup", "create", ok=False)

    assert expected in error_line(result)
    [row] = listed(runner)
    assert row["status"] == "failed"
    assert expected in row["error"]
    assert row["copies"] == [] and row["sha256"] is None
    assert leftovers(Path(app.config["BACKUP_DIR"])) == []
    with app.app_context():
        objects = list(wiring.s3_storage().client.list_objects(bucket_name=s3_settings["MINIO_BUCKET"]))
    assert objects == []


@pytest.fixture(scope="session")
def big_db(pg15_server):
    """A database on the 15 server whose dump is tens of MB (random text), long enough to be interrupted."""
    name = "big_for_kill"
    pg15_server.createdb(name)
    pg15_server.psql("CREATE TABLE blobs AS SELECT g AS id, "
                    "repeat(md5(g::text || random()), 8) || md5(random()::text) AS body "
                    "FROM generate_series(1, 200000) g", name)
    return name


def child_pg_dumps() -> list[int]:
    """PIDs of this process's pg_dump children, read from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            name = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and name == "pg_dump":
            pids.append(int(stat.parent.name))
    return pids


def test_killed_pg_dump_fails_the_backup_and_leaves_nothing(make_app, pg_cluster, big_db, s3_settings):
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(big_db), **s3_settings,
                   MINIO_PART_SIZE=5 * 1024 * 1024)
    invoke(app.test_cli_runner(), "storage", "init")
    killed = []

    def kill_pg_dump_midway(nbytes: int) -> None:
        if nbytes > 2 * 1024 * 1024 and not killed:
            killed.extend(child_pg_dumps())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    with app.app_context():
        s3 = wiring.s3_storage()
        with pytest.raises(DumpFailed, match="killed by signal 9"):
            service.create_backup(db.session, wiring.dump_spec(), wiring.local_storage(), s3,
                                  wiring.pg_tools(), progress=kill_pg_dump_midway)
        objects = list(s3.client.list_objects(bucket_name=s3.bucket))
        uploads = s3.client._list_multipart_uploads(bucket_name=s3.bucket).uploads

    assert len(killed) == 1
    [row] = listed(app.test_cli_runner())
    assert row["status"] == "failed" and "killed by signal 9" in row["error"]
    assert leftovers(Path(app.config["BACKUP_DIR"])) == []
    assert objects == [] and list(uploads) == []


def test_password_never_on_a_command_line(make_app, pg_cluster, big_db):
    password = pg_cluster.password
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(big_db))

    with app.app_context():
        conn = wiring.dump_spec().conn
        process = wiring.pg_tools().for_dump(conn)[1].dump(conn)
        try:
            cmdline_file = Path(f"/proc/{process.pid}/cmdline")
            deadline = time.monotonic() + 10
            while b"pg_dump" not in cmdline_file.read_bytes() and time.monotonic() < deadline:
                time.sleep(0.01)  # between fork and exec the child still shows python
            cmdline = cmdline_file.read_bytes().decode()
            # Read every process's command line while pg_dump runs (it blocks on its full pipe).
            all_cmdlines = []
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    try:
                        all_cmdlines.append((proc / "cmdline").read_bytes().decode(errors="replace"))
                    except OSError:
                        pass
        finally:
            process.kill()

    assert "pg_dump" in cmdline
    assert all(password not in line for line in all_cmdlines)


def test_legacy_row_without_storage_url_restores(app, runner, pg_cluster, source_db, backup_dir):
    """A row from before this app (no sha256, no storage URL) with only a local file."""
    legacy_file = backup_dir / "legacy-shop.dump"
    with app.app_context():
        conn = wiring.dump_spec().conn
        process = wiring.pg_tools().for_dump(conn)[1].dump(conn)
        legacy_file.write_bytes(process.stdout.read())
        process.finish()
        db.session.add(Backup(id="legacy1", filename=legacy_file.name, database=source_db,
                              format="custom", status="completed", created_at=utcnow(),
                              copies=[BackupCopy(location="local", uri=str(legacy_file),
                                                 status="present")]))
        db.session.commit()
    pg_cluster.psql("DROP TABLE orders", source_db)

    invoke(runner, "backup", "restore", "legacy1", "--yes")

    assert pg_cluster.psql("SELECT count(*) FROM orders", source_db) == "3000"


def test_restore_that_fails_reports_the_server_message_and_changes_nothing(
        app, runner, pg_cluster, source_db, backup_dir):
    backup = create(runner)
    # The target has a view depending on orders: --clean cannot drop orders, so the restore fails.
    other = source_db + "_dep"
    pg_cluster.createdb(other)
    try:
        fill_shop(pg_cluster, other, rows=10)
        pg_cluster.psql("CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 5", other)

        result = invoke(runner, "backup", "restore", backup["id"], "--target-url",
                        pg_cluster.url(other), "--yes", ok=False)

        assert "Error: pg_restore: error:" in error_line(result)
        assert "depend" in result.stderr
        assert pg_cluster.psql("SELECT count(*) FROM orders", other) == "30", "rolled back"
    finally:
        pg_cluster.dropdb(other)


def test_garbage_local_file_of_a_legacy_row_is_not_reported_as_restored(app, runner, backup_dir):
    (backup_dir / "garbage.dump").write_bytes(b"this is not a dump\n" * 100)
    with app.app_context():
        db.session.add(Backup(id="garbage1", filename="garbage.dump", database="x", format="custom",
                              status="completed", created_at=utcnow()))
        db.session.commit()

    result = invoke(runner, "backup", "restore", "garbage1", "--target-url",
                    app.config["BACKUP_DATABASE_URL"], "--yes", ok=False)

    assert "does not appear to be a valid archive" in error_line(result)
    assert sha256_file(backup_dir / "garbage.dump")  # still there, untouched
