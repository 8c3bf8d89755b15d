"""Fault injection (issue 5), against real PostgreSQL and SeaweedFS.

Each test injects one fault, then checks for a clear, specific error and that nothing that
existed before was lost. Faults 6, 7 and 13 (worker killed, concurrent requests) are with
the background-job tests.
"""
import io
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from backup_app import wiring
from backup_app.adapters.local import sha256_of
from backup_app.errors import DumpFailed
from backup_app.extensions import db
from backup_app.services.backups.create import create_backup
from devtools.localservers import reserve_port, wait_until
from tests.conftest import both_catalogs
from tests.helpers import (
    add_target,
    age_backups,
    bucket_keys,
    copy_status,
    count_rows,
    create,
    error_line,
    invoke,
    leftovers,
    listed,
    sha256_file,
    show,
)

pytestmark = pytest.mark.integration


def test_01_s3_killed_mid_upload_then_sync_uploads_it(make_app, pg_cluster, big_db, start_store):
    """Fault 1: S3 killed mid-upload → local copy complete, s3 copy failed; sync uploads it later."""
    server = start_store()
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(big_db), MINIO_PART_SIZE=5 * 1024 * 1024, **server.settings())
    runner = app.test_cli_runner()
    invoke(runner, "storage", "init")

    def kill_s3_midway(nbytes: int) -> None:
        if nbytes > 8 * 1024 * 1024 and server.process.poll() is None:
            server.kill()

    with app.app_context():
        backup = create_backup(db.session, wiring.dump_spec(), wiring.local_storage(),
                               wiring.s3_stores(), wiring.pg_tools(), progress=kill_s3_midway)
        backup_id, filename, sha = backup.id, backup.filename, backup.sha256
        assert backup.status == "completed"
        assert backup.copy("s3").status == "failed" and "S3" in backup.copy("s3").error
    assert sha256_file(Path(app.config["BACKUP_DIR"]) / filename) == sha

    server.restart()
    result = invoke(runner, "backup", "sync", "--json")

    assert json.loads(result.stdout) == [{"id": backup_id, "filename": filename, "action": "uploaded",
                                          "location": "s3", "error": None}]
    assert copy_status(show(runner, backup_id)) == {"local": "present", "s3": "present"}
    with app.app_context():
        with wiring.s3_stores()[0].open(filename) as stream:
            assert sha256_of(stream) == sha


def test_02_s3_down_before_create_gives_a_local_only_backup(make_app, pg_cluster, source_db, s3_settings):
    """Fault 2: S3 down before create → local-only backup, one clear warning (no retry chatter)."""
    dead = {**s3_settings, "MINIO_ENDPOINT": f"127.0.0.1:{reserve_port()}"}
    runner = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), **dead).test_cli_runner()

    result = invoke(runner, "backup", "create", "--json")

    backup = json.loads(result.stdout)
    assert backup["status"] == "completed"
    assert copy_status(backup) == {"local": "present", "s3": "failed"}
    assert backup["storage_url"] is None
    s3_copy = next(c for c in backup["copies"] if c["location"] == "s3")
    assert "cannot reach S3" in s3_copy["error"]
    assert [line for line in result.stderr.splitlines() if line] == [f"Warning: s3 copy failed: {s3_copy['error']}"]


def test_03_wrong_s3_keys_name_the_credential_problem(make_app, pg_cluster, source_db, s3_settings):
    """Fault 3: wrong S3 keys → local-only backup; the message names the credentials."""
    wrong = {**s3_settings, "MINIO_SECRET_KEY": "not-the-secret"}
    runner = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), **wrong).test_cli_runner()

    result = invoke(runner, "backup", "create", "--json")

    backup = json.loads(result.stdout)
    assert copy_status(backup) == {"local": "present", "s3": "failed"}
    assert "refused the credentials" in result.stderr
    assert "MINIO_SECRET_KEY" in result.stderr


@both_catalogs
@pytest.mark.parametrize("case, expected", [
    ("bad password", "password authentication failed"),
    ("missing database", "does not exist"),
])
def test_04_pg_dump_failure_leaves_nothing_behind(case, expected, make_app, pg_cluster, source_db,
                                               s3_settings, s3_server):
    """Fault 4: pg_dump fails → no file, no object, failed row with pg_dump's message."""
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
        objects = list(wiring.s3_stores()[0].client.list_objects(bucket_name=s3_settings["MINIO_BUCKET"]))
    assert objects == []


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


