"""/readyz on an app without servers: each check's status, 503 when a configured part fails, no details."""
import shutil
from pathlib import Path

from backup_app.extensions import db
from devtools.localservers import reserve_port
from tests.helpers import add_target, new_key


def readyz(app):
    response = app.test_client().get("/readyz")
    return response.status_code, response.json


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
    assert body == {"status": "fail", "checks": {"catalog": "ok", "local": "fail", "s3": "fail", "queue": "fail",
                                                 "target:shop": "fail"}}
    page = app.test_client().get("/readyz").get_data(as_text=True)
    assert not [secret for secret in ("db-password-123", "s3-secret-456", "s3-access", "127.0.0.1") if secret in page]


def test_a_stored_target_without_the_key_to_its_password_fails(make_app):
    app = make_app(APP_ENCRYPTION_KEY=new_key())
    add_target(app.test_cli_runner(), "vault", f"postgresql://app:pw@127.0.0.1:{reserve_port()}/vault")
    app.config["APP_ENCRYPTION_KEY"] = None
    status, body = readyz(app)
    assert status == 503 and body["checks"]["target:vault"] == "fail"


def test_a_lost_catalog_fails_and_the_targets_it_names_are_not_listed(make_app, catalog_url):
    app = make_app()
    catalog = Path(catalog_url.removeprefix("sqlite:///"))
    shutil.move(catalog, catalog.with_suffix(".moved"))
    catalog.mkdir()  # SQLite cannot open a folder
    with app.app_context():
        db.engine.dispose()
    status, body = readyz(app)
    assert status == 503 and body["checks"]["catalog"] == "fail"
    assert set(body["checks"]) == {"catalog", "local", "s3", "queue"}
