"""Every string the app stores is bounded: a form field one past its bound is refused with a
message, an API string too; a text the app records as it comes (an error, an audit event's
actor, subject or outcome) is cut to its column's bound, on SQLite and PostgreSQL alike; and a
request body past MAX_CONTENT_LENGTH is a 413. Never a 500, never a catalog that grows with
what a client sends."""
import io

import pytest
from sqlalchemy import update

from backup_app.config import Config
from backup_app.extensions import db
from backup_app.jobs.records import record
from backup_app.models import TEXT_MAX, AuditEvent, Backup, Job, Target
from backup_app.services.audit import record as audit
from tests.conftest import both_catalogs
from tests.helpers import new_key
from tests.web_helpers import EMAIL, PASSWORD, add_backup, add_user, api_token, csrf_token, sign_in, submit, text

TARGET = {"name": "crm", "host": "db.example", "port": "5433", "user": "app", "password": "pw", "dbname": "crm",
          "timezone": "UTC", "keep_days": "7", "keep_last": "2", "gfs_daily": "0", "gfs_weekly": "0",
          "gfs_monthly": "0", "format": "custom", "codec": "gzip"}
RESTORE = {"target": "other", "target_url": "postgresql://app@db.example/other", "confirm": "other"}
# (form, the field, its bound): a value one character longer is refused.
FORM_FIELDS = [
    ("/login", "email", 320), ("/login", "password", 1024),
    ("/backups/b1/restore", "confirm", 255), ("/backups/b1/restore", "target_url", 1024),
    *[("/targets/new", field, bound) for field, bound in [
        ("name", 100), ("host", 255), ("user", 255), ("password", 1024), ("dbname", 255), ("schedule", 120),
        ("verify_schedule", 120), ("timezone", 64), ("notify", 10_000)]],
]
BASE = {"/login": {"email": EMAIL, "password": PASSWORD}, "/backups/b1/restore": RESTORE, "/targets/new": TARGET}


@pytest.fixture
def signed_in(make_app):
    app = make_app(APP_ENCRYPTION_KEY=new_key())
    add_user(app)
    add_backup(app)
    client = app.test_client()
    assert sign_in(client).status_code == 302
    return app, client


@both_catalogs
@pytest.mark.parametrize("url, field, bound", FORM_FIELDS, ids=[f"{url}:{field}" for url, field, _ in FORM_FIELDS])
def test_a_form_field_one_past_its_bound_is_refused_with_a_message(signed_in, url, field, bound):
    app, client = signed_in
    if url == "/login":
        client = app.test_client()
    value = "a" * (bound + 1)

    response = submit(client, url, {**BASE[url], field: value})

    assert response.status_code == 200
    assert f"Field cannot be longer than {bound} characters." in text(response)
    with app.app_context():
        assert db.session.query(Target).count() == 0
        assert db.session.query(Job).count() == 0
        assert all(len(event.subject) <= 1024 for event in db.session.query(AuditEvent))


@both_catalogs
@pytest.mark.parametrize("path, body, field, bound", [
    ("/api/backups", {"database": "d" * 1025}, "database", 1024),
    ("/api/backups/b1/restore", {"confirm": "c" * 256, "target_url": "postgresql://app@h/" + "c" * 256}, "confirm",
     255),
    ("/api/backups/b1/restore", {"confirm": "other", "target_url": "postgresql://app@" + "h" * 1025}, "target_url",
     1024),
    ("/api/targets/shop/pitr/restore", {"to": "latest", "data_dir": "/" + "d" * 1024}, "data_dir", 1024),
], ids=["database", "confirm", "target_url", "data_dir"])
def test_an_api_string_past_its_bound_is_a_400(make_app, path, body, field, bound):
    app = make_app(BACKUP_DATABASE_URL="postgresql://app@db.example:5432/shop")
    add_user(app)
    add_backup(app)
    headers = {"Authorization": f"Bearer {api_token(app)}"}

    response = app.test_client().post(path, json=body, headers=headers)

    assert response.status_code == 400
    assert response.json == {"error": f"'{field}' must be at most {bound} characters"}
    with app.app_context():
        assert db.session.query(Job).count() == 0


