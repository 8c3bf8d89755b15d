"""Targets, codecs, encryption at rest and retention, through the CLI against real servers."""
import json
from pathlib import Path

import pytest

from backup_app.extensions import db
from backup_app.models import Target
from tests.conftest import both_catalogs, both_servers
from tests.helpers import add_target, age_backups, create, error_line, invoke, new_key, sha256_file

pytestmark = pytest.mark.integration


def table_fingerprint(pg_cluster, dbname: str) -> tuple[str, str]:
    """Row count and a checksum of the orders table's contents."""
    count = pg_cluster.psql("SELECT count(*) FROM orders", dbname)
    digest = pg_cluster.psql("SELECT md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o", dbname)
    return count, digest


def test_targets_add_list_test_remove(keyed_app, pg_cluster, source_db, other_db):
    runner = keyed_app.test_cli_runner()

    add_target(runner, "other", pg_cluster.url(other_db), "--schedule", "0 3 * * *",
               "--timezone", "Europe/Berlin", "--keep-days", "7", "--keep-last", "2", "--gfs", "7,4,12",
               "--codec", "zstd", "--encrypt", "--verify-schedule", "0 5 * * 0")
    listed = {t["name"]: t for t in json.loads(invoke(runner, "targets", "list", "--json").stdout)}

    assert set(listed) == {source_db, "other"}
    assert listed[source_db]["from_env"] is True
    other = listed["other"]
    assert (other["codec"], other["encrypt"], other["keep_days"], other["keep_last"], other["gfs"]) == \
        ("zstd", True, 7, 2, [7, 4, 12])
    assert other["next_run_at"].endswith(":00Z") and other["has_password"] is True
    assert other["verify_schedule"] == "0 5 * * 0" and other["verify_next_run_at"].endswith(":00Z")
    assert pg_cluster.password not in json.dumps(listed)
    with keyed_app.app_context():
        stored = db.session.query(Target).filter_by(name="other").one().password_encrypted
    assert pg_cluster.password not in stored

    assert "PostgreSQL 15" in invoke(runner, "targets", "test", "other").stdout
    invoke(runner, "targets", "remove", "other", "--yes")
    assert "other" not in invoke(runner, "targets", "list").stdout


@pytest.mark.parametrize("args, message", [
    (["--schedule", "every day"], "invalid cron expression"),
    (["--verify-schedule", "weekly"], "invalid cron expression 'weekly'"),
    (["--timezone", "Mars/Olympus"], "unknown time zone"),
    (["--gfs", "7,4"], "--gfs takes three numbers"),
    (["--keep-days", "-1"], "cannot be negative"),
    (["--keep-days", "0", "--keep-last", "0"], "a retention that keeps nothing (keep-days 0, keep-last 0, no GFS) "
                                               "would delete every backup at the next prune"),
])
def test_bad_target_settings_are_refused(keyed_app, pg_cluster, other_db, args, message):
    runner = keyed_app.test_cli_runner()

    result = add_target(runner, "bad", pg_cluster.url(other_db), *args, ok=False)

    assert message in error_line(result)
    assert "bad" not in invoke(runner, "targets", "list").stdout


def test_password_needs_the_master_key(make_app, pg_cluster, other_db):
    runner = make_app().test_cli_runner()

    result = add_target(runner, "other", pg_cluster.url(other_db), ok=False)

    assert "set APP_ENCRYPTION_KEY to store a target's password" in error_line(result)


def test_duplicate_and_unknown_targets(keyed_app, pg_cluster, source_db, other_db):
    runner = keyed_app.test_cli_runner()
    add_target(runner, "other", pg_cluster.url(other_db))

    assert "already exists" in error_line(add_target(runner, "other", pg_cluster.url(other_db), ok=False))
    assert "Unknown database 'nope'" in error_line(invoke(runner, "backup", "create", "--database", "nope", ok=False))
    assert "BACKUP_DATABASE_URL" in error_line(invoke(runner, "targets", "remove", source_db, "--yes", ok=False))


@both_servers
@pytest.mark.parametrize("codec, encrypt", [("zstd", False), ("plain", False), ("gzip", True), ("zstd", True)])
def test_codecs_and_encryption_restore_the_same_data(keyed_app, pg_cluster, other_db, s3, codec, encrypt):
    runner = keyed_app.test_cli_runner()
    add_target(runner, "other", pg_cluster.url(other_db), "--codec", codec,
               *(["--encrypt"] if encrypt else []))
    before = table_fingerprint(pg_cluster, other_db)

    backup = create(runner, "--database", "other")

    assert (backup["codec"], backup["encrypted"]) == (codec, encrypt)
    local_bytes = Path(keyed_app.config["BACKUP_DIR"], backup["filename"]).read_bytes()
    with s3.open(backup["filename"]) as stream:
        object_bytes = stream.read()
    assert local_bytes == object_bytes
    if encrypt:
        assert not local_bytes.startswith(b"PGDMP") and b"customer 1" not in local_bytes
        assert backup["filename"].endswith(".enc")
    elif codec == "zstd":
        assert local_bytes[:4] == b"\x28\xb5\x2f\xfd"
    else:
        assert local_bytes.startswith(b"PGDMP") and b"customer 1" in local_bytes  # -Z0: readable
    meta = {k.lower(): v for k, v in s3.stat(backup["filename"]).metadata.items()}
    assert meta["x-backup-codec"] == codec
    assert meta["x-backup-encrypted"] == str(encrypt).lower()

    pg_cluster.psql("DELETE FROM orders", other_db)
    invoke(runner, "backup", "restore", backup["id"], "--yes")
    assert table_fingerprint(pg_cluster, other_db) == before


