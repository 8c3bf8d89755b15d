"""Verification off the production server (VERIFY_DATABASE_URL, or a target's own verify server), and
verification history that outlives the backup it checked."""
import json

import pytest

from backup_app.extensions import db
from backup_app.models import Job, Verification
from tests.conftest import unique_name
from tests.helpers import add_target, create, error_line, invoke, new_key
from tests.web_helpers import add_user, api_token, sign_in, submit, text

pytestmark = pytest.mark.integration


@pytest.fixture
def reader_url(pg_cluster, source_db):
    """`source_db` as a user who may read it but create no database on its server: a verify that
    touched the target's server would fail there."""
    role = unique_name("reader")
    pg_cluster.psql(f"CREATE ROLE {role} LOGIN NOCREATEDB PASSWORD 'reader-pw'; GRANT pg_read_all_data TO {role}")
    yield pg_cluster.url(source_db, user=role, password="reader-pw")
    pg_cluster.psql(f"DROP ROLE {role}")


def scratch_databases(cluster) -> str:
    return cluster.psql("SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'verify\\_%'")


def verify(runner, backup_id: str, ok: bool = True):
    return invoke(runner, "backup", "verify", backup_id, "--json", ok=ok)


def test_verify_database_url_restores_there_and_never_on_the_target_server(make_app, reader_url, pg_cluster,
                                                                           pg18_server):
    app = make_app(BACKUP_DATABASE_URL=reader_url)
    runner = app.test_cli_runner()
    backup = create(runner)
    refused = verify(runner, backup["id"], ok=False)
    assert "permission denied to create database" in refused.output, "without it, the target's server is used"

    app.config["VERIFY_DATABASE_URL"] = pg18_server.url()
    verified = json.loads(verify(runner, backup["id"]).stdout)

    assert verified["last_verification"]["status"] == "passed"
    with app.app_context():
        job = db.session.query(Job).filter_by(kind="verify").order_by(Job.created_at.desc()).first()
        assert job.target.endswith(f"on 127.0.0.1:{pg18_server.port}")
    assert scratch_databases(pg_cluster) == "" and scratch_databases(pg18_server) == ""


def test_a_targets_own_verify_server_wins_and_is_stored_encrypted(keyed_app, reader_url, pg_cluster, pg18_server,
                                                                 make_app):
    runner = keyed_app.test_cli_runner()
    add_target(runner, "reader", reader_url)
    keyed_app.config["VERIFY_DATABASE_URL"] = pg_cluster.url(password="wrong")  # the target's own wins
    backup = create(runner, "--database", "reader")

    said = invoke(runner, "targets", "verify-server", "reader", pg18_server.url()).stdout
    verified = json.loads(verify(runner, backup["id"]).stdout)

    assert f"reader: verifications restore into postgresql://postgres@127.0.0.1:{pg18_server.port}/postgres" in said
    assert pg18_server.password not in said
    assert verified["last_verification"]["status"] == "passed"
    listed = {t["name"]: t for t in json.loads(invoke(runner, "targets", "list", "--json").stdout)}
    assert listed["reader"]["verify_server"] == pg18_server.url().replace(f":{pg18_server.password}@", "@")
    assert pg18_server.password not in json.dumps(listed)
    invoke(runner, "targets", "verify-server", "reader", "--clear")
    assert {t["name"]: t for t in json.loads(invoke(runner, "targets", "list", "--json").stdout)}["reader"][
        "verify_server"] is None
    assert "password authentication failed" in verify(runner, backup["id"], ok=False).output
    unkeyed = make_app(BACKUP_DATABASE_URL=reader_url).test_cli_runner()
    assert error_line(invoke(unkeyed, "targets", "verify-server", "reader", pg18_server.url(), ok=False)) == (
        "Error: set APP_ENCRYPTION_KEY to store a verify server (its URL may hold a password)")


def test_verification_history_outlives_the_backup_it_checked(app, runner, client, source_db):
    backup = create(runner)
    assert json.loads(verify(runner, backup["id"]).stdout)["last_verification"]["status"] == "passed"

    invoke(runner, "backup", "delete", backup["id"], "--yes")
    app.config["METRICS_TOKEN"] = "m"
    dashboard = client.get("/dashboard").get_data(as_text=True)
    metrics = app.test_client().get("/metrics", headers={"Authorization": "Bearer m"})

    row = dashboard[dashboard.index(f">{source_db}</a>"):]
    assert "passed" in row[:row.index("</tr>")], "its last verify, not never"
    assert f'backup_last_verify_success{{database="{source_db}"}} 1.0' in metrics.text


def test_a_failed_verify_whose_backup_is_deleted_stays_on_the_dashboard(app, runner, client, source_db):
    backup = create(runner)
    with app.app_context():
        db.session.add(Verification(backup_id=backup["id"], database=source_db, backup_filename=backup["filename"],
                                    status="failed", error="row counts differ: orders 10 ≠ 12"))
        db.session.commit()
    invoke(runner, "backup", "delete", backup["id"], "--yes")  # the usual next step after a failed verify

    page = client.get("/dashboard")

    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert f"The last verify of {source_db} failed (its backup is deleted since): row counts differ" in text


UNREADABLE_VERIFY = "stored, unreadable with this APP_ENCRYPTION_KEY"
EDIT = {"host": "127.0.0.1", "port": "5432", "user": "app", "password": "", "dbname": "crm", "sslmode": "",
        "timezone": "UTC", "schedule_enabled": "y", "keep_days": "7", "keep_last": "2", "gfs_daily": "0",
        "gfs_weekly": "0", "gfs_monthly": "0", "format": "custom", "codec": "gzip"}


def test_a_verify_server_stored_under_another_key_is_listed_as_unreadable_and_can_be_forgotten(make_app):
    """APP_ENCRYPTION_KEY changed after the verify server was stored: the list, the API and the edit
    page still answer and say so, and the edit page forgets it."""
    first = make_app(APP_ENCRYPTION_KEY=new_key())
    runner = first.test_cli_runner()
    add_target(runner, "crm", "postgresql://app@127.0.0.1:5432/crm")
    invoke(runner, "targets", "verify-server", "crm", "postgresql://checker:verify-secret@scratch.example/scratch")
    app = make_app(APP_ENCRYPTION_KEY=new_key())  # the same catalog, another key
    add_user(app)
    client = app.test_client()
    sign_in(client)

    listed = json.loads(invoke(app.test_cli_runner(), "targets", "list", "--json").stdout)
    api = app.test_client().get("/api/targets", headers={"Authorization": f"Bearer {api_token(app)}"})
    page = client.get("/targets/crm/edit")

    assert [t["verify_server"] for t in listed] == [UNREADABLE_VERIFY]
    assert api.status_code == 200 and [t["verify_server"] for t in api.json] == [UNREADABLE_VERIFY]
    assert page.status_code == 200
    assert "Stored: one, unreadable with this APP_ENCRYPTION_KEY" in text(page)
    forgot = submit(client, "/targets/crm/edit", {**EDIT, "clear_verify_server": "y"})
    assert forgot.status_code == 302, text(forgot)
    assert json.loads(invoke(app.test_cli_runner(), "targets", "list", "--json").stdout)[0]["verify_server"] is None
