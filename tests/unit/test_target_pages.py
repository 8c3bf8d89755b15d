"""The targets pages through the test client (CSRF on): add, edit, remove, test connection,
run now, retention preview; every bad input's message, and the password never shown back."""
from datetime import timedelta

import pytest

from backup_app import wiring
from backup_app.extensions import db
from backup_app.models import AuditEvent, Backup, Job, Target, utcnow
from backup_app.services.schedules import next_run_time
from devtools.localservers import reserve_port
from tests.helpers import new_key
from tests.web_helpers import add_backup, add_user, sign_in, submit, text

PASSWORD_ENTERED = "s3cret-target-pw"
CRM = {"name": "crm", "host": "db.example", "port": "5433", "user": "app", "password": PASSWORD_ENTERED,
       "dbname": "crm", "sslmode": "require", "schedule": "0 3 * * *", "verify_schedule": "0 5 * * 0",
       "timezone": "Europe/Berlin", "schedule_enabled": "y", "keep_days": "7", "keep_last": "2",
       "gfs_daily": "7", "gfs_weekly": "4", "gfs_monthly": "12", "format": "custom", "codec": "zstd",
       "encrypt": "y"}


@pytest.fixture
def keyed(make_app, tmp_path):
    """An app with APP_ENCRYPTION_KEY whose jobs stay queued (no worker), and a signed-in client."""
    app = make_app(APP_ENCRYPTION_KEY=new_key(), HUEY_IMMEDIATE=False, HUEY_SQLITE_PATH=str(tmp_path / "huey.db"))
    add_user(app)
    client = app.test_client()
    sign_in(client)
    return app, client


def target(app, name: str) -> Target | None:
    with app.app_context():
        found = db.session.query(Target).filter_by(name=name).one_or_none()
        if found is not None:
            db.session.expunge(found)
        return found


def add_crm(client, **changes):
    response = submit(client, "/targets/new", {**CRM, **changes})
    assert response.status_code == 302, text(response)
    return response


def test_add_then_list_shows_everything_but_the_password(keyed):
    app, client = keyed
    added = submit(client, "/targets/new", CRM, follow_redirects=True)

    page = text(added)
    assert "Added crm. Next backup" in page
    row = page[page.index('data-target="crm"'):]
    for shown in ("postgresql://app@db.example:5433/crm", "sslmode require", "password stored encrypted",
                  "<code>0 3 * * *</code> Europe/Berlin", "<code>0 5 * * 0</code>",
                  "keep 7 days · newest 2 · GFS 7 daily / 4 weekly / 12 monthly", "custom · zstd", "encrypted",
                  "none yet"):
        assert shown in row, shown
    assert PASSWORD_ENTERED not in page
    assert PASSWORD_ENTERED not in text(client.get("/targets/crm/edit"))
    stored = target(app, "crm")
    assert PASSWORD_ENTERED not in stored.password_encrypted
    with app.app_context():
        assert wiring.master_key().decrypt_secret(stored.password_encrypted) == PASSWORD_ENTERED
    assert stored.next_run_at == next_run_time("0 3 * * *", "Europe/Berlin", stored.created_at)
    assert stored.verify_next_run_at == next_run_time("0 5 * * 0", "Europe/Berlin", stored.created_at)


@pytest.mark.parametrize("changes, status, message", [
    ({"schedule": "every night"}, 200, "invalid cron expression &#39;every night&#39;"),
    ({"verify_schedule": "61 * * * *"}, 200, "invalid cron expression &#39;61 * * * *&#39;"),
    ({"timezone": "Mars/Olympus"}, 200, "unknown time zone &#39;Mars/Olympus&#39;"),
    ({"dbname": ""}, 200, "Give the database&#39;s name, or tick every database of the server."),
    ({"keep_days": "-1"}, 200, "Number must be between 0 and 100000."),
    ({"keep_last": "many"}, 200, "Not a valid integer value."),
    ({"port": "70000"}, 200, "Number must be between 1 and 65535."),
    ({"codec": "lz4"}, 200, "Not a valid choice."),
    ({"name": "bad name!"}, 400, "a target name is 1-100 letters, digits"),
    ({"keep_days": "0", "keep_last": "0", "gfs_daily": "0", "gfs_weekly": "0", "gfs_monthly": "0"}, 400,
     "a retention that keeps nothing"),
    ({"notify": "not-a-url"}, 400, "not an Apprise notification URL: not-a-url"),
])
def test_bad_input_is_explained_and_nothing_is_added(keyed, changes, status, message):
    app, client = keyed
    response = submit(client, "/targets/new", {**CRM, **changes})

    assert response.status_code == status
    assert message in text(response)
    assert PASSWORD_ENTERED not in text(response), "the password is never rendered back"
    with app.app_context():
        assert db.session.query(Target).count() == 0


