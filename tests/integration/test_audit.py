"""The audit log: every action from the CLI, the pages and the API, newest first."""
import json
import logging
import threading

import pytest
from sqlalchemy import event, text

from backup_app.extensions import db
from backup_app.jobs.runners import run_job
from tests.helpers import add_target, all_jobs, create, error_line, hold_target, invoke
from tests.web_helpers import EMAIL, add_user, api_token, sign_in, submit

pytestmark = pytest.mark.integration


def audit(runner, *args) -> list[dict]:
    return json.loads(invoke(runner, "audit", "list", "--json", *args).stdout)


def test_cli_actions_are_audited_newest_first(runner, pg_cluster, source_db):
    backup = create(runner)
    invoke(runner, "backup", "restore", backup["id"], "--target-url", pg_cluster.url(source_db), "--yes")
    invoke(runner, "backup", "delete", "nosuchid", "--yes", ok=False)
    invoke(runner, "backup", "list")  # reading changes nothing: not audited

    events = audit(runner)

    assert [e["action"] for e in events] == ["delete-failed", "restore", "create", "storage-init"]
    assert all(set(e) >= {"at", "actor", "action", "subject", "address"} for e in events)
    assert all(e["actor"] == "cli" and e["address"] is None for e in events)
    assert [e["subject"] for e in events[1:3]] == [backup["id"], source_db], "what was restored; what was backed up"
    assert events[0]["subject"] == "nosuchid" and events[0]["detail"] == "refused: Backup not found: nosuchid"
    assert events == sorted(events, key=lambda e: e["at"], reverse=True)


def test_passwords_never_reach_the_audit_log(keyed_app, pg_cluster, other_db):
    runner = keyed_app.test_cli_runner()
    add_target(runner, "other", pg_cluster.url(other_db))

    [event] = audit(runner, "--action", "targets-add")

    assert pg_cluster.password not in json.dumps(audit(runner))
    assert event["subject"] == "other"


def test_web_and_api_actions_are_audited_with_who_and_where(app, runner, source_db):
    add_user(app)
    client = app.test_client()
    assert sign_in(client, password="wrong").status_code == 401
    assert sign_in(client).status_code == 302
    submit(client, "/backups/new", {"database": source_db})
    backup = json.loads(invoke(runner, "backup", "list", "--json").stdout)[0]
    assert client.get(f"/backups/{backup['id']}/download").status_code == 200
    token = api_token(app)
    response = client.delete(f"/api/backups/{backup['id']}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 204

    events = audit(runner)
    web = [(e["actor"], e["action"], e["subject"]) for e in events if e["actor"] != "cli"]

    assert web == [
        (f"{EMAIL} (API token)", "delete", backup["id"]),
        (EMAIL, "download", backup["id"]),
        (EMAIL, "create", source_db),
        (EMAIL, "sign-in", EMAIL),
        ("anonymous", "sign-in-failed", EMAIL),
    ]
    assert all(e["address"] == "127.0.0.1" for e in events if e["actor"] != "cli")


def test_audit_page_lists_and_filters(app, runner, source_db):
    add_user(app)
    client = app.test_client()
    sign_in(client, password="wrong")
    sign_in(client)
    create(runner)

    page = client.get("/audit?action=sign-in-failed").get_data(as_text=True)

    assert "sign-in-failed" in page and "127.0.0.1" in page
    assert ">create<" not in page
    assert ">create<" in client.get("/audit").get_data(as_text=True)
    text = invoke(runner, "audit", "list").stdout
    assert "cli" in text and "create" in text


def test_outcomes_are_words_ok_refused_or_failed(app, runner, client, source_db):
    backup = create(runner)
    submit(client, f"/backups/{backup['id']}/restore", {"target": "configured", "confirm": "not-the-name"})
    submit(client, "/backups/new", {"database": source_db})
    invoke(runner, "backup", "delete", backup["id"], ok=False)  # cancelled: no --yes, no terminal

    events = audit(runner)
    web = [(e["action"], e["detail"]) for e in events if e["actor"] == EMAIL]

    assert web[0] == ("create", "ok")
    assert web[1][0] == "restore-failed" and web[1][1].startswith("refused: ") and "not-the-name" not in web[1][1]
    assert web[2] == ("sign-in", "ok")
    [job] = [e for e in events if e["actor"] == EMAIL and e["action"] == "create"]
    assert job["job_id"], "the event names the job the request queued"
    assert not any(e["detail"].startswith("HTTP ") for e in events)
    assert audit(runner, "--action", "create")[-1]["detail"] == "ok"  # the CLI's, too
    assert events[0]["action"] == "delete-failed"
    assert events[0]["detail"] == "refused: cancelled; nothing changed (pass --yes to skip this question)"


def test_a_job_that_fails_inside_the_request_is_logged_failed(app, runner, client, pg_cluster, source_db):
    app.config["BACKUP_DATABASE_URL"] = pg_cluster.url(source_db, password="wrong")  # jobs run in the request here

    submit(client, "/backups/new", {"database": source_db})

    [event] = audit(runner, "--action", "create-failed")
    assert event["detail"].startswith("failed: ") and "password authentication failed" in event["detail"]
    assert event["job_id"]


def test_a_queued_job_that_fails_later_updates_its_audit_entry(make_app, pg_cluster, source_db, tmp_path):
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db, password="wrong"), HUEY_IMMEDIATE=False,
                   HUEY_SQLITE_PATH=str(tmp_path / "huey.db"))
    add_user(app)
    client = app.test_client()
    sign_in(client)
    runner = app.test_cli_runner()

    submit(client, "/backups/new", {"database": source_db})
    [event] = audit(runner, "--action", "create")
    assert event["detail"] == "ok"

    with app.app_context():
        run_job(event["job_id"])  # what the worker's task does

    [failed] = audit(runner, "--action", "create-failed")
    assert failed["job_id"] == event["job_id"] and failed["at"] == event["at"], "the same entry, updated"
    assert failed["detail"].startswith("failed: ") and "password authentication failed" in failed["detail"]
    assert audit(runner, "--action", "create") == []


