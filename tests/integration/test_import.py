"""`flask backup import` and the upload form: dumps made elsewhere stored as backups, checked first,
against real PostgreSQL and SeaweedFS."""
import gzip
import json
import os
import subprocess
from pathlib import Path

import pytest
import zstandard

from backup_app.adapters.environment import child_env
from backup_app.adapters.pgtools import PgTools
from backup_app.core.conninfo import ConnInfo
from backup_app.extensions import db
from backup_app.models import COMPLETED, LOCAL, PRESENT, Backup, BackupCopy, Job, utcnow
from tests.conftest import both_servers
from tests.helpers import bucket_keys, copy_status, error_line, invoke, leftovers, listed, sha256_file, show

pytestmark = pytest.mark.integration

DATA = "SELECT md5(string_agg(o::text, ',' ORDER BY o.id)) FROM orders o"


def pg_dump(cluster, dbname: str, out: Path, *args: str) -> Path:
    """A dump made outside the app, by the pg_dump that fits the server."""
    conn = ConnInfo.from_url(cluster.url(dbname))
    _, client = PgTools.discover().for_dump(conn)
    subprocess.run([client.program("pg_dump"), "--no-password", f"--file={out}", *args], check=True,
                   env=child_env(conn.env()), capture_output=True)
    return out


@pytest.fixture
def dumps(pg_cluster, source_db, tmp_path):
    """make(kind) → a file of that kind dumped from `source_db`."""
    def make(kind: str) -> Path:
        if kind == "custom":
            return pg_dump(pg_cluster, source_db, tmp_path / "shop.dump", "--format=custom")
        if kind == "tar":
            return pg_dump(pg_cluster, source_db, tmp_path / "shop.tar", "--format=tar")
        plain = pg_dump(pg_cluster, source_db, tmp_path / "shop.sql", "--format=plain")
        if kind == "plain.gz":
            out = tmp_path / "shop.sql.gz"
            out.write_bytes(gzip.compress(plain.read_bytes()))
            return out
        if kind == "plain.zst":
            out = tmp_path / "renamed.txt"  # told by its bytes, not its name
            out.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
            return out
        return plain
    return make


def import_json(runner, path: Path, database: str) -> dict:
    return json.loads(invoke(runner, "backup", "import", str(path), "--database", database, "--json").stdout)


def restored_copy(pg_cluster, runner, backup_id: str, name: str, *extra: str) -> str:
    """Restore a backup into a new database `name` (by URL); the data's fingerprint there."""
    invoke(runner, "backup", "restore", backup_id, "--target-url", pg_cluster.url(name), "--yes", *extra)
    return pg_cluster.psql(DATA, name)


def assert_nothing_stored(runner, backup_dir: Path, s3) -> None:
    assert leftovers(backup_dir) == [], "no file, no .partial"
    assert bucket_keys(s3) == [], "no object"
    assert listed(runner) == [], "no catalog row"


@pytest.mark.parametrize("kind, fmt, codec", [("custom", "custom", "gzip"), ("tar", "tar", "zstd"),
                                              ("plain", "plain", "zstd"), ("plain.gz", "plain", "zstd"),
                                              ("plain.zst", "plain", "zstd")])
def test_import_stores_a_backup_that_restores_verifies_and_downloads(runner, pg_cluster, source_db, dumps, s3,
                                                                     backup_dir, tmp_path, kind, fmt, codec):
    backup = import_json(runner, dumps(kind), source_db)

    assert backup["status"] == "completed"
    assert (backup["database"], backup["format"], backup["codec"]) == (source_db, fmt, codec)
    assert copy_status(backup) == {"local": "present", "s3": "present"}
    assert sha256_file(backup_dir / backup["filename"]) == backup["sha256"]
    assert s3.stat(backup["filename"]).size == backup["size_bytes"]
    server = pg_cluster.psql("SHOW server_version").split()[0]
    assert backup["server_version"] == server, "read from the dump's header"
    assert backup["client_version"]
    assert show(runner, backup["id"]) == backup

    copy = source_db + "_imported"
    try:
        assert restored_copy(pg_cluster, runner, backup["id"], copy) == pg_cluster.psql(DATA, source_db)
    finally:
        pg_cluster.dropdb(copy)
    verified = json.loads(invoke(runner, "backup", "verify", backup["id"], "--json").stdout)
    assert verified["last_verification"]["status"] == "passed"
    invoke(runner, "backup", "download", backup["id"], "--output", str(tmp_path / "out"))
    assert sha256_file(tmp_path / "out") == backup["sha256"]


