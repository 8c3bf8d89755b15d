"""The backup engine through the `flask` CLI, against real PostgreSQL and SeaweedFS."""
import json
import urllib.request
from urllib.error import HTTPError

import pytest

from tests.conftest import both_catalogs, both_servers
from tests.helpers import copy_status, count_rows, create, error_line, invoke, sha256_file, show

pytestmark = pytest.mark.integration


@both_servers
def test_seed_checklist_create_upload_delete_local_restore(runner, pg_cluster, source_db, s3, backup_dir):
    backup = create(runner)

    assert backup["status"] == "completed"
    assert backup["database"] == source_db
    assert copy_status(backup) == {"local": "present", "s3": "present"}
    assert backup["storage_url"] == f"s3://{s3.bucket}/{backup['filename']}"
    local_file = backup_dir / backup["filename"]
    assert local_file.stat().st_size == backup["size_bytes"]
    assert sha256_file(local_file) == backup["sha256"]
    assert local_file.read_bytes()[:5] == b"PGDMP"

    stat = s3.stat(backup["filename"])
    assert stat.size == backup["size_bytes"]
    assert stat.content_type == "application/octet-stream"
    meta = {k.lower(): v for k, v in stat.metadata.items()}
    assert meta["x-database"] == source_db
    assert meta["x-backup-timestamp"] == backup["created_at"]
    assert meta["x-backup-sha256"] == backup["sha256"]
    assert meta["x-backup-id"] == backup["id"]
    server_version = pg_cluster.psql("SHOW server_version").split()[0]
    assert backup["server_version"] == meta["x-server-version"] == server_version
    assert backup["client_version"] == meta["x-client-version"]
    assert backup["client_version"].split(".")[0] == server_version.split(".")[0], "the matching pg_dump"

    local_file.unlink()
    pg_cluster.psql("DELETE FROM orders; DELETE FROM customers;", source_db)
    result = invoke(runner, "backup", "restore", backup["id"], "--yes")

    assert "Restored backup" in result.stdout
    assert count_rows(pg_cluster, source_db) == 3000
    assert count_rows(pg_cluster, source_db, "customers") == 1000
    assert sha256_file(local_file) == backup["sha256"], "the S3 copy is saved locally again"
    assert copy_status(show(runner, backup["id"])) == {"local": "present", "s3": "present"}


@both_catalogs
def test_restore_uses_intact_local_file(runner, pg_cluster, source_db, s3):
    backup = create(runner)
    s3.delete(backup["filename"])  # proves the local file is what gets used
    pg_cluster.psql("DROP TABLE orders", source_db)

    invoke(runner, "backup", "restore", backup["id"], "--yes")

    assert count_rows(pg_cluster, source_db) == 3000


@both_servers
def test_restore_into_another_database_creates_it(runner, pg_cluster, source_db):
    backup = create(runner)
    other = source_db + "_copy"
    try:
        invoke(runner, "backup", "restore", backup["id"], "--target-url", pg_cluster.url(other), "--yes")
        assert count_rows(pg_cluster, other) == 3000
        assert count_rows(pg_cluster, source_db) == 3000, "the source is untouched"
    finally:
        pg_cluster.dropdb(other)


def test_restore_reads_the_target_url_from_stdin(runner, pg_cluster, source_db):
    backup = create(runner)
    other = source_db + "_stdin"
    url = pg_cluster.url(other)
    try:
        result = runner.invoke(args=["backup", "restore", backup["id"], "--target-url-stdin", "--yes"],
                               input=url + "\n")
        assert result.exit_code == 0, result.output
        assert count_rows(pg_cluster, other) == 3000
        assert pg_cluster.password not in result.output
    finally:
        pg_cluster.dropdb(other)


@pytest.mark.parametrize("stdin, extra, message", [
    ("", [], "Error: --target-url-stdin: stdin's first line is empty"),
    ("\npostgresql://late@h/x\n", [], "Error: --target-url-stdin: stdin's first line is empty"),
    ("postgresql://u@h/x\n", ["--target-url", "postgresql://u@h/y"],
     "Error: give --target-url or --target-url-stdin, not both"),
], ids=["empty", "blank-first-line", "both"])
def test_restore_with_target_url_stdin_and_no_url_changes_nothing(runner, pg_cluster, source_db, stdin, extra,
                                                                   message):
    backup = create(runner)
    pg_cluster.psql("DELETE FROM orders", source_db)

    result = runner.invoke(args=["backup", "restore", backup["id"], "--target-url-stdin", "--yes", *extra],
                           input=stdin)

    assert result.exit_code == 1
    assert error_line(result).startswith(message)
    assert count_rows(pg_cluster, source_db) == 0, "not restored into the backup's own database instead"


