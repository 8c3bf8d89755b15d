"""Every page and API route through the Flask test client, on an app with no target database
and no S3: bad ids, bad input and each service error's message. Sign-in, CSRF and tokens on
every route are in tests/security/test_access.py."""
import os
from datetime import timedelta

import pytest

from backup_app.extensions import db
from backup_app.models import LOCAL, Backup, Job, utcnow
from devtools.localservers import reserve_port
from tests.security.routes import all_routes
from tests.web_helpers import EMAIL, PASSWORD, add_backup, add_user, api_token, csrf_token, sign_in, submit, text


def test_polling_without_a_session_gets_json_401(bare_app):
    response = bare_app.test_client().get("/jobs/j1/row", headers={"Accept": "application/json"})
    assert response.status_code == 401 and response.json == {"error": "sign in first"}


def test_a_refreshing_row_without_a_session_sends_the_page_to_sign_in(bare_app):
    response = bare_app.test_client().get("/jobs/j1/row", headers={"HX-Request": "true",
                                                                 "Referer": "http://localhost/jobs/?page=2"})
    assert response.status_code == 401 and response.headers["HX-Redirect"] == "/login?next=/jobs/?page%3D2"


def test_login_form_needs_csrf_token(bare_app):
    response = bare_app.test_client().post("/login", data={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 400 and "The CSRF token is missing." in text(response)


def test_health_check_is_open(bare_app):
    response = bare_app.test_client().get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_sign_in_and_out(bare_app):
    client = bare_app.test_client()
    response = sign_in(client)
    assert response.status_code == 302 and response.headers["Location"] == "/dashboard"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert EMAIL in text(client.get("/"))

    signed_out = submit(client, "/logout", form_url="/", follow_redirects=True)
    assert "Signed out." in text(signed_out)
    assert client.get("/").status_code == 302


def test_sign_in_goes_to_next_but_never_off_site(bare_app):
    client = bare_app.test_client()
    token = csrf_token(client, "/login")
    data = {"email": EMAIL, "password": PASSWORD, "csrf_token": token}
    assert client.post("/login?next=/jobs/", data=data).headers["Location"] == "/jobs/"
    client = bare_app.test_client()
    data["csrf_token"] = csrf_token(client, "/login")
    assert client.post("/login?next=//evil.example/x", data=data).headers["Location"] == "/dashboard"


def test_wrong_password_then_too_many_attempts(bare_app, long_throttle_waits):
    client = bare_app.test_client()
    for _ in range(5):
        response = sign_in(client, password="wrong-password")
        assert response.status_code == 401 and "Wrong email or password" in text(response)
    response = sign_in(client)  # the right password, but too soon
    assert response.status_code == 429 and "Too many failed sign-ins for this account; try again in" in text(response)


def by_id(app) -> list:
    """Every route of the URL map that names a backup or a job, with the id `nosuch`."""
    return [route for route in all_routes(app, "nosuch") if route.arguments & {"backup_id", "job_id"}]


def test_bad_ids_give_404_pages(bare_client, bare_app):
    pages = [route for route in by_id(bare_app) if route.method == "GET" and not route.is_api]
    assert len(pages) >= 5
    for route in pages:
        response = route.call(bare_client)
        assert response.status_code == 404, route
        assert ("Job not found: nosuch" if "job_id" in route.arguments else "Backup not found: nosuch") \
            in text(response), route
    response = bare_client.get("/no/such/page")
    assert response.status_code == 404 and "404 · Not found" in text(response)
    as_json = bare_client.get("/backups/nosuch", headers={"Accept": "application/json"})
    assert as_json.status_code == 404 and as_json.json == {"error": "Backup not found: nosuch"}, "JSON for JSON"


def test_bad_ids_give_api_404(bare_app):
    headers = {"Authorization": f"Bearer {api_token(bare_app)}"}
    client = bare_app.test_client()
    calls = [route for route in by_id(bare_app) if route.is_api]
    assert len(calls) >= 5
    for route in calls:
        response = route.call(client, headers=headers, json={"confirm": "x"})
        assert response.status_code == 404, route
        assert response.json["error"] == ("Job not found: nosuch" if "job_id" in route.arguments
                                          else "Backup not found: nosuch"), route
    unknown_route = client.get("/api/nothing", headers=headers)
    assert unknown_route.status_code == 404 and "not found" in unknown_route.json["error"]


def test_api_errors_for_bad_requests(bare_app):
    add_backup(bare_app)
    headers = {"Authorization": f"Bearer {api_token(bare_app)}"}
    client = bare_app.test_client()

    not_json = client.post("/api/backups/b1/restore", headers=headers, data="{",
                           content_type="application/json")
    assert not_json.status_code == 400 and "JSON object" in not_json.json["error"]
    wrong_type = client.post("/api/backups", headers=headers, json={"database": 5})
    assert wrong_type.status_code == 400 and "'database' must be a string" in wrong_type.json["error"]
    unconfigured = client.post("/api/backups", headers=headers)
    assert unconfigured.status_code == 400
    assert unconfigured.json["error"].startswith("no default database: set BACKUP_DATABASE_URL")
    bad_url = client.post("/api/backups/b1/restore", headers=headers,
                          json={"confirm": "x", "target_url": "mysql://h/x"})
    assert bad_url.status_code == 400 and "postgresql://" in bad_url.json["error"]
    not_a_flag = client.post("/api/backups/b1/restore", headers=headers, json={"confirm": "x", "in_place": "yes"})
    assert not_a_flag.status_code == 400 and not_a_flag.json["error"] == "'in_place' must be true or false"
    both = client.post("/api/backups/b1/restore", headers=headers,
                       json={"confirm": "x", "in_place": True, "drop_previous": True})
    assert both.status_code == 400 and "drop_previous has nothing to drop with in_place" in both.json["error"]


def test_create_page_without_a_configured_database(bare_client):
    assert "No database is configured" in text(bare_client.get("/backups/new"))
    response = submit(bare_client, "/backups/new", {"database": "shop"})
    assert response.status_code == 200 and "No database is configured" in text(response)


def test_list_filters_and_paginates(bare_app, bare_client):
    start = utcnow()
    for n in range(55):
        add_backup(bare_app, backup_id=f"b{n}", database="shop" if n % 2 else "crm",
                   created_at=start + timedelta(minutes=n))
    first = text(bare_client.get("/"))
    assert "55 backups." in first and "Page 1 of 2" in first
    assert first.index("b54") < first.index("b53"), "newest first"
    second = text(bare_client.get("/?page=2"))
    assert "b4.dump" in second and "b54" not in second
    shop = text(bare_client.get("/?database=shop"))
    assert "27 backups matching." in shop and "backup-crm" not in shop
    assert "0 backups matching." in text(bare_client.get("/?status=failed"))
    unknown = bare_client.get("/?status=bogus")
    assert unknown.status_code == 400
    assert "status must be one of running, completed, failed, not &#39;bogus&#39;" in text(unknown)


HUGE = str(10**30)  # past a 64-bit integer: an offset built from it overflows the database's


@pytest.mark.parametrize("page, shown", [(HUGE, 2), ("3", 2), ("-1", 1), ("0", 1), ("abc", 1), ("", 1)])
def test_bad_page_numbers_are_clamped(bare_app, bare_client, page, shown):
    start = utcnow()
    for n in range(55):
        add_backup(bare_app, backup_id=f"b{n}", created_at=start + timedelta(minutes=n))

    listing = bare_client.get(f"/?page={page}")
    audit = bare_client.get(f"/audit?page={page}")
    jobs = bare_client.get(f"/jobs/?page={page}")

    assert listing.status_code == 200
    assert "55 backups." in text(listing) and f"Page {shown} of 2" in text(listing)
    assert ("b4.dump" if shown == 2 else "b54.dump") in text(listing), "the page's backups are listed"
    assert audit.status_code == 200 and "sign-in" in text(audit), "page 1 of 1: the sign-in is listed"
    assert jobs.status_code == 200


@pytest.mark.parametrize("query, message", [
    (f"limit={HUGE}", "limit must be 1 to 1000 and offset 0 or more"),
    ("limit=-1", "limit must be 1 to 1000 and offset 0 or more"),
    ("offset=-1", "limit must be 1 to 1000 and offset 0 or more"),
    ("limit=abc", "limit must be a whole number, not 'abc'"),
    ("offset=1e3", "offset must be a whole number, not '1e3'"),
])
def test_api_paging_input_out_of_range_is_a_400(bare_app, query, message):
    add_backup(bare_app)
    response = bare_app.test_client().get(f"/api/backups?{query}",
                                          headers={"Authorization": f"Bearer {api_token(bare_app)}"})
    assert response.status_code == 400 and response.json == {"error": message}


def test_api_offset_past_the_end_is_an_empty_page(bare_app):
    add_backup(bare_app)
    headers = {"Authorization": f"Bearer {api_token(bare_app)}"}
    for offset in ("1", HUGE):
        response = bare_app.test_client().get(f"/api/backups?offset={offset}", headers=headers)
        assert response.status_code == 200 and response.json == [], offset
        assert response.headers["X-Total-Count"] == "1"


def test_detail_shows_every_field(bare_app, bare_client):
    backup = add_backup(bare_app)
    page = text(bare_client.get("/backups/b1"))
    for value in (backup["id"], backup["filename"], backup["sha256"], backup["copies"][0]["uri"],
                  "Local: present", "completed", "No S3 copy."):
        assert value in page


def test_download_streams_the_local_file(bare_app, bare_client):
    content = b"PGDMP" + bytes(range(256)) * 10000
    add_backup(bare_app, content)
    response = bare_client.get("/backups/b1/download")
    assert response.status_code == 200 and response.data == content
    assert response.headers["Content-Disposition"] == "attachment; filename=backup-shop-b1.dump"
    assert response.headers["Content-Length"] == str(len(content))


def test_download_of_a_corrupt_file_is_cut_short_and_marks_the_copy(bare_app, bare_client):
    backup = add_backup(bare_app, b"A" * 3_000_000)
    with open(backup["copies"][0]["uri"], "r+b") as f:
        f.write(b"B")
    response = bare_client.get("/backups/b1/download", buffered=False)
    received = b""
    with pytest.raises(Exception, match="does not match its recorded SHA-256"):
        for chunk in response.response:
            received += chunk
    response.close()
    assert len(received) < 3_000_000, "the last chunk is held back"
    with bare_app.app_context():
        assert db.session.get(Backup, "b1").copy(LOCAL).status == "failed"
    again = bare_client.get("/backups/b1/download")
    assert again.status_code == 404 and "SHA-256 mismatch" in text(again)


def test_download_without_any_copy(bare_app, bare_client):
    backup = add_backup(bare_app)
    os.unlink(backup["copies"][0]["uri"])
    response = bare_client.get("/backups/b1/download")
    assert response.status_code == 404
    assert "Backup file not found locally or in storage" in text(response)
    assert "Backup file not found locally or in storage (" not in text(response), "nothing more to say"


def test_restore_form_needs_the_name_and_a_configured_target(bare_app, bare_client):
    add_backup(bare_app)
    page = text(bare_client.get("/backups/b1/restore"))
    assert "no longer configured" in page
    missing = submit(bare_client, "/backups/b1/restore", {"target": "configured"})
    assert "This field is required." in text(missing)
    no_url = submit(bare_client, "/backups/b1/restore", {"target": "other", "confirm": "shop"})
    assert "Give the connection URL" in text(no_url)
    unknown = submit(bare_client, "/backups/b1/restore", {"target": "configured", "confirm": "shop"})
    assert unknown.status_code == 400 and "Unknown database &#39;shop&#39;" in text(unknown)
    elsewhere = submit(bare_client, "/backups/b1/restore",
                       {"target": "other", "target_url": "postgresql://u@h/other", "confirm": "other"})
    assert elsewhere.status_code == 400 and "cannot restore into h: a restore may only go to" in text(elsewhere)
    bare_app.config["RESTORE_ALLOWED_HOSTS"] = "h"
    wrong = submit(bare_client, "/backups/b1/restore",
                   {"target": "other", "target_url": "postgresql://u@h/other", "confirm": "shop"})
    assert wrong.status_code == 400
    assert "Confirmation does not match: type the target database name &#39;other&#39;" in text(wrong)
    with bare_app.app_context():
        assert db.session.query(Job).count() == 0


def test_delete_refuses_when_s3_holds_a_copy_but_is_not_configured(bare_app, bare_client):
    add_backup(bare_app, s3_copy=True)
    response = submit(bare_client, "/backups/b1/delete")
    assert response.status_code == 503
    assert "has a copy in S3 but MINIO_ENDPOINT is not set; nothing deleted" in text(response)
    assert bare_client.get("/backups/b1").status_code == 200


def test_delete_of_a_local_only_backup(bare_app, bare_client):
    backup = add_backup(bare_app)
    response = submit(bare_client, "/backups/b1/delete", follow_redirects=True)
    assert f"Deleted {backup['filename']}." in text(response)
    assert bare_client.get("/backups/b1").status_code == 404


def test_api_lists_and_filters(bare_app):
    add_backup(bare_app, backup_id="b1", database="shop")
    add_backup(bare_app, backup_id="b2", database="crm")
    headers = {"Authorization": f"Bearer {api_token(bare_app)}"}
    client = bare_app.test_client()
    assert [b["id"] for b in client.get("/api/backups", headers=headers).json] == ["b2", "b1"]
    assert [b["id"] for b in client.get("/api/backups?database=shop", headers=headers).json] == ["b1"]
    download = client.get("/api/backups/b1/download", headers=headers)
    assert download.data == b"PGDMP fake dump"
    assert client.delete("/api/backups/b2", headers=headers).status_code == 204


def test_users_cli(bare_app):
    runner = bare_app.test_cli_runner()
    created = runner.invoke(args=["users", "create", "Ops@Example.com", "--password-stdin"],
                            input="a-long-password\n")
    assert created.exit_code == 0 and "Created user ops@example.com" in created.output
    again = runner.invoke(args=["users", "create", "ops@example.com", "--password-stdin"], input="x" * 9)
    assert again.exit_code == 1 and "Error: A user ops@example.com already exists" in again.output
    prompted = runner.invoke(args=["users", "create", "new@example.com"], input="a-long-password\n" * 2)
    assert prompted.exit_code == 0 and "Created user new@example.com" in prompted.output
    short = runner.invoke(args=["users", "create", "other@example.com", "--password-stdin"], input="short\n")
    assert short.exit_code == 1 and "at least 8 characters" in short.output

    token = runner.invoke(args=["users", "token", "ops@example.com"]).stdout.strip()
    assert token.startswith("bk_") and len(token) > 40
    assert bare_app.test_client().get("/api/backups", headers={"Authorization": f"Bearer {token}"}).json == []
    with bare_app.app_context():
        from backup_app.models import ApiToken
        assert token not in {t.token_hash for t in db.session.query(ApiToken)}
    unknown = runner.invoke(args=["users", "token", "nobody@example.com"])
    assert unknown.exit_code == 1 and "Error: No user nobody@example.com" in unknown.output


def test_api_conflict_and_unavailable(make_app, tmp_path):
    app = make_app(BACKUP_DATABASE_URL="postgresql://app@db.example:5432/shop", HUEY_IMMEDIATE=False,
                   HUEY_SQLITE_PATH=str(tmp_path / "huey.db"))
    add_user(app)
    add_backup(app, backup_id="b1", s3_copy=True)
    headers = {"Authorization": f"Bearer {api_token(app)}"}
    client = app.test_client()

    first = client.post("/api/backups", headers=headers)
    assert first.status_code == 202 and first.headers["Location"] == f"/api/jobs/{first.json['job_id']}"
    assert client.get(first.headers["Location"], headers=headers).json["status"] == "queued"
    second = client.post("/api/backups", headers=headers)
    assert second.status_code == 409
    assert second.json["error"] == (f"A create job for shop is already queued (job {first.json['job_id']}); "
                                    "wait for it to finish")
    restore = client.post("/api/backups/b1/restore", headers=headers, json={"confirm": "shop"})
    assert restore.status_code == 409, "a restore into the same database waits its turn too"

    deleted = client.delete("/api/backups/b1", headers=headers)
    assert deleted.status_code == 503 and "MINIO_ENDPOINT is not set" in deleted.json["error"]


@pytest.fixture
def queue_down(make_app):
    """An app whose job queue is a Redis server that is not there (a reserved port nothing listens
    on), with a backup b1 of its database, and a signed-in client."""
    app = make_app(BACKUP_DATABASE_URL="postgresql://app@db.example:5432/shop", HUEY_IMMEDIATE=False,
                   REDIS_URL=f"redis://127.0.0.1:{reserve_port()}/0")
    add_user(app)
    add_backup(app, backup_id="b1")
    client = app.test_client()
    sign_in(client)
    return app, client


def test_an_unavailable_queue_is_a_503_and_no_job_stays_queued(queue_down):
    app, client = queue_down
    headers = {"Authorization": f"Bearer {api_token(app)}"}

    api_create = client.post("/api/backups", headers=headers)
    api_restore = client.post("/api/backups/b1/restore", headers=headers, json={"confirm": "shop"})
    page_create = submit(client, "/backups/new", {"database": "shop"})
    page_restore = submit(client, "/backups/b1/restore", {"target": "configured", "confirm": "shop"})
    page_verify = submit(client, "/backups/b1/verify", form_url="/backups/b1", follow_redirects=True)

    for response in (api_create, api_restore):
        assert response.status_code == 503
        assert response.json["error"].startswith("The job queue is unavailable: "), response.json
    for response in (page_create, page_restore):
        assert response.status_code == 503 and "The job queue is unavailable: " in text(response)
    assert page_verify.request.path == "/backups/b1" and "The job queue is unavailable: " in text(page_verify)
    with app.app_context():
        jobs = db.session.query(Job).all()
        assert sorted(job.kind for job in jobs) == ["create", "create", "restore", "restore", "verify"], \
            "each attempt was its own: none was refused as already queued"
        assert {(job.status, job.error.split(":")[0]) for job in jobs} == {("failed", "could not queue the job")}
        assert db.session.get(Backup, "b1").status == "completed"


def test_unexpected_errors_get_the_500_page(bare_app, bare_client, monkeypatch):
    from backup_app.web.backups import routes

    def broken(*_args):
        raise RuntimeError("boom")
    monkeypatch.setattr(routes, "backups_query", broken)
    bare_app.config["PROPAGATE_EXCEPTIONS"] = False
    response = bare_client.get("/")
    assert response.status_code == 500
    assert "500 · Something went wrong" in text(response) and "boom" not in text(response)


def test_verify_now_refuses_a_failed_backup_and_a_second_verify(make_app, tmp_path):
    app = make_app(BACKUP_DATABASE_URL="postgresql://app@db.example:5432/shop", HUEY_IMMEDIATE=False,
                   HUEY_SQLITE_PATH=str(tmp_path / "huey.db"))
    add_user(app)
    add_backup(app, backup_id="b1")
    add_backup(app, backup_id="b2")
    with app.app_context():
        db.session.get(Backup, "b2").status = "failed"
        db.session.commit()
    client = app.test_client()
    sign_in(client)

    first = submit(client, "/backups/b1/verify", form_url="/backups/b1")
    again = submit(client, "/backups/b1/verify", form_url="/backups/b1", follow_redirects=True)
    failed = submit(client, "/backups/b2/verify", form_url="/backups/b2", follow_redirects=True)

    with app.app_context():
        [job] = db.session.query(Job).all()
    assert first.headers["Location"] == f"/jobs/?highlight={job.id}"
    assert (job.kind, job.backup_id, job.target) == ("verify", "b1", "scratch copy of b1 on db.example:5432")
    assert f"A verify job for shop is already queued (job {job.id}); wait for it to finish" in text(again)
    assert "backup b2 is failed, not completed" in text(failed)


def test_api_list_is_paged_with_the_total_in_a_header(bare_app):
    token = api_token(bare_app)
    headers = {"Authorization": f"Bearer {token}"}
    for number in range(5):
        add_backup(bare_app, backup_id=f"b{number}")
    client = bare_app.test_client()

    first = client.get("/api/backups?limit=2", headers=headers)
    rest = client.get("/api/backups?limit=2&offset=4", headers=headers)
    bad = client.get("/api/backups?limit=5000", headers=headers)
    not_a_number = client.get("/api/backups?offset=abc", headers=headers)
    form_body = client.post("/api/backups/b1/restore", headers=headers, data={"confirm": "shop"})

    assert len(first.json) == 2 and first.headers["X-Total-Count"] == "5"
    assert len(rest.json) == 1
    assert bad.status_code == 400 and "limit must be 1 to 1000" in bad.json["error"]
    assert not_a_number.status_code == 400 and not_a_number.json["error"] == "offset must be a whole number, not 'abc'"
    assert form_body.status_code == 400 and form_body.json["error"] == "the request body must be a JSON object"


def test_no_page_writes_to_the_catalog(make_app):
    """A GET reads only: BACKUP_DATABASE_URL's target is shown before anything has stored it. (An API
    token's first use is recorded: its last-used time.)"""
    from sqlalchemy import event

    app = make_app(BACKUP_DATABASE_URL="postgresql://app@db.example:5432/shop")
    add_user(app)
    add_backup(app)
    client = app.test_client()
    sign_in(client)
    writes = []

    def count(_conn, _cursor, statement, *_):
        if statement.lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            writes.append(statement.split("\n")[0])
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", count)
    for url in ("/", "/dashboard", "/targets/", "/targets/shop/edit", "/targets/shop/retention", "/backups/new",
                "/backups/b1", "/backups/b1/restore", "/storage", "/storage/table", "/jobs/", "/audit",
                "/api/backups"):
        headers = {"Authorization": f"Bearer {api_token(app)}"} if url.startswith("/api") else {}
        writes.clear()
        assert client.get(url, headers=headers).status_code == 200, url
        assert [write for write in writes if not write.startswith("UPDATE api_tokens SET last_used_at")] == [], url
    assert "shop" in text(client.get("/targets/"))