@both_servers
def test_a_label_imports_and_restores_by_url_only(runner, pg_cluster, source_db, dumps):
    backup = import_json(runner, dumps("custom"), "old-server.shop")

    assert backup["database"] == "old-server.shop"
    refused = invoke(runner, "backup", "restore", backup["id"], "--yes", ok=False)
    assert "Unknown database 'old-server.shop'" in error_line(refused)
    copy = source_db + "_label"
    try:
        assert restored_copy(pg_cluster, runner, backup["id"], copy) == pg_cluster.psql(DATA, source_db)
    finally:
        pg_cluster.dropdb(copy)


def test_an_encrypting_target_stores_the_import_encrypted(keyed_app, pg_cluster, source_db, dumps, s3_settings):
    runner = keyed_app.test_cli_runner()
    invoke(runner, "targets", "add", "shop", "--url", pg_cluster.url(source_db), "--codec", "zstd", "--encrypt")
    backup = import_json(runner, dumps("custom"), "shop")

    assert backup["encrypted"] is True
    stored = Path(keyed_app.config["BACKUP_DIR"]) / backup["filename"]
    assert not stored.read_bytes().startswith(b"PGDMP")
    copy = source_db + "_enc"
    try:
        assert restored_copy(pg_cluster, runner, backup["id"], copy) == pg_cluster.psql(DATA, source_db)
    finally:
        pg_cluster.dropdb(copy)