def test_restore_without_confirmation_changes_nothing(runner, pg_cluster, source_db):
    backup = create(runner)
    pg_cluster.psql("DELETE FROM orders", source_db)

    result = invoke(runner, "backup", "restore", backup["id"], ok=False)

    assert "cancelled" in error_line(result)
    assert count_rows(pg_cluster, source_db) == 0


def test_neither_copy_gives_a_clear_error(runner, pg_cluster, source_db, s3, backup_dir):
    backup = create(runner)
    (backup_dir / backup["filename"]).unlink()
    s3.delete(backup["filename"])
    pg_cluster.psql("DELETE FROM orders", source_db)

    result = invoke(runner, "backup", "restore", backup["id"], "--yes", ok=False)

    assert error_line(result) == "Error: Backup file not found locally or in storage"
    assert count_rows(pg_cluster, source_db) == 0, "nothing was restored"
    assert copy_status(show(runner, backup["id"])) == {"local": "missing", "s3": "missing"}
    assert not list(backup_dir.glob("*.partial"))


def test_download_with_and_without_the_local_file(runner, backup_dir, tmp_path):
    backup = create(runner)

    first = tmp_path / "first.dump"
    invoke(runner, "backup", "download", backup["id"], "--output", str(first))
    assert sha256_file(first) == backup["sha256"]

    (backup_dir / backup["filename"]).unlink()
    second = tmp_path / "second.dump"
    invoke(runner, "backup", "download", backup["id"], "--output", str(second))
    assert sha256_file(second) == backup["sha256"]
    assert not (backup_dir / backup["filename"]).exists(), "download does not write BACKUP_DIR"


def test_download_into_a_folder_uses_the_backup_filename(runner, tmp_path):
    backup = create(runner)

    invoke(runner, "backup", "download", backup["id"], "--output", str(tmp_path))

    assert sha256_file(tmp_path / backup["filename"]) == backup["sha256"]


def test_download_refuses_to_overwrite_a_file(runner, tmp_path):
    backup = create(runner)
    existing = tmp_path / "keep.txt"
    existing.write_text("precious")

    result = invoke(runner, "backup", "download", backup["id"], "--output", str(existing), ok=False)

    assert "already exists" in error_line(result)
    assert existing.read_text() == "precious"


@both_catalogs
def test_delete_removes_object_row_and_file(runner, s3, backup_dir):
    backup = create(runner)
    keep = create(runner)

    invoke(runner, "backup", "delete", backup["id"], "--yes")

    assert s3.stat(backup["filename"]) is None
    assert not (backup_dir / backup["filename"]).exists()
    assert [b["id"] for b in json.loads(invoke(runner, "backup", "list", "--json").stdout)] == [keep["id"]]
    assert s3.stat(keep["filename"]) is not None and (backup_dir / keep["filename"]).exists()


def test_delete_when_copies_are_already_gone(runner, s3, backup_dir):
    backup = create(runner)
    s3.delete(backup["filename"])
    (backup_dir / backup["filename"]).unlink()

    invoke(runner, "backup", "delete", backup["id"], "--yes")

    assert json.loads(invoke(runner, "backup", "list", "--json").stdout) == []


def test_bad_backup_id_on_every_command(runner, tmp_path):
    for args in (["show", "nosuchid"], ["restore", "nosuchid", "--yes"],
                 ["download", "nosuchid", "--output", str(tmp_path / "x")],
                 ["delete", "nosuchid", "--yes"], ["show", "../../etc/passwd"]):
        result = invoke(runner, "backup", *args, ok=False)
        assert error_line(result).startswith("Error: Backup not found:"), args
    assert not (tmp_path / "x").exists()


@both_catalogs
def test_list_and_show_json_shape(runner, source_db):
    first = create(runner)
    second = create(runner)

    listed = json.loads(invoke(runner, "backup", "list", "--json").stdout)

    assert [b["id"] for b in listed] == [second["id"], first["id"]]
    for key in ("id", "filename", "database", "size_bytes", "sha256", "storage_url", "status",
                "created_at", "copies"):
        assert key in listed[0]
    assert {"location", "status", "uri"} <= set(listed[0]["copies"][0])
    assert first["id"][0].isalpha() and first["id"].isalnum() and first["id"].islower()
    assert show(runner, first["id"]) == first
    text = invoke(runner, "backup", "list").stdout
    assert first["id"] in text and source_db in text


def test_storage_init_is_idempotent_and_bucket_private(runner, s3):
    result = invoke(runner, "storage", "init")
    assert "exists" in result.stdout
    backup = create(runner)

    with pytest.raises(HTTPError) as denied:
        urllib.request.urlopen(f"http://{s3.endpoint}/{s3.bucket}/{backup['filename']}", timeout=5)
    denied.value.close()
    assert denied.value.code == 403
