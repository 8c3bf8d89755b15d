"""The audit log names who sent a request, never who a form claims to be: an anonymous POST is
logged as `anonymous` and as an attempt that failed, whatever email it carries."""
import json

from backup_app.extensions import db
from backup_app.models import AuditEvent, Backup, Job, Target
from backup_app.services.audit import list_events
from tests.web_helpers import EMAIL, PASSWORD, add_backup, csrf_token, sign_in, submit

# The forms an anonymous client could post (with a CSRF token from /login) to forge an entry.
FORGED = [("/backups/b1/restore", "restore-failed", "b1"), ("/backups/b1/delete", "delete-failed", "b1"),
          ("/backups/b1/verify", "verify-failed", "b1"), ("/targets/shop/remove", "targets-remove-failed", "shop"),
          ("/targets/shop/run", "create-failed", "shop"), ("/backups/new", "create-failed", "shop"),
          ("/logout", "sign-out-failed", "shop")]


def events(app) -> list[dict]:
    with app.app_context():
        return [event.to_dict() for event in reversed(list_events(db.session))]


def test_an_anonymous_post_claiming_an_email_is_logged_as_anonymous_and_failed(make_app):
    app = make_app(BACKUP_DATABASE_URL="postgresql://app@db.example:5432/shop")
    add_backup(app)
    client = app.test_client()
    token = csrf_token(client, "/login")

    for url, _action, _subject in FORGED:
        response = client.post(url, data={"csrf_token": token, "email": EMAIL, "database": "shop",
                                          "confirm": "shop", "target": "configured"})
        assert response.status_code == 302 and response.headers["Location"].startswith("/login?next="), url

    logged = events(app)
    assert [(e["actor"], e["action"], e["subject"], e["detail"]) for e in logged] == [
        ("anonymous", action, subject, "refused: not signed in") for _url, action, subject in FORGED]
    assert EMAIL not in json.dumps(logged)
    with app.app_context():
        assert db.session.get(Backup, "b1") is not None
        assert db.session.query(Job).count() == 0
        assert db.session.query(Target).count() == 0, "nothing stored the env target either"


def test_a_sign_in_names_the_claimed_email_as_its_subject_and_the_user_only_once_signed_in(bare_app):
    client = bare_app.test_client()
    assert sign_in(client, password="wrong-password").status_code == 401
    assert sign_in(client, email="someone-else@example.com", password="x" * 12).status_code == 401
    assert sign_in(client).status_code == 302
    assert submit(client, "/logout", form_url="/").status_code == 302

    logged = [(e["actor"], e["action"], e["subject"]) for e in events(bare_app)]

    assert logged == [("anonymous", "sign-in-failed", EMAIL),
                      ("anonymous", "sign-in-failed", "someone-else@example.com"),
                      (EMAIL, "sign-in", EMAIL),
                      (EMAIL, "sign-out", "")]


def test_fifty_sign_ins_with_a_huge_email_leave_fifty_small_rows(bare_app, catalog_url):
    """The review's reproduction: 50 anonymous sign-ins with a 490 kB email grew catalog.db by 49 MB."""
    client = bare_app.test_client()
    token = csrf_token(client, "/login")
    huge = "a" * 490_000 + "@example.com"

    for _ in range(50):
        response = client.post("/login", data={"csrf_token": token, "email": huge, "password": PASSWORD})
        assert response.status_code == 200
        assert "Field cannot be longer than 320 characters." in response.get_data(as_text=True)

    with bare_app.app_context():
        rows = db.session.query(AuditEvent).all()
        assert len(rows) == 50
        assert {(row.actor, row.action) for row in rows} == {("anonymous", "sign-in-failed")}
        stored = sum(len(row.actor) + len(row.subject) + len(row.detail or "") for row in rows)
    assert stored < 50 * 1200, "each row at most its columns' bounds (subject: 1024 characters)"
