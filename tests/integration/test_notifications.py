"""Notifications through Apprise, delivered to a real HTTP receiver on loopback."""
import json
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backup_app.extensions import db
from backup_app.models import Target, utcnow
from backup_app.services import notifications
from backup_app.services.staleness import claim_stale_targets
from devtools.localservers import reserve_port
from tests.helpers import add_target, age_backups, create, error_line, invoke, new_key
from tests.web_helpers import add_user, sign_in, submit, text

pytestmark = pytest.mark.integration


class Receiver:
    """An HTTP server collecting the JSON bodies posted to it."""

    def __init__(self):
        self.messages: list[dict] = []
        received = self.messages

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # the OS picks; read back
        self.url = f"json://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def titles(self) -> list[str]:
        notifications.wait_for_pending()
        return [m["title"] for m in self.messages]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def audit_actions(runner, actor="notifier") -> list[tuple[str, str]]:
    events = json.loads(invoke(runner, "audit", "list", "--json", "--actor", actor).stdout)
    return [(e["action"], e["detail"]) for e in events]


def test_a_failed_backup_is_told_and_a_success_only_when_asked(make_app, pg_cluster, source_db, receiver):
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), NOTIFY_URLS=receiver.url)
    runner = app.test_cli_runner()
    create(runner)
    assert receiver.titles() == [], "successes are quiet unless asked for"

    app.config["BACKUP_DATABASE_URL"] = pg_cluster.url(source_db, password="wrong")
    invoke(runner, "backup", "create", ok=False)

    assert receiver.titles() == [f"Backup of {source_db} FAILED"]
    assert "password authentication failed" in receiver.messages[0]["message"]
    assert audit_actions(runner) == [("notify", f"ok: Backup of {source_db} FAILED")]

    app.config.update(NOTIFY_ON_SUCCESS=True, BACKUP_DATABASE_URL=pg_cluster.url(source_db))
    create(runner)
    assert receiver.titles()[-1] == f"Backup of {source_db} completed"


def test_per_target_urls_and_a_missing_copy(keyed_app, make_app, pg_cluster, other_db, receiver, s3_settings):
    runner = keyed_app.test_cli_runner()
    add_target(runner, "other", pg_cluster.url(other_db), "--notify", receiver.url, "--notify-on-success")
    create(runner, "--database", "other")
    wrong_key = make_app(APP_ENCRYPTION_KEY=keyed_app.config["APP_ENCRYPTION_KEY"],
                         **{**s3_settings, "MINIO_SECRET_KEY": "wrong"})
    create(wrong_key.test_cli_runner(), "--database", "other")

    assert receiver.titles() == ["Backup of other completed", "Backup of other is missing a copy"]
    assert "s3: failed" in receiver.messages[1]["message"]


def test_a_dead_notification_service_never_fails_a_backup(make_app, pg_cluster, source_db):
    dead = f"json://127.0.0.1:{reserve_port()}/hook"
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db, password="wrong"), NOTIFY_URLS=dead)
    runner = app.test_cli_runner()

    result = invoke(runner, "backup", "create", ok=False)
    notifications.wait_for_pending()

    assert "password authentication failed" in error_line(result), "the backup's own error, not the notifier's"
    [(action, detail)] = audit_actions(runner)
    assert action == "notify-failed" and detail.startswith("failed: ")


def test_notify_test_command(make_app, pg_cluster, source_db, receiver):
    runner = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), NOTIFY_URLS=receiver.url).test_cli_runner()

    assert "Sent a test message" in invoke(runner, "notify", "test").stdout
    assert receiver.messages[0]["title"] == f"backup_app test message for {source_db}"

    bare = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db)).test_cli_runner()
    assert "no notification URLs configured" in error_line(invoke(bare, "notify", "test", ok=False))
    bad = add_target(bare, "x", pg_cluster.url(source_db), "--notify", "nonsense://", ok=False)
    assert "not an Apprise notification URL: nonsense://" in error_line(bad)