def not_dumps(tmp_path: Path, dumps) -> dict[str, tuple[Path, str]]:
    custom, tar = dumps("custom").read_bytes(), dumps("tar").read_bytes()
    files = {
        "random bytes": (os.urandom(200_000), "NUL byte"),
        "html": (b"<!DOCTYPE html>\n<html><body>Not found</body></html>\n", "does not start an SQL command"),
        "empty": (b"", "the file is empty"),
        "truncated custom": (custom[:len(custom) // 2], "cannot read this custom archive"),
        "truncated tar": (tar[:len(tar) // 2], "tar archive is damaged or truncated"),
        "gzip of garbage": (gzip.compress(os.urandom(5000)), "NUL byte"),
        "truncated gzip": (gzip.compress(b"SELECT 1;\n" * 100_000)[:900], "not a readable gzip file"),
        "cut plain": (b"CREATE TABLE t (a int);\nINSERT INTO t VALUES ('unfinished", "ends inside a quoted string"),
        "meta-command": (b"SELECT 1;\n\\! touch /tmp/imported-meta-command\n", "psql meta-command"),
        "meta-command after data": (b"COPY t (a) FROM stdin;\n1\n\\.\n\\o /tmp/x\n", "psql meta-command"),
    }
    made = {}
    for name, (content, message) in files.items():
        path = tmp_path / name.replace(" ", "-")
        path.write_bytes(content)
        made[name] = (path, message)
    return made


def test_a_file_that_is_not_a_dump_is_refused_and_nothing_is_stored(runner, dumps, tmp_path, backup_dir, s3,
                                                                     source_db):
    for name, (path, message) in not_dumps(tmp_path, dumps).items():
        result = invoke(runner, "backup", "import", str(path), "--database", source_db, ok=False)
        assert message in error_line(result), name
        assert_nothing_stored(runner, backup_dir, s3)
    assert not Path("/tmp/imported-meta-command").exists()


def test_an_import_is_a_job_and_is_audited(app, runner, dumps, source_db):
    backup = import_json(runner, dumps("plain"), source_db)
    invoke(runner, "backup", "import", str(dumps("plain")) + ".missing", "--database", source_db, ok=False)

    with app.app_context():
        job = db.session.query(Job).filter_by(kind="import").one()
        assert (job.status, job.backup_id, job.database) == ("completed", backup["id"], source_db)
    audit = json.loads(invoke(runner, "audit", "list", "--json").stdout)
    assert [(e["action"], e["subject"]) for e in audit[:2]] == [("import-failed", source_db), ("import", source_db)]


def test_a_meta_command_forced_into_the_catalog_does_not_run_on_restore(app, runner, pg_cluster, source_db,
                                                                       backup_dir, tmp_path):
    marker = tmp_path / "ran"
    script = (f"CREATE TABLE t (a int);\n\\! touch {marker}\nSELECT 1;\n").encode()
    backup_dir.mkdir(parents=True, exist_ok=True)
    (backup_dir / "forced.sql").write_bytes(script)
    with app.app_context():
        backup = Backup(id="forced1", filename="forced.sql", database=source_db, format="plain", codec="plain",
                        status=COMPLETED, size_bytes=len(script), sha256=sha256_file(backup_dir / "forced.sql"),
                        created_at=utcnow(), completed_at=utcnow())
        backup.copies.append(BackupCopy(location=LOCAL, uri=str(backup_dir / "forced.sql"), status=PRESENT))
        db.session.add(backup)
        db.session.commit()

    into = source_db + "_forced"
    result = invoke(runner, "backup", "restore", "forced1", "--target-url", pg_cluster.url(into), "--yes", ok=False)

    assert "psql meta-command" in error_line(result)
    assert not marker.exists()
    assert pg_cluster.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{into}'") == "0", "dropped again"


def upload(client, path: Path, database: str, *, token: bool = True):
    """POST the import form (multipart), with its CSRF token unless told not to."""
    from tests.web_helpers import csrf_token

    data = {"database": database, "file": (path.open("rb"), path.name)}
    if token:
        data["csrf_token"] = csrf_token(client, "/backups/import")
    return client.post("/backups/import", data=data, content_type="multipart/form-data")


def test_the_upload_form_imports_past_max_content_length(app, client, dumps, source_db, runner):
    app.config["MAX_CONTENT_LENGTH"] = 10_000  # forms and JSON; an import has IMPORT_MAX_BYTES
    dump = dumps("custom")
    assert dump.stat().st_size > 10_000
    page = client.get("/")
    assert 'href="/backups/import"' in page.get_data(as_text=True)

    response = upload(client, dump, source_db)

    assert response.status_code == 302, response.get_data(as_text=True)
    [backup] = listed(runner)
    assert response.headers["Location"].endswith(f"/backups/{backup['id']}")
    assert (backup["format"], copy_status(backup)) == ("custom", {"local": "present", "s3": "present"})
    audit = json.loads(invoke(runner, "audit", "list", "--json").stdout)
    assert (audit[0]["action"], audit[0]["subject"]) == ("import", source_db)


def test_the_upload_form_shows_why_a_file_is_refused_and_stores_nothing(client, dumps, tmp_path, source_db,
                                                                       runner, backup_dir, s3):
    for name, (path, message) in not_dumps(tmp_path, dumps).items():
        response = upload(client, path, source_db)
        assert response.status_code == 400, name
        assert message in response.get_data(as_text=True), name
        assert_nothing_stored(runner, backup_dir, s3)

    no_token = upload(client, dumps("plain"), source_db, token=False)
    assert no_token.status_code == 400
    assert_nothing_stored(runner, backup_dir, s3)


def test_an_upload_over_import_max_bytes_gets_a_clear_message(app, client, dumps, source_db, runner, backup_dir, s3):
    app.config["IMPORT_MAX_BYTES"] = 20_000
    dump = dumps("plain")
    dump.write_bytes(dump.read_bytes() + b"-- padding\n" * 10_000)

    response = upload(client, dump, source_db)

    assert response.status_code == 413
    body = response.get_data(as_text=True)
    assert "IMPORT_MAX_BYTES" in body and "flask backup import" in body
    assert_nothing_stored(runner, backup_dir, s3)