def test_a_second_target_of_the_same_name_is_refused(keyed):
    app, client = keyed
    add_crm(client)
    response = submit(client, "/targets/new", {**CRM, "host": "other.example"})
    assert response.status_code == 409 and "a target named &#39;crm&#39; already exists" in text(response)
    assert target(app, "crm").host == "db.example"


def test_password_or_encryption_without_the_master_key_is_refused(bare_app, bare_client):
    response = submit(bare_client, "/targets/new", CRM)
    assert response.status_code == 400
    assert "set APP_ENCRYPTION_KEY to store a target&#39;s password" in text(response)
    response = submit(bare_client, "/targets/new", {**CRM, "password": ""})
    assert response.status_code == 400 and "set APP_ENCRYPTION_KEY to encrypt backups" in text(response)
    assert target(bare_app, "crm") is None


def test_edit_keeps_the_password_unless_a_new_one_is_given(keyed):
    app, client = keyed
    add_crm(client)
    before = target(app, "crm")

    kept = submit(client, "/targets/crm/edit", {**CRM, "password": "", "keep_days": "9"})
    assert kept.status_code == 302
    after = target(app, "crm")
    assert after.keep_days == 9 and after.password_encrypted == before.password_encrypted
    assert after.next_run_at == before.next_run_at, "the schedule did not change"

    submit(client, "/targets/crm/edit", {**CRM, "password": "a-new-password"})
    with app.app_context():
        assert wiring.master_key().decrypt_secret(target(app, "crm").password_encrypted) == "a-new-password"
    submit(client, "/targets/crm/edit", {**CRM, "password": "", "clear_password": "y"})
    assert target(app, "crm").password_encrypted is None


@pytest.mark.parametrize("change", [{"host": "elsewhere.example"}, {"port": "6543"}, {"user": "other"},
                                    {"dbname": "other"}, {"sslmode": "disable"}])
def test_pointing_the_target_elsewhere_forgets_its_password(keyed, change):
    """The password was entered for one server and user: whoever edits the target must not be able
    to send it to a server of their own."""
    app, client = keyed
    add_crm(client)
    page = text(client.get("/targets/crm/edit"))
    assert "A change of host, port, user, database or SSL mode forgets it unless it is entered again." in page

    saved = submit(client, "/targets/crm/edit", {**CRM, "password": "", **change}, follow_redirects=True)

    assert "Its stored password was forgotten because its address changed: enter it again" in text(saved)
    assert target(app, "crm").password_encrypted is None
    submit(client, "/targets/crm/edit", {**CRM, "password": "entered-again", **change})
    with app.app_context():
        assert wiring.master_key().decrypt_secret(target(app, "crm").password_encrypted) == "entered-again"


def test_the_flash_says_nothing_of_a_password_when_none_was_stored(keyed):
    _, client = keyed
    add_crm(client, password="")
    saved = submit(client, "/targets/crm/edit", {**CRM, "password": "", "host": "elsewhere.example"},
                   follow_redirects=True)
    assert "Saved crm." in text(saved) and "forgotten" not in text(saved)


HOOK = "json://hooks.example/backup?token=hook-secret"


def test_edit_keeps_the_notification_settings_and_never_shows_the_urls(keyed):
    app, client = keyed
    add_crm(client, notify=HOOK, notify_on_success="y", stale_after_hours="30")
    assert (target(app, "crm").notify_urls, target(app, "crm").notify_on_success,
            target(app, "crm").stale_after_hours) == (HOOK, True, 30)

    page = text(client.get("/targets/crm/edit"))
    assert "hook-secret" not in page and "Stored: json://hooks.example (the rest of each URL is never shown" in page
    kept = submit(client, "/targets/crm/edit", {**CRM, "password": "", "keep_days": "9", "notify_on_success": "y",
                                                "stale_after_hours": "30"})

    assert kept.status_code == 302
    after = target(app, "crm")
    assert (after.keep_days, after.notify_urls, after.notify_on_success, after.stale_after_hours) == \
        (9, HOOK, True, 30), "saving the page erased none of them"
    submit(client, "/targets/crm/edit", {**CRM, "password": "", "notify": "json://other.example/x\n" + HOOK})
    assert target(app, "crm").notify_urls == "json://other.example/x\n" + HOOK
    submit(client, "/targets/crm/edit", {**CRM, "password": "", "clear_notify": "y"})
    assert (target(app, "crm").notify_urls, target(app, "crm").notify_on_success) == (None, False)


VERIFY_URL = "postgresql://checker:verify-secret@scratch.example:5433/scratch"


