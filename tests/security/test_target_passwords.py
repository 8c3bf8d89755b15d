"""A target's stored password never reaches a server it was not entered for: a target pointed
elsewhere forgets it, and every client the app runs answers only the authentication requests
PG_REQUIRE_AUTH allows (SCRAM, which never sends the password, or none), so a server asking for
the password in clear text or MD5-hashed is refused. The server here is a fake one
(tests/fake_postgres.py) that asks for the password and records what it is sent."""
from pathlib import Path

import pytest

from backup_app import wiring
from backup_app.adapters.pgtools import PgTools
from backup_app.adapters.postgres import connect
from backup_app.core.conninfo import DEFAULT_REQUIRE_AUTH, ConnInfo, set_require_auth
from backup_app.errors import ConfigurationError
from backup_app.extensions import db
from backup_app.models import Backup, Job, Target
from devtools.localservers import reserve_port
from tests.fake_postgres import MD5, PasswordAskingServer
from tests.helpers import add_target, error_line, invoke, leftovers, new_key
from tests.web_helpers import add_user, api_token, sign_in, submit, text

PASSWORD = "stored-target-password"
CRM = {"host": "db.example", "port": "5433", "user": "app", "password": PASSWORD, "dbname": "crm", "sslmode": "",
       "timezone": "UTC", "schedule_enabled": "y", "keep_days": "7", "keep_last": "2", "gfs_daily": "0",
       "gfs_weekly": "0", "gfs_monthly": "0", "format": "custom", "codec": "gzip"}


@pytest.fixture
def keyed(make_app):
    """An app with APP_ENCRYPTION_KEY whose jobs run at once, and a signed-in client."""
    app = make_app(APP_ENCRYPTION_KEY=new_key())
    add_user(app)
    client = app.test_client()
    sign_in(client)
    return app, client


@pytest.fixture(autouse=True)
def default_require_auth():
    yield
    set_require_auth(DEFAULT_REQUIRE_AUTH)  # for tests after these in this process that build no app


def test_a_target_pointed_at_another_server_sends_it_no_password(keyed):
    app, client = keyed
    assert submit(client, "/targets/new", {**CRM, "name": "crm"}).status_code == 302
    with PasswordAskingServer() as fake:
        saved = submit(client, "/targets/crm/edit", {**CRM, "host": "127.0.0.1", "port": str(fake.port),
                                                     "password": ""}, follow_redirects=True)
        assert "Its stored password was forgotten" in text(saved)

        tested = submit(client, "/targets/crm/test", form_url="/targets/", follow_redirects=True)
        assert "crm: " in text(tested) and "server requested a cleartext password" in text(tested)
        submit(client, "/targets/crm/run", form_url="/targets/")
        with app.app_context():
            job = db.session.query(Job).one()
            assert job.status == "failed" and "server requested a cleartext password" in job.error
        tried = fake.connections
        assert client.get("/readyz").status_code == 200
        assert fake.connections == tried, "/readyz does not connect to targets"

        assert tried > 0 and fake.passwords == []


def test_a_password_is_never_answered_to_a_cleartext_request(make_app):
    """Even with a password to send, no client the app runs sends it; PG_REQUIRE_AUTH=password
    (which nobody should set) shows that the fake server would have recorded it."""
    with PasswordAskingServer() as fake:
        app = make_app(APP_ENCRYPTION_KEY=new_key())
        runner = app.test_cli_runner()
        add_target(runner, "crm", fake.url("crm", password=PASSWORD))

        refused = invoke(runner, "targets", "test", "crm", ok=False)
        assert error_line(refused) == (
            f'Error: psql: error: connection to server at "127.0.0.1", port {fake.port} failed: authentication method '
            f'requirement "scram-sha-256,none" failed: server requested a cleartext password '
            f"(PG_REQUIRE_AUTH allows scram-sha-256,none)")
        assert "server requested a cleartext password" in error_line(
            invoke(runner, "backup", "create", "--database", "crm", ok=False))
        conn = ConnInfo.from_url(fake.url("crm", password=PASSWORD))
        with app.app_context(), pytest.raises(Exception, match="server requested a cleartext password"):
            connect(conn, timeout=3)
        newest = PgTools.discover().clients[-1]
        assert newest.requires_auth
        with pytest.raises(Exception, match="server requested a cleartext password"):
            newest.dump(conn).finish()
        assert fake.passwords == []

        careless = make_app(APP_ENCRYPTION_KEY=app.config["APP_ENCRYPTION_KEY"], PG_REQUIRE_AUTH="password")
        invoke(careless.test_cli_runner(), "targets", "test", "crm", ok=False)
        assert fake.passwords == [PASSWORD]


