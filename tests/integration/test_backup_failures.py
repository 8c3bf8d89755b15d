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
from backup_app.extensions import db
from backup_app.models import Backup, BackupCopy, utcnow
from tests.helpers import copy_status, create, error_line, invoke, leftovers, sha256_file

pytestmark = pytest.mark.integration


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
    # Commands about S3 have nothing to do, and say so.
    init = invoke(runner, "storage", "init")
    assert init.stdout == "MINIO_ENDPOINT is not set: the app runs local-only, there is no bucket to create.\n"
    assert json.loads(invoke(runner, "backup", "sync", "--json").stdout) == []
    assert "MINIO_ENDPOINT is not set: local-only, nothing to sync" in invoke(runner, "backup", "sync").stdout
    invoke(runner, "backup", "delete", backup["id"], "--yes")
    assert leftovers(Path(app.config["BACKUP_DIR"])) == []


def test_a_hung_s3_server_fails_only_the_s3_copy_and_readyz_answers(make_app, pg_cluster, source_db, start_store):
    """A store that accepts connections but never answers (frozen) is given up after one short probe."""
    server = start_store("hung")
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), **server.settings())
    runner = app.test_cli_runner()
    invoke(runner, "storage", "init")
    os.kill(server.process.pid, signal.SIGSTOP)  # closing the store after the test wakes it to stop it

    result = invoke(runner, "backup", "create", "--json")
    with app.test_client() as client:
        ready = client.get("/readyz")

    backup = json.loads(result.stdout)
    assert copy_status(backup) == {"local": "present", "s3": "failed"}
    assert "Read timed out. (read timeout=5)" in next(c["error"] for c in backup["copies"] if c["location"] == "s3")
    assert [line for line in result.stderr.splitlines() if line] == [
        f"Warning: s3 copy failed: {backup['copies'][1]['error']}"], "no retry chatter from the HTTP client"
    assert ready.status_code == 503 and ready.get_json()["checks"]["s3"] == "fail"


def test_missing_bucket_names_storage_init(make_app, pg_cluster, source_db, s3_settings):
    runner = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), **s3_settings).test_cli_runner()

    result = invoke(runner, "backup", "create")

    assert "flask storage init" in result.stderr


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


def test_garbage_local_file_of_a_legacy_row_is_not_reported_as_restored(app, runner, backup_dir, pg_cluster):
    (backup_dir / "garbage.dump").write_bytes(b"this is not a dump\n" * 100)
    before = sha256_file(backup_dir / "garbage.dump")
    with app.app_context():
        db.session.add(Backup(id="garbage1", filename="garbage.dump", database="x", format="custom",
                              status="completed", created_at=utcnow()))
        db.session.commit()

    result = invoke(runner, "backup", "restore", "garbage1", "--target-url",
                    app.config["BACKUP_DATABASE_URL"], "--yes", ok=False)

    assert "does not appear to be a valid archive" in error_line(result)
    assert sha256_file(backup_dir / "garbage.dump") == before, "still there, untouched"

    # Into a database the restore would create: the failure leaves no empty database behind.
    result = invoke(runner, "backup", "restore", "garbage1", "--target-url", pg_cluster.url("garbage_target"),
                    "--yes", ok=False)
    assert "does not appear to be a valid archive" in error_line(result)
    assert pg_cluster.psql("SELECT count(*) FROM pg_database WHERE datname = 'garbage_target'") == "0"


def test_a_url_with_connect_timeout_backs_up_and_restores(make_app, pg_cluster, source_db):
    """A documented libpq parameter in the URL: it must reach every connection exactly once."""
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db) + "?connect_timeout=5")
    runner = app.test_cli_runner()

    backup = create(runner)

    assert backup["status"] == "completed" and backup["row_counts"] == {"public.customers": 1000, "public.orders": 3000}
    pg_cluster.psql("DELETE FROM orders", source_db)
    invoke(runner, "backup", "restore", backup["id"], "--yes")
    assert pg_cluster.psql("SELECT count(*) FROM orders", source_db) == "3000"
