"""/readyz on an app without servers: each check's status, 503 when a configured part fails, no details,
no target database named or connected to, a hanging part given up after its timeout."""
import shutil
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

from backup_app.extensions import db
from backup_app.web.readiness import CHECK_TIMEOUT
from devtools.localservers import reserve_port
from tests.helpers import add_target, new_key


def readyz(app):
    response = app.test_client().get("/readyz")
    return response.status_code, response.json


@contextmanager
def silent_port():
    """A port on 127.0.0.1 that accepts connections (the kernel's backlog) and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener


def connection_waiting(listener: socket.socket) -> bool:
    listener.setblocking(False)
    try:
        listener.accept()[0].close()
    except BlockingIOError:
        return False
    return True


def test_ready_with_what_is_configured(make_app):
    status, body = readyz(make_app())
    assert status == 200
    assert body == {"status": "ok", "checks": {"catalog": "ok", "local": "ok", "s3": "disabled", "queue": "ok"}}


def test_each_failing_part_fails_its_check_and_the_whole(make_app, tmp_path):
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    url = f"postgresql://app:db-password-123@127.0.0.1:{reserve_port()}/shop"
    app = make_app(BACKUP_DIR=str(not_a_folder), REDIS_URL=f"redis://127.0.0.1:{reserve_port()}/0", HUEY_IMMEDIATE=False,
                   BACKUP_DATABASE_URL=url, MINIO_ENDPOINT=f"127.0.0.1:{reserve_port()}",
                   MINIO_ACCESS_KEY="s3-access", MINIO_SECRET_KEY="s3-secret-456")
    status, body = readyz(app)
    assert status == 503
    assert body == {"status": "fail", "checks": {"catalog": "ok", "local": "fail", "s3": "fail", "queue": "fail"}}
    page = app.test_client().get("/readyz").get_data(as_text=True)
    assert not [secret for secret in ("db-password-123", "s3-secret-456", "s3-access", "127.0.0.1") if secret in page]


def test_no_target_is_connected_to_or_named(make_app):
    """Anyone may ask /readyz: it must not make the app connect to the production databases."""
    with silent_port() as env_server, silent_port() as stored_server:
        app = make_app(APP_ENCRYPTION_KEY=new_key(),
                       BACKUP_DATABASE_URL=f"postgresql://app:pw@127.0.0.1:{env_server.getsockname()[1]}/shop")
        add_target(app.test_cli_runner(), "vault",
                   f"postgresql://app:pw@127.0.0.1:{stored_server.getsockname()[1]}/vault")
        response = app.test_client().get("/readyz")
        assert response.status_code == 200
        assert set(response.json["checks"]) == {"catalog", "local", "s3", "queue"}
        assert not [name for name in ("shop", "vault") if name in response.get_data(as_text=True)]
        assert not connection_waiting(env_server) and not connection_waiting(stored_server)


def test_a_part_that_never_answers_fails_after_its_timeout(make_app):
    """A catalog server that accepts and never answers (libpq would wait for it forever)."""
    with silent_port() as catalog:
        app = make_app(SQLALCHEMY_DATABASE_URI=f"postgresql+psycopg://app@127.0.0.1:{catalog.getsockname()[1]}/c")
        answers = []
        asking = threading.Thread(target=lambda: answers.append(readyz(app)), daemon=True)
        asking.start()
        asking.join(CHECK_TIMEOUT + 10)  # a deadline, not a wait: the answer comes after CHECK_TIMEOUT
        assert answers, f"/readyz did not answer within {CHECK_TIMEOUT + 10} s"
        assert answers[0] == (503, {"status": "fail", "checks": {"catalog": "fail", "local": "ok", "s3": "disabled",
                                                                 "queue": "ok"}})


def test_a_lost_catalog_fails(make_app, catalog_url):
    app = make_app()
    catalog = Path(catalog_url.removeprefix("sqlite:///"))
    shutil.move(catalog, catalog.with_suffix(".moved"))
    catalog.mkdir()  # SQLite cannot open a folder
    with app.app_context():
        db.engine.dispose()
    status, body = readyz(app)
    assert status == 503 and body["checks"]["catalog"] == "fail"
    assert set(body["checks"]) == {"catalog", "local", "s3", "queue"}