def test_zstd_is_smaller_than_uncompressed(keyed_app, pg_cluster, other_db):
    runner = keyed_app.test_cli_runner()
    add_target(runner, "raw", pg_cluster.url(other_db), "--codec", "plain")
    add_target(runner, "small", pg_cluster.url(other_db), "--codec", "zstd")

    raw = create(runner, "--database", "raw")
    small = create(runner, "--database", "small")

    assert small["size_bytes"] < raw["size_bytes"] / 2


@both_servers
def test_plain_sql_format(keyed_app, pg_cluster, other_db, tmp_path):
    runner = keyed_app.test_cli_runner()
    add_target(runner, "sql", pg_cluster.url(other_db), "--format", "plain", "--codec", "plain")
    before = table_fingerprint(pg_cluster, other_db)

    backup = create(runner, "--database", "sql")
    invoke(runner, "backup", "download", backup["id"], "--output", str(tmp_path / "d.sql"))

    assert backup["filename"].endswith(".sql")
    assert b"CREATE TABLE public.orders" in (tmp_path / "d.sql").read_bytes()
    pg_cluster.psql("DROP TABLE orders", other_db)
    invoke(runner, "backup", "restore", backup["id"], "--yes")
    assert table_fingerprint(pg_cluster, other_db) == before


def test_download_stored_or_decoded(keyed_app, pg_cluster, other_db, tmp_path):
    runner = keyed_app.test_cli_runner()
    add_target(runner, "other", pg_cluster.url(other_db), "--codec", "zstd", "--encrypt")
    backup = create(runner, "--database", "other")

    invoke(runner, "backup", "download", backup["id"], "--output", str(tmp_path / "stored"))
    invoke(runner, "backup", "download", backup["id"], "--output", str(tmp_path / "plain.dump"), "--decode")

    assert sha256_file(tmp_path / "stored") == backup["sha256"]
    assert (tmp_path / "plain.dump").read_bytes()[:5] == b"PGDMP"


def test_wrong_or_missing_key_fails_clearly_and_changes_nothing(keyed_app, make_app, pg_cluster,
                                                                 source_db, s3_settings, other_db, tmp_path):
    runner = keyed_app.test_cli_runner()
    add_target(runner, "other", pg_cluster.url(other_db), "--codec", "zstd", "--encrypt")
    backup = create(runner, "--database", "other")
    pg_cluster.psql("DELETE FROM orders WHERE id > 10", other_db)
    target_url = pg_cluster.url(other_db)

    wrong = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), APP_ENCRYPTION_KEY=new_key(),
                     **s3_settings).test_cli_runner()
    result = invoke(wrong, "backup", "restore", backup["id"], "--target-url", target_url, "--yes", ok=False)
    assert "encrypted with another APP_ENCRYPTION_KEY" in error_line(result)

    keyless = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), **s3_settings).test_cli_runner()
    result = invoke(keyless, "backup", "restore", backup["id"], "--target-url", target_url, "--yes", ok=False)
    assert "set APP_ENCRYPTION_KEY" in error_line(result)
    result = invoke(keyless, "backup", "download", backup["id"], "--output", str(tmp_path / "x"), "--decode",
                    ok=False)
    assert "set APP_ENCRYPTION_KEY" in error_line(result)

    assert pg_cluster.psql("SELECT count(*) FROM orders", other_db) == "10", "target untouched"
    assert not (tmp_path / "x").exists()


@both_catalogs
def test_prune_dry_run_then_prune_across_every_copy(keyed_app, pg_cluster, other_db, s3):
    runner = keyed_app.test_cli_runner()
    add_target(runner, "other", pg_cluster.url(other_db), "--keep-days", "30", "--keep-last", "2")
    backups = [create(runner, "--database", "other") for _ in range(4)]
    ids = [b["id"] for b in backups]
    age_backups(keyed_app, {ids[0]: 50, ids[1]: 45, ids[2]: 40, ids[3]: 35})

    preview = json.loads(invoke(runner, "backup", "prune", "--database", "other", "--dry-run", "--json").stdout)

    assert {p["id"] for p in preview} == {ids[0], ids[1]}
    assert all(set(p) == {"id", "filename", "database", "reason"} for p in preview)
    assert "older than 30 days" in preview[0]["reason"]
    assert len(json.loads(invoke(runner, "backup", "list", "--json").stdout)) == 4, "dry run deletes nothing"

    text = invoke(runner, "backup", "prune").stdout
    assert f"Deleted {ids[0]}" in text and f"Deleted {ids[1]}" in text

    remaining = {b["id"] for b in json.loads(invoke(runner, "backup", "list", "--json").stdout)}
    assert remaining == {ids[2], ids[3]}
    for gone in backups[:2]:
        assert s3.stat(gone["filename"]) is None
        assert not Path(keyed_app.config["BACKUP_DIR"], gone["filename"]).exists()
    assert json.loads(invoke(runner, "backup", "prune", "--json").stdout) == []


