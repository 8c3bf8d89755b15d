"""`make run`'s demo: its PostgreSQL port and APP_ENCRYPTION_KEY stay put across restarts, so a target
added against it keeps working; the CLI beside it gets the same settings; `.env` is read by every process."""
import json
import os
import socket
import subprocess
import sys

import pytest

from devtools import demo
from devtools.localservers import http_answers, release_port, reserve_port, wait_until
from tests.helpers import add_target, create, invoke
from tests.web_helpers import ROOT, live_env

pytestmark = pytest.mark.integration


def test_a_restarted_demo_keeps_its_port_and_key_and_a_target_added_against_it_still_backs_up(
        tmp_path, make_app, s3_settings):
    first = demo.demo_settings(tmp_path)
    cluster = demo.start_demo_postgres(first, tmp_path)
    try:
        cluster.createdb("added")
        app = make_app(APP_ENCRYPTION_KEY=first["APP_ENCRYPTION_KEY"], **s3_settings)
        runner = app.test_cli_runner()
        invoke(runner, "storage", "init")
        add_target(runner, "added", cluster.url("added"))  # its password stored, encrypted with the demo's key
        cluster.stop()

        again = demo.demo_settings(tmp_path)  # a second `make run`
        restarted = demo.start_demo_postgres(again, tmp_path)
        backup = create(make_app(APP_ENCRYPTION_KEY=again["APP_ENCRYPTION_KEY"], **s3_settings).test_cli_runner(),
                        "--database", "added")
        filled_once = restarted.psql("SELECT count(*) FROM customers", "shop")
    finally:
        cluster.stop()
        release_port(first["pg_port"])

    assert again == first
    assert restarted.port == first["pg_port"]
    assert backup["status"] == "completed" and backup["database"] == "added"
    assert filled_once == "5000"


def test_a_demo_json_from_an_older_demo_keeps_its_secrets_and_gets_a_key_and_ports(tmp_path):
    (tmp_path / "demo.json").write_text(json.dumps({"SECRET_KEY": "kept", "pg_password": "pw",
                                                    "s3_access_key": "demo-1", "s3_secret_key": "s"}))

    settings = demo.demo_settings(tmp_path)

    assert settings["SECRET_KEY"] == "kept" and settings["pg_password"] == "pw"
    assert {"APP_ENCRYPTION_KEY", "pg_port", "s3_ports"} <= set(settings)
    assert json.loads((tmp_path / "demo.json").read_text()) == settings
    assert (tmp_path / "demo.json").stat().st_mode & 0o077 == 0


def test_a_kept_port_that_another_program_took_is_named(tmp_path):
    settings = demo.demo_settings(tmp_path)
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        settings["pg_port"] = other.getsockname()[1]

        with pytest.raises(demo.DemoError, match=f"port {settings['pg_port']}, kept in .*demo.json for the "
                                                 "demo's PostgreSQL, is in use by another program"):
            demo.start_demo_postgres(settings, tmp_path)


def test_a_kept_port_whose_last_connections_still_wait_after_a_stop_is_taken_again(tmp_path):
    settings = demo.demo_settings(tmp_path / "instance")
    assert (tmp_path / "instance").stat().st_mode & 0o077 == 0  # its catalog and backups are the owner's
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server's side closes first: its port keeps a connection in TIME_WAIT
        client.close()
    settings["pg_port"] = port
    try:
        demo.hold_kept_ports([port], "PostgreSQL", tmp_path)  # the restart a few seconds after Ctrl-C
    finally:
        release_port(port)


def test_the_cli_env_file_exports_the_demo_settings_to_a_shell(tmp_path):
    values = {"FLASK_APP": "/x/app.py", "BACKUP_DATABASE_URL": "postgresql://postgres:a%2Fb'c@127.0.0.1:1/shop"}

    path = demo.write_cli_env(values, tmp_path)
    shell = subprocess.run(["bash", "-c", f"source {path} && echo \"$FLASK_APP|$BACKUP_DATABASE_URL\""],
                           capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]})

    assert shell.stdout.strip() == "/x/app.py|" + values["BACKUP_DATABASE_URL"]
    assert path.stat().st_mode & 0o077 == 0


CONFIG = """
from backup_app import create_app
app = create_app()
print(app.config["APP_ENCRYPTION_KEY"], app.config["SECRET_KEY"])
"""


def test_create_app_reads_dotenv_and_the_environment_wins(tmp_path):
    (tmp_path / ".env").write_text("APP_ENCRYPTION_KEY=from-dotenv\nSECRET_KEY=dotenv-secret\n")
    env = {name: value for name, value in os.environ.items()
           if name not in ("APP_ENCRYPTION_KEY", "SECRET_KEY", "FLASK_SKIP_DOTENV")}
    env.update(PYTHONPATH=str(ROOT), CATALOG_DATABASE_URL=f"sqlite:///{tmp_path / 'catalog.db'}",
               BACKUP_DIR=str(tmp_path / "backups"))

    def configured(**extra) -> str:
        return subprocess.run([sys.executable, "-c", CONFIG], cwd=tmp_path, env={**env, **extra},
                              capture_output=True, text=True, check=True).stdout.strip()

    assert configured() == "from-dotenv dotenv-secret"  # as gunicorn's `app:app` and the worker build it
    assert configured(SECRET_KEY="exported") == "from-dotenv exported"
    assert configured(FLASK_SKIP_DOTENV="1") == "None None"


DEMO = "import sys; from pathlib import Path; from devtools import demo; sys.exit(demo.main(Path(sys.argv[1])))"


def test_with_backup_database_url_set_the_demo_starts_no_database_and_stops_cleanly(
        tmp_path, pg_cluster, source_db, s3_settings, catalog_url):
    instance = tmp_path / "instance"
    env = live_env(tmp_path, catalog_url, BACKUP_DATABASE_URL=pg_cluster.url(source_db), PORT=reserve_port(),
                   PYTHONPATH=ROOT, PITR_RESTORE_ROOT=tmp_path / "restores", **s3_settings)
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-c", DEMO, str(instance)], env=env, cwd=tmp_path, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: process.poll() is not None or http_answers(f"http://127.0.0.1:{env['PORT']}/healthz"),
                   60, "the demo serving")
    finally:
        process.terminate()
        process.wait(60)
    said = log.read_text()

    assert "BACKUP_DATABASE_URL is set: backing it up (no demo database started)" in said
    assert "the CLI beside it: `source " in said and "Traceback" not in said
    assert not (instance / "demo-postgres").exists()
    cli_env = (instance / "demo.env").read_text()
    assert "APP_ENCRYPTION_KEY=" in cli_env and "BACKUP_DATABASE_URL" not in cli_env, "the environment's own stays"