def test_md5_is_refused_unless_pg_require_auth_allows_it(make_app):
    with PasswordAskingServer(MD5) as fake:
        app = make_app(BACKUP_DATABASE_URL=fake.url("legacy", password=PASSWORD))
        refused = invoke(app.test_cli_runner(), "targets", "test", "legacy", ok=False)
        assert "server requested a hashed password (PG_REQUIRE_AUTH allows scram-sha-256,none)" in error_line(refused)
        assert fake.passwords == []

        older_servers = make_app(BACKUP_DATABASE_URL=fake.url("legacy", password=PASSWORD),
                                 PG_REQUIRE_AUTH="scram-sha-256, md5,none")
        invoke(older_servers.test_cli_runner(), "targets", "test", "legacy", ok=False)
        assert [answer.startswith("md5") for answer in fake.passwords] == [True]


@pytest.mark.parametrize("value", ["scram", "", "scram-sha-256,cert"])
def test_an_unknown_authentication_method_is_refused_at_start(make_app, value):
    with pytest.raises(ConfigurationError, match="PG_REQUIRE_AUTH lists"):
        make_app(PG_REQUIRE_AUTH=value)


@pytest.mark.integration
def test_targets_test_says_when_the_chosen_pg_dump_cannot_require_scram(make_app, pg_cluster, source_db):
    """Debian 12's pg_dump 15 links the system libpq 15, which ignores PGREQUIREAUTH."""
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db))
    tested = invoke(app.test_cli_runner(), "targets", "test", source_db).stdout
    assert "(pg_dump 15" in tested
    assert ("warning: this pg_dump's libpq is older than 16 and cannot require scram-sha-256,none (PG_REQUIRE_AUTH): "
            "it would answer a server that asks for the password in clear text") in tested


UNREADABLE = "a stored password cannot be decrypted: APP_ENCRYPTION_KEY is not the key it was stored with"


def test_a_password_stored_under_another_key_is_a_clear_error(make_app):
    """APP_ENCRYPTION_KEY changed after the target was added: every use of the target says so, on
    the CLI, the pages and the API, and nothing is run, queued or stored."""
    first = make_app(APP_ENCRYPTION_KEY=new_key())
    add_target(first.test_cli_runner(), "crm", f"postgresql://app:{PASSWORD}@127.0.0.1:{reserve_port()}/crm")
    app = make_app(APP_ENCRYPTION_KEY=new_key())  # the same catalog and folder, another key
    add_user(app)
    client = app.test_client()
    sign_in(client)
    runner = app.test_cli_runner()

    cli_create = invoke(runner, "backup", "create", "--database", "crm", ok=False)
    cli_test = invoke(runner, "targets", "test", "crm", ok=False)
    page_create = submit(client, "/backups/new", {"database": "crm"})
    run_now = submit(client, "/targets/crm/run", form_url="/targets/", follow_redirects=True)
    tested = submit(client, "/targets/crm/test", form_url="/targets/", follow_redirects=True)
    api = app.test_client().post("/api/backups", json={"database": "crm"},
                                 headers={"Authorization": f"Bearer {api_token(app)}"})

    for result in (cli_create, cli_test):
        assert error_line(result) == f"Error: {UNREADABLE}" and "Traceback" not in result.output
    assert page_create.status_code == 400 and UNREADABLE in text(page_create)
    for page in (run_now, tested):
        assert page.request.path == "/targets/" and f"crm: {UNREADABLE}" in text(page)
    assert api.status_code == 400 and api.json == {"error": UNREADABLE}
    with app.app_context():
        assert db.session.query(Job).count() == 0 and db.session.query(Backup).count() == 0
    assert leftovers(Path(app.config["BACKUP_DIR"])) == []
    with first.app_context():
        stored = db.session.query(Target).filter_by(name="crm").one().password_encrypted
        assert wiring.master_key().decrypt_secret(stored) == PASSWORD, "the stored password is kept as it was"
