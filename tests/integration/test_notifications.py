"""Notifications through Apprise, delivered to a real HTTP receiver on loopback."""
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backup_app.extensions import db
from backup_app.models import utcnow
from backup_app.services import notifications
from backup_app.services.staleness import claim_stale_targets
from devtools.localservers import reserve_port
from tests.helpers import add_target, age_backups, create, error_line, invoke

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
    assert audit_actions(runner) == [("notify", f"Backup of {source_db} FAILED")]

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
    assert action == "notify-failed" and detail


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