def test_the_verify_server_is_set_kept_and_forgotten_on_the_edit_page_and_never_shown(keyed):
    app, client = keyed
    add_crm(client)
    page = text(client.get("/targets/crm/edit"))
    assert "Verification server" in page and "Forget the stored verification server" not in page

    responses = [submit(client, "/targets/crm/edit", {**CRM, "password": "", "verify_server": VERIFY_URL},
                        follow_redirects=True)]
    with app.app_context():
        stored = target(app, "crm").verify_url_encrypted
        assert wiring.master_key().decrypt_secret(stored) == VERIFY_URL
    responses.append(client.get("/targets/crm/edit"))
    assert "Stored: scratch.example:5433/scratch; the rest of its URL is never shown." in text(responses[-1])
    assert "Forget the stored verification server" in text(responses[-1])
    responses.append(submit(client, "/targets/crm/edit", {**CRM, "password": "", "keep_days": "9"}))
    assert target(app, "crm").verify_url_encrypted == stored, "an empty field keeps it"
    responses.append(submit(client, "/targets/crm/edit", {**CRM, "password": "", "verify_server": "mysql://x/y"}))
    assert responses[-1].status_code == 400 and "database URL must start with postgresql://" in text(responses[-1])
    assert target(app, "crm").verify_url_encrypted == stored and target(app, "crm").keep_days == 9

    responses.append(submit(client, "/targets/crm/edit", {**CRM, "password": "", "clear_verify_server": "y"}))
    assert target(app, "crm").verify_url_encrypted is None
    assert all("verify-secret" not in text(response) for response in responses)


def test_changing_the_schedule_recomputes_the_next_run(keyed):
    app, client = keyed
    add_crm(client)
    started = utcnow()

    submit(client, "/targets/crm/edit", {**CRM, "password": "", "schedule": "*/5 * * * *", "timezone": "UTC"})
    finished = utcnow()

    changed = target(app, "crm")
    assert started < changed.next_run_at <= finished + timedelta(minutes=5)
    assert changed.next_run_at.minute % 5 == 0 and changed.next_run_at.second == 0
    submit(client, "/targets/crm/edit", {**CRM, "password": "", "schedule": "", "verify_schedule": ""})
    cleared = target(app, "crm")
    assert (cleared.schedule, cleared.next_run_at, cleared.verify_next_run_at) == (None, None, None)


def test_bad_input_on_edit_changes_nothing(keyed):
    app, client = keyed
    add_crm(client)
    response = submit(client, "/targets/crm/edit", {**CRM, "password": "another-secret", "timezone": "Nowhere"})
    assert "unknown time zone" in text(response) and "another-secret" not in text(response)
    with app.app_context():
        assert wiring.master_key().decrypt_secret(target(app, "crm").password_encrypted) == PASSWORD_ENTERED
    assert target(app, "crm").timezone == "Europe/Berlin"


def test_a_refused_edit_stores_no_verify_server(keyed):
    app, client = keyed
    add_crm(client)
    app.config["NOTIFY_ALLOWED_HOSTS"] = "hooks.example"
    response = submit(client, "/targets/crm/edit", {**CRM, "password": "", "verify_server": VERIFY_URL,
                                                    "notify": "json://localhost/hook"})
    assert response.status_code == 400 and "(NOTIFY_ALLOWED_HOSTS), not localhost" in text(response)
    assert target(app, "crm").verify_url_encrypted is None


def test_the_environment_target_keeps_its_connection_and_cannot_be_removed(make_app):
    app = make_app(BACKUP_DATABASE_URL="postgresql://app:env-secret@db.example:5432/shop")
    add_user(app)
    client = app.test_client()
    sign_in(client)

    listing = text(client.get("/targets/"))
    assert "postgresql://app@db.example:5432/shop" in listing and "from BACKUP_DATABASE_URL" in listing
    assert "env-secret" not in listing and "Remove…" not in listing
    edit = text(client.get("/targets/shop/edit"))
    assert "comes from <code>BACKUP_DATABASE_URL</code>" in edit and 'name="host"' not in edit

    saved = submit(client, "/targets/shop/edit", {"schedule": "0 2 * * *", "timezone": "UTC", "keep_days": "30",
                                                  "keep_last": "3", "gfs_daily": "0", "gfs_weekly": "0",
                                                  "gfs_monthly": "0", "format": "custom", "codec": "gzip",
                                                  "schedule_enabled": "y", "host": "evil.example"})
    assert saved.status_code == 302
    shop = target(app, "shop")
    assert (shop.schedule, shop.from_env, shop.host) == ("0 2 * * *", True, "db.example")

    refused = submit(client, "/targets/shop/remove")
    assert refused.status_code == 400
    assert "comes from BACKUP_DATABASE_URL; unset it to remove the target" in text(refused)
    assert target(app, "shop") is not None


