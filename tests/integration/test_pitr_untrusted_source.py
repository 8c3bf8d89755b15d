"""A backed-up server is untrusted input: a restored server and a drill run none of its configuration
(ssl_passphrase_command, include, shared_preload_libraries …), its environment holds none of the app's
secrets, and a data directory carrying a program is refused."""
import json
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.helpers import add_target, error_line, invoke, modes_under, new_key, not_private
from tests.integration.pitr_support import (  # noqa: F401 - fixtures
    archiving,
    covered,
    insert_batch,
    pitr_cluster,
    receivers,
    restored,
    restored_rows,
    wait_for,
)

SECRETS = {"SECRET_KEY": "app-secret-key-a1b2c3", "APP_ENCRYPTION_KEY": new_key(),
           "MINIO_SECRET_KEY": "minio-secret-d4e5f6", "METRICS_TOKEN": "metrics-token-g7h8",
           "BACKUP_DATABASE_URL": "postgresql://app:db-password-i9j0@db.example/shop"}


@pytest.fixture
def pitr_app(make_app, pitr_cluster, s3_settings, monkeypatch):
    """pitr_support's app (the one its `receivers` run) preloading a library of the admin's choice,
    with the app's secrets in this process's environment, as in a deployed app's."""
    app = make_app(WAL_PARTIAL_UPLOAD_SECONDS=1, PITR_LEASE_SECONDS=5, APP_ENCRYPTION_KEY=new_key(),
                   PITR_PRELOAD_LIBRARIES=("pg_stat_statements",), **s3_settings)
    runner = app.test_cli_runner()
    invoke(runner, "storage", "init")
    add_target(runner, "shop", pitr_cluster.url("shop"))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return app


def plant(cluster, markers: Path) -> None:
    """What a superuser of the source can put in its own configuration: a passphrase command that runs
    at start-up (with an encrypted key to make it run), an included file with a command run at the end
    of recovery, and a library that does not exist here."""
    data = cluster.data_dir
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(data / "evil.key"),
                    "-out", str(data / "evil.crt"), "-passout", "pass:pw", "-subj", "/CN=evil", "-days", "1"],
                   check=True, capture_output=True)
    (data / "evil.conf").write_text(f"recovery_end_command = 'touch {markers}/recovery-end'\n")
    with open(data / "postgresql.conf", "a") as conf:
        conf.write("include_if_exists = 'evil.conf'\n")
    for name in ("evil.key", "evil.crt", "evil.conf"):
        shutil.chown(data / name, "postgres", "postgres")
        (data / name).chmod(0o600)
    cluster.psql("ALTER SYSTEM SET ssl = on")
    cluster.psql("ALTER SYSTEM SET ssl_cert_file = 'evil.crt'")
    cluster.psql("ALTER SYSTEM SET ssl_key_file = 'evil.key'")
    cluster.psql(f"ALTER SYSTEM SET ssl_passphrase_command = 'sh -c \"touch {markers}/passphrase; echo pw\"'")
    cluster.psql("ALTER SYSTEM SET shared_preload_libraries = 'backup_app_no_such_library'")
    # And in its catalogs: a function that shadows the one a client would ask on a restored server
    # (on any port but the source's own), put first on the search path of the role the app uses.
    cluster.psql(f"""
        CREATE SCHEMA IF NOT EXISTS evil;
        CREATE OR REPLACE FUNCTION evil.pg_is_in_recovery() RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
            IF current_setting('port') <> '{cluster.port}' THEN
                EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', 'touch {markers}/catalog-code');
            END IF;
            RETURN false;
        END $$;
        ALTER ROLE postgres SET search_path = evil, pg_catalog, public""")


def environ_of(pid: int) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b"\n").decode(errors="replace")


def test_a_restored_server_and_the_drill_run_none_of_the_sources_configuration(
        pitr_app, pitr_cluster, receivers, data_root):
    runner = pitr_app.test_cli_runner()
    markers = data_root / "markers"
    markers.mkdir()
    markers.chmod(0o1777)  # whoever runs the restored server could write here
    plant(pitr_cluster, markers)
    archiving(runner, receivers)
    insert_batch(pitr_cluster, 1)
    after = datetime.now(timezone.utc)
    wait_for(lambda: covered(runner, after), what="the batch archived")

    with restored(runner, "--to", "latest", "--data-dir", str(data_root / "restored")) as out:
        data_dir = Path(out["data_dir"])
        assert restored_rows(pitr_cluster, out["port"]) == {1: 100}
        postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
        environment = environ_of(postmaster)
        assert not [name for name, value in SECRETS.items() if value in environment or f"{name}=" in environment]
        libraries = subprocess.run(
            [str(pitr_cluster.bin_dir / "psql"), "-X", "-At", "-h", "127.0.0.1", "-p", str(out["port"]), "-U",
             "postgres", "-d", "shop", "-c", "SHOW shared_preload_libraries"],
            env={"PGPASSWORD": pitr_cluster.password}, capture_output=True, text=True, check=True).stdout.strip()
        assert libraries == "pg_stat_statements"  # PITR_PRELOAD_LIBRARIES, not the source's
        assert "include_if_exists = 'evil.conf'" in (data_dir / "backup_app_source_config/postgresql.conf").read_text()
        written = (data_dir / "postgresql.conf").read_text()
        assert "ssl_passphrase_command" not in written
        assert "max_logical_replication_workers = 0" in written and "autovacuum = off" in written

    drill = json.loads(invoke(runner, "pitr", "verify", "shop", "--json").stdout)
    assert drill["status"] == "passed"
    assert sorted(p.name for p in markers.iterdir()) == []
    backup_dir = Path(pitr_app.config["BACKUP_DIR"])
    assert any(path.startswith("pitr/") for path in modes_under(backup_dir))
    assert not_private(backup_dir) == {}  # base backups (pg_authid's hashes too), WAL, the spool


def test_a_base_backup_carrying_a_program_is_refused_and_nothing_is_left(pitr_app, pitr_cluster, receivers,
                                                                         data_root):
    runner = pitr_app.test_cli_runner()
    planted = pitr_cluster.data_dir / "base" / "helper.so"
    shutil.copyfile("/bin/true", planted)
    shutil.chown(planted, "postgres", "postgres")
    try:
        archiving(runner, receivers)
        insert_batch(pitr_cluster, 2)
        after = datetime.now(timezone.utc)
        wait_for(lambda: covered(runner, after), what="the batch archived")
        result = invoke(runner, "pitr", "restore", "shop", "--to", "latest",
                        "--data-dir", str(data_root / "refused"), ok=False)
        assert "the base backup holds a program file (base/helper.so)" in error_line(result)
        assert not (data_root / "refused").exists()
    finally:
        planted.unlink()