@both_catalogs
def test_recorded_texts_are_cut_to_their_bounds_keeping_head_and_tail(bare_app):
    add_backup(bare_app)
    long_error = "E" + "x" * TEXT_MAX + "Z"
    with bare_app.app_context():
        db.session.get(Backup, "b1").error = long_error  # through the ORM
        db.session.add(Job(id="j1", kind="restore", database="shop", target="t" * 5000, slot="s"))
        db.session.commit()
        record("j1", "m" * (TEXT_MAX + 1), error=long_error)  # through a Core UPDATE
        db.session.execute(update(Job).where(Job.id == "j1").values(result=long_error))
        db.session.commit()
        event = audit(db.session, "a" * 256, "create", "s" * 1025, address="1" * 65, detail=long_error)

        backup, job = db.session.get(Backup, "b1"), db.session.get(Job, "j1")
        db.session.refresh(event)
        assert len(backup.error) == len(job.error) == len(job.result) == TEXT_MAX
        assert backup.error.startswith("Exxx") and backup.error.endswith("xxxZ") and " […] " in backup.error
        assert len(job.target) == 1024
        assert len(job.log) < TEXT_MAX + 100, "the log line was cut (the first line is the job's own)"
        assert (len(event.actor), len(event.subject), len(event.address), len(event.detail)) == (255, 1024, 64,
                                                                                                  TEXT_MAX)


def test_max_content_length_is_a_setting_of_1_mib_by_default(monkeypatch):
    monkeypatch.delenv("MAX_CONTENT_LENGTH", raising=False)
    assert Config().MAX_CONTENT_LENGTH == 1024 * 1024
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "4096")
    assert Config().MAX_CONTENT_LENGTH == 4096


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_past_max_content_length_is_a_413_page_or_json(make_app, chunked):
    app = make_app(MAX_CONTENT_LENGTH=4096)
    add_user(app)
    client = app.test_client()
    token = csrf_token(client, "/login")
    form = f"csrf_token={token}&password=x&email=".encode()

    def post(path: str, body: bytes, content_type: str, **headers):
        extra = {"environ_overrides": {"wsgi.input_terminated": True}} if chunked else {}
        return client.post(path, input_stream=io.BytesIO(body), content_type=content_type,
                           headers={**headers, **({"Transfer-Encoding": "chunked"} if chunked else {})}, **extra)

    at_the_limit = post("/login", form + b"a" * (4096 - len(form)), "application/x-www-form-urlencoded")
    assert at_the_limit.status_code == 200, "read whole: its email is refused as too long, not its size"
    assert "Field cannot be longer than 320 characters." in text(at_the_limit)

    page = post("/login", form + b"a" * (4097 - len(form)), "application/x-www-form-urlencoded")
    assert page.status_code == 413
    assert "The request is larger than this server accepts (4.0 KB, MAX_CONTENT_LENGTH)." in text(page)
    assert "<html" in text(page)

    api = post("/api/backups", b'{"database": "' + b"d" * 5000 + b'"}', "application/json",
               Authorization=f"Bearer {api_token(app)}")
    assert api.status_code == 413
    assert api.json == {"error": "The request is larger than this server accepts (4.0 KB, MAX_CONTENT_LENGTH)."}

    with app.app_context():
        assert db.session.query(Job).count() == 0
        refused = [(e.action, e.subject, e.detail) for e in db.session.query(AuditEvent).order_by(AuditEvent.id)]
    too_large = "The request is larger than this server accepts (4.0 KB, MAX_CONTENT_LENGTH)."
    assert refused[1:] == [("sign-in-failed", "", f"refused: {too_large}"), ("create-failed", "", f"refused: {too_large}")]