def test_remove_after_confirmation_keeps_the_backups(keyed):
    app, client = keyed
    add_crm(client)
    add_backup(app, database="crm")

    page = text(client.get("/targets/crm/remove"))
    assert "Remove crm?" in page and "Its backups stay" in page
    removed = submit(client, "/targets/crm/remove", follow_redirects=True)

    assert "Removed crm; its backups are kept." in text(removed)
    assert target(app, "crm") is None
    with app.app_context():
        assert db.session.get(Backup, "b1") is not None


def test_unknown_target_pages_name_the_known_ones(keyed):
    _, client = keyed
    add_crm(client)
    for url in ("/targets/nosuch/edit", "/targets/nosuch/remove", "/targets/nosuch/retention"):
        response = client.get(url)
        assert response.status_code == 400, url
        assert "Unknown database &#39;nosuch&#39;; known: crm" in text(response)


def test_test_connection_reports_the_failure(keyed):
    _, client = keyed
    port = reserve_port()
    add_crm(client, host="127.0.0.1", port=str(port), sslmode="")

    response = submit(client, "/targets/crm/test", form_url="/targets/", follow_redirects=True)

    alert = text(response)
    assert "crm: " in alert and f"port {port} failed: Connection refused" in alert


def test_run_now_queues_a_backup_once(keyed):
    app, client = keyed
    add_crm(client)

    queued = submit(client, "/targets/crm/run", form_url="/targets/")
    assert queued.status_code == 302 and queued.headers["Location"].startswith("/jobs/?highlight=")
    again = submit(client, "/targets/crm/run", form_url="/targets/", follow_redirects=True)

    with app.app_context():
        [job] = db.session.query(Job).all()
    assert (job.kind, job.status, job.database, job.target) == ("create", "queued",
                                                                 "crm", "postgresql://app@db.example:5433/crm")
    assert f"crm: A create job for crm is already queued (job {job.id}); wait for it to finish" in text(again)


def test_retention_preview_lists_what_prune_would_delete_and_why(keyed):
    app, client = keyed
    add_crm(client, keep_days="30", keep_last="1", gfs_daily="0", gfs_weekly="0", gfs_monthly="0")
    now = utcnow()
    for backup_id, days in (("old1", 40), ("old2", 35), ("new1", 1), ("new2", 0)):
        add_backup(app, backup_id=backup_id, database="crm", created_at=now - timedelta(days=days))

    page = text(client.get("/targets/crm/retention"))

    assert "A prune now would delete these 2 backups" in page
    assert "backup-crm-old1.dump" in page and "backup-crm-old2.dump" in page
    assert "new1" not in page and "new2" not in page
    assert "older than 30 days and not among the newest 1 good backups" in page
    with app.app_context():
        assert db.session.query(Backup).count() == 4, "a preview deletes nothing"


def test_retention_preview_with_nothing_to_delete(keyed):
    _, client = keyed
    add_crm(client)
    assert "A prune now would delete nothing of crm." in text(client.get("/targets/crm/retention"))


def test_run_now_of_a_target_that_cannot_be_backed_up_says_why(make_app):
    app = make_app()
    add_user(app)
    with app.app_context():
        db.session.add(Target(name="secret", dbname="secret", host="db.example", encrypt=True))
        db.session.commit()
    client = app.test_client()
    sign_in(client)

    response = submit(client, "/targets/secret/run", form_url="/targets/", follow_redirects=True)

    assert "secret: target &#39;secret&#39; is encrypted but APP_ENCRYPTION_KEY is not set" in text(response)
    with app.app_context():
        assert db.session.query(Job).count() == 0
        [event] = db.session.query(AuditEvent).filter(AuditEvent.action != "sign-in").all()
        assert (event.action, event.subject) == ("create-failed", "secret"), "a redirect that says no is a failure"
        assert "APP_ENCRYPTION_KEY is not set" in event.detail


def test_target_pages_and_verify_are_audited(keyed):
    app, client = keyed
    add_crm(client)
    submit(client, "/targets/crm/edit", {**CRM, "password": "", "keep_days": "9"})
    submit(client, "/targets/crm/edit", {**CRM, "keep_days": "many"})  # shown again: nothing saved
    submit(client, "/targets/crm/run", form_url="/targets/")
    add_backup(app, backup_id="b1", database="crm")
    submit(client, "/backups/b1/verify", form_url="/backups/b1")
    submit(client, "/targets/crm/remove")

    with app.app_context():
        events = [(e.action, e.subject, e.actor) for e in db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.action != "sign-in").order_by(AuditEvent.id.desc()))]
    assert [(action, subject) for action, subject, _ in events] == [
        ("targets-remove", "crm"), ("verify", "b1"), ("create", "crm"), ("targets-edit-failed", "crm"),
        ("targets-edit", "crm"), ("targets-add", "crm")]
    assert {actor for *_, actor in events} == {"admin@example.com"}