def test_a_job_that_fails_before_its_event_is_written_is_logged_failed(make_app, pg_cluster, source_db, tmp_path):
    """The worker fails the job between the request's look at it and the commit of its event."""
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db, password="wrong"), HUEY_IMMEDIATE=False,
                   HUEY_SQLITE_PATH=str(tmp_path / "huey.db"))
    add_user(app)
    client = app.test_client()
    sign_in(client)

    def worker():
        with app.app_context():
            [job] = all_jobs(app)
            run_job(job.id)

    def fail_the_job_first(_conn, _cursor, statement, *_args):
        if statement.startswith("INSERT INTO audit_events") and not ran.is_set():
            ran.set()
            thread = threading.Thread(target=worker)
            thread.start()
            thread.join()

    ran = threading.Event()
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", fail_the_job_first)
    submit(client, "/backups/new", {"database": source_db})
    event.remove(engine, "before_cursor_execute", fail_the_job_first)

    [failed] = audit(app.test_cli_runner(), "--action", "create-failed")
    assert failed["detail"].startswith("failed: ") and "password authentication failed" in failed["detail"]
    assert [job.status for job in all_jobs(app)] == ["failed"]


def test_a_cli_job_that_ran_and_failed_is_logged_failed_not_refused(app, runner, pg_cluster, source_db, tmp_path):
    backup = create(runner)
    output = tmp_path / "missing" / "backup.dump"
    invoke(runner, "backup", "download", backup["id"], "--output", str(output), ok=False)  # its job fails
    hold_target(app, pg_cluster.url(source_db))
    invoke(runner, "backup", "create", ok=False)  # its job never starts

    events = audit(runner)

    assert (events[1]["action"], events[1]["detail"]) == \
        ("download-failed", f"failed: cannot write {output}: No such file or directory")
    assert events[0]["action"] == "create-failed" and events[0]["detail"].startswith(
        f"refused: A restore job for {source_db} is already running")


def test_a_failing_audit_write_does_not_hide_the_jobs_error(app, runner, pg_cluster, source_db, caplog):
    app.config["BACKUP_DATABASE_URL"] = pg_cluster.url(source_db, password="wrong")
    with app.app_context():
        db.session.execute(text("ALTER TABLE audit_events RENAME TO audit_events_gone"))
        db.session.commit()

    with caplog.at_level(logging.ERROR):
        result = invoke(runner, "backup", "create", ok=False)

    assert "password authentication failed" in error_line(result)
    [job] = all_jobs(app)
    assert job.status == "failed" and "password authentication failed" in job.error
    assert f"could not say in the audit log that job {job.id} failed" in caplog.text