def test_staleness_is_alerted_once_per_episode(make_app, pg_cluster, source_db, receiver):
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), NOTIFY_URLS=receiver.url, STALE_AFTER_HOURS=24)
    runner = app.test_cli_runner()
    backup = create(runner)
    assert json.loads(invoke(runner, "notify", "stale", "--json").stdout) == []

    age_backups(app, {backup["id"]: 2})  # the newest good backup is now two days old
    [alert] = json.loads(invoke(runner, "notify", "stale", "--json").stdout)
    again = json.loads(invoke(runner, "notify", "stale", "--json").stdout)

    assert alert["database"] == source_db and alert["limit_hours"] == 24
    assert again == [], "one alert per episode"
    assert receiver.titles()[0].startswith(f"No successful backup of {source_db} since ")

    create(runner)  # a success ends the episode; a day and more later a new one starts
    with app.app_context():
        later = utcnow() + timedelta(hours=25)
        assert [s.target.name for s in claim_stale_targets(db.session, 24, now=later)] == [source_db]
        assert claim_stale_targets(db.session, 24, now=later) == []


def test_notification_urls_may_only_name_the_allowed_hosts_when_saved(make_app, pg_cluster, source_db, receiver):
    app = make_app(APP_ENCRYPTION_KEY=new_key(), NOTIFY_ALLOWED_HOSTS="127.0.0.1, hooks.example")
    runner = app.test_cli_runner()
    elsewhere = receiver.url.replace("127.0.0.1", "localhost")

    refused = add_target(runner, "crm", pg_cluster.url(source_db), "--notify", receiver.url, "--notify", elsewhere,
                         ok=False)

    assert error_line(refused) == ("Error: notification URLs may only reach 127.0.0.1, hooks.example "
                                   "(NOTIFY_ALLOWED_HOSTS), not localhost")
    assert json.loads(invoke(runner, "targets", "list", "--json").stdout) == []
    add_target(runner, "crm", pg_cluster.url(source_db), "--notify", receiver.url)

    add_user(app)
    client = app.test_client()
    sign_in(client)
    assert "They may only reach 127.0.0.1, hooks.example (NOTIFY_ALLOWED_HOSTS)." in text(client.get("/targets/new"))
    form = {"host": "127.0.0.1", "port": str(pg_cluster.port), "user": "postgres", "dbname": source_db, "sslmode": "",
            "timezone": "UTC", "keep_days": "7", "keep_last": "2", "gfs_daily": "0", "gfs_weekly": "0",
            "gfs_monthly": "0", "format": "custom", "codec": "gzip", "notify": elsewhere}
    page = submit(client, "/targets/crm/edit", form)
    assert page.status_code == 400 and "(NOTIFY_ALLOWED_HOSTS), not localhost" in text(page)
    with app.app_context():
        assert db.session.query(Target).filter_by(name="crm").one().notify_urls == receiver.url

    anywhere = make_app().test_client()
    add_user(anywhere.application, "other@example.com")
    sign_in(anywhere, "other@example.com")
    assert "They may reach any host (NOTIFY_ALLOWED_HOSTS is not set)." in text(anywhere.get("/targets/new"))


def test_a_url_naming_a_host_not_allowed_is_not_called_when_sending(make_app, pg_cluster, source_db, receiver):
    """NOTIFY_URLS is not saved through a form: it is checked as it is sent."""
    elsewhere = receiver.url.replace("127.0.0.1", "localhost")
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db, password="wrong"), NOTIFY_ALLOWED_HOSTS="127.0.0.1",
                   NOTIFY_URLS=f"{elsewhere} {receiver.url}")
    runner = app.test_cli_runner()

    invoke(runner, "backup", "create", ok=False)

    assert receiver.titles() == [f"Backup of {source_db} FAILED"], "once: from the allowed URL only"
    assert audit_actions(runner) == [("notify-failed", "failed: not sent to localhost: NOTIFY_ALLOWED_HOSTS does not list it")]


def test_a_connection_to_a_host_not_allowed_is_not_made(make_app, receiver):
    """The host a URL names is allowed, but the service would connect elsewhere (an SMTP relay the URL
    names, a service at an address of its own): every connection while sending is checked."""
    with socket.create_server(("127.0.0.1", 0)) as relay:
        relay.setblocking(False)
        port = relay.getsockname()[1]
        mail = f"mailto://user:pw@mail.example?smtp=127.0.0.1&port={port}&from=a@mail.example&to=b@mail.example"
        with make_app().app_context():
            error = notifications.send([mail, "tgram://123456789:abcdefg_hijklmnop/12315544/"], "title", "body",
                                       ("mail.example",))
        assert error == ("not sent: it would connect to 127.0.0.1, api.telegram.org, which NOTIFY_ALLOWED_HOSTS "
                         "does not list")
        with pytest.raises(BlockingIOError):
            relay.accept()