def test_05_killed_pg_dump_leaves_nothing_behind(make_app, pg_cluster, big_db, s3_settings):
    """Fault 5: pg_dump killed mid-dump → as 4, no .partial, no multipart upload left."""
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
        s3 = wiring.s3_stores()[0]
        with pytest.raises(DumpFailed, match="killed by signal 9"):
            create_backup(db.session, wiring.dump_spec(), wiring.local_storage(), [s3],
                                  wiring.pg_tools(), progress=kill_pg_dump_midway)
        objects = list(s3.client.list_objects(bucket_name=s3.bucket))
        uploads = s3.client._list_multipart_uploads(bucket_name=s3.bucket).uploads

    assert len(killed) == 1
    [row] = listed(app.test_cli_runner())
    assert row["status"] == "failed" and "killed by signal 9" in row["error"]
    assert leftovers(Path(app.config["BACKUP_DIR"])) == []
    assert objects == [] and list(uploads) == []


@pytest.fixture
def tiny_backup_dir(tmp_path):
    """A 2 MB tmpfs: a backup folder that fills up (needs root to mount)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.fail("cannot mount a tmpfs: the suite runs as root, as CI does")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_08_local_disk_full_fails_clearly_and_leaves_nothing(make_app, pg_cluster, big_db, s3_settings,
                                                             tiny_backup_dir):
    """Fault 8: BACKUP_DIR fills up → a clear error, no partial file, no object, earlier backups kept."""
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(big_db), BACKUP_DIR=str(tiny_backup_dir), **s3_settings)
    runner = app.test_cli_runner()
    invoke(runner, "storage", "init")
    (tiny_backup_dir / "earlier.dump").write_bytes(b"x" * 1000)

    result = invoke(runner, "backup", "create", ok=False)

    assert f"the backup folder {tiny_backup_dir} is full" in error_line(result)
    [row] = listed(runner)
    assert row["status"] == "failed" and "is full" in row["error"]
    assert leftovers(tiny_backup_dir) == ["earlier.dump"]
    with app.app_context():
        assert bucket_keys(wiring.s3_stores()[0]) == []


def test_09_corrupt_local_copy_restores_from_s3(runner, pg_cluster, source_db, backup_dir):
    """Fault 9: local copy corrupted → SHA-256 mismatch detected, the S3 copy used."""
    backup = create(runner)
    local_file = backup_dir / backup["filename"]
    data = bytearray(local_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    local_file.write_bytes(bytes(data))
    pg_cluster.psql("DELETE FROM orders", source_db)

    invoke(runner, "backup", "restore", backup["id"], "--yes")

    assert count_rows(pg_cluster, source_db) == 3000
    assert sha256_file(local_file) == backup["sha256"]


def test_10_corrupt_s3_copy_is_detected_and_the_local_copy_used(runner, pg_cluster, source_db, s3):
    """Fault 10: s3 copy corrupted → restore uses the local copy; verify reports the bad s3 copy."""
    backup = create(runner)
    s3.client.put_object(bucket_name=s3.bucket, object_name=backup["filename"],
                         data=io.BytesIO(b"PGDMP garbage"), length=13)
    pg_cluster.psql("DELETE FROM orders", source_db)

    invoke(runner, "backup", "restore", backup["id"], "--yes")
    assert count_rows(pg_cluster, source_db) == 3000

    result = invoke(runner, "backup", "verify", backup["id"], ok=False)
    assert "s3 copy" in error_line(result) and "does not match its recorded SHA-256" in error_line(result)
    assert copy_status(show(runner, backup["id"])) == {"local": "present", "s3": "failed"}


def test_11_lost_catalog_is_rebuilt_by_rescan(make_app, pg_cluster, source_db, s3_settings, tmp_path):
    """Fault 11: catalog deleted → rescan restores every row; restore works from the rebuilt rows."""
    backup_dir = str(tmp_path / "backups")
    first = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), BACKUP_DIR=backup_dir, **s3_settings)
    runner = first.test_cli_runner()
    invoke(runner, "storage", "init")
    made = [create(runner) for _ in range(2)]
    local_only = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), BACKUP_DIR=backup_dir)
    made.append(create(local_only.test_cli_runner()))  # a backup whose only copy is on disk
    (tmp_path / "catalog.db").unlink()

    fresh = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), BACKUP_DIR=backup_dir, **s3_settings)
    runner = fresh.test_cli_runner()
    report = json.loads(invoke(runner, "backup", "rescan", "--json").stdout)

    assert sorted(a["id"] for a in report["added"]) == sorted(b["id"] for b in made)
    rebuilt = {b["id"]: b for b in listed(runner)}
    for original in made:
        again = rebuilt[original["id"]]
        for key in ("filename", "database", "size_bytes", "sha256", "status", "codec"):
            assert again[key] == original[key], key
        # A file name carries its time to the second; object metadata to the microsecond.
        assert again["created_at"][:19] == original["created_at"][:19]
        assert again["completed_at"] is not None, "from the object's or the file's last modification"
        assert copy_status(again) == copy_status(original)
        assert all(c["size_bytes"] == original["size_bytes"] for c in again["copies"])
        if "s3" in copy_status(original):  # the object's metadata carries the versions
            assert (again["server_version"], again["client_version"]) == (original["server_version"],
                                                                          original["client_version"])
    assert json.loads(invoke(runner, "backup", "rescan", "--json").stdout)["added"] == [], "no duplicates"
    pg_cluster.psql("DELETE FROM orders", source_db)
    invoke(runner, "backup", "restore", made[0]["id"], "--yes")
    assert count_rows(pg_cluster, source_db) == 3000


def test_12a_objects_made_since_the_backup_are_gone_after_a_restore_and_kept_aside(
        app, runner, pg_cluster, source_db):
    """Fault 12: objects the backup does not know (a view on a table it restores) → the restore
    builds beside them and swaps: the target holds exactly the backup, the view is kept aside.
    In place (`pg_restore --clean`) the same restore fails on the view and changes nothing."""
    backup = create(runner)
    pg_cluster.psql("CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 5; DELETE FROM orders", source_db)

    refused = invoke(runner, "backup", "restore", backup["id"], "--yes", "--in-place", ok=False)
    assert "Error: pg_restore: error:" in error_line(refused) and "depend" in refused.stderr
    assert count_rows(pg_cluster, source_db) == 0, "rolled back"

    previous = json.loads(invoke(runner, "backup", "restore", backup["id"], "--yes", "--json").stdout)[
        "previous_database"]

    assert count_rows(pg_cluster, source_db) == 3000
    assert pg_cluster.psql("SELECT count(*) FROM pg_views WHERE viewname = 'big_orders'", source_db) == "0"
    assert pg_cluster.psql("SELECT count(*) FROM pg_views WHERE viewname = 'big_orders'", previous) == "1"


def test_12b_a_session_holding_a_lock_is_ended_by_the_swap_and_times_out_in_place(
        make_app, pg_cluster, source_db, s3_settings):
    """Fault 12: active connections → in place, a lock timeout instead of a hang and nothing
    changed; built beside and swapped (the default), the session is ended and the restore done."""
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), RESTORE_LOCK_TIMEOUT=2, **s3_settings)
    runner = app.test_cli_runner()
    invoke(runner, "storage", "init")
    backup = create(runner)
    pg_cluster.psql("DELETE FROM orders WHERE id > 100", source_db)
    holder = subprocess.Popen(
        ["/usr/lib/postgresql/15/bin/psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(pg_cluster.port),
         "-U", "postgres", "-d", source_db, "-c",
         "BEGIN; LOCK TABLE orders IN ACCESS SHARE MODE; SELECT pg_sleep(3600);"],
        env={**os.environ, "PGPASSWORD": pg_cluster.password}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: pg_cluster.psql(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'orders' AND l.granted AND l.pid <> pg_backend_pid()", source_db) == "1",
            10, "the other session's lock")
        result = invoke(runner, "backup", "restore", backup["id"], "--yes", "--in-place", ok=False)
        assert "waited more than 2 s for locks held by other sessions (pid " in error_line(result)
        assert count_rows(pg_cluster, source_db) == 100, "rolled back: the rows deleted before stay deleted"

        invoke(runner, "backup", "restore", backup["id"], "--yes")
        assert holder.wait(timeout=10) != 0, "the session holding the lock was ended"
    finally:
        holder.kill()
        holder.wait()
    assert count_rows(pg_cluster, source_db) == 3000


def test_14_prune_after_a_run_of_failures_keeps_the_good_backups(keyed_app, pg_cluster, other_db):
    """Fault 14: retention while the last runs failed → no good backup deleted."""
    runner = keyed_app.test_cli_runner()
    add_target(runner, "other", pg_cluster.url(other_db), "--keep-days", "1", "--keep-last", "2")
    good = [create(runner, "--database", "other")["id"] for _ in range(2)]
    age_backups(keyed_app, {good[0]: 20, good[1]: 19})
    pg_cluster.psql(f"ALTER DATABASE {other_db} RENAME TO {other_db}_away")
    try:
        for _ in range(3):
            invoke(runner, "backup", "create", "--database", "other", ok=False)
    finally:
        pg_cluster.psql(f"ALTER DATABASE {other_db}_away RENAME TO {other_db}")
    statuses = [b["status"] for b in json.loads(invoke(runner, "backup", "list", "--json").stdout)]
    assert statuses.count("failed") == 3

    deleted = json.loads(invoke(runner, "backup", "prune", "--json").stdout)

    assert deleted == []
    remaining = json.loads(invoke(runner, "backup", "list", "--json").stdout)
    assert {b["id"] for b in remaining if b["status"] == "completed"} == set(good)
    assert all(copy_status(b) == {"local": "present", "s3": "present"}
               for b in remaining if b["status"] == "completed")
