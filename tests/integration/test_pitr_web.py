"""The PITR page and the PITR API against the session's PostgreSQL 15 and SeaweedFS (jobs run
inside the request, huey immediate mode): the status shown, every form's and body's bad input
with its message, jobs queued and failing with the service's words, nothing queued when refused.
No base backup is taken here (tests/integration/test_pitr.py covers the archive on a server of
its own), so every moment is outside the recoverable window."""
import json

import pytest

from backup_app import wiring
from backup_app.extensions import db
from backup_app.jobs.pitr import pitr_slot
from backup_app.models import RUNNING, AuditEvent, Job, Target
from backup_app.services.targets import save_env_target
from devtools.localservers import reserve_port
from tests.web_helpers import api_token, submit, text

pytestmark = pytest.mark.integration

WINDOW_EMPTY = "empty (no base backup with its WAL)"


def page_url(name: str) -> str:
    return f"/targets/{name}/pitr"


def all_jobs(app) -> list[Job]:
    with app.app_context():
        found = db.session.query(Job).order_by(Job.created_at).all()
        db.session.expunge_all()
        return found


def audited(app) -> list[tuple[str, str]]:
    """The PITR actions in the audit log, oldest first."""
    with app.app_context():
        return [(e.action, e.subject) for e in db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.action.startswith("pitr-")).order_by(AuditEvent.id))]


def restore_form(data_dir, **changes) -> dict:
    return {"to": "2026-01-15T10:30:00", "timezone": "Europe/Berlin", "data_dir": str(data_dir), **changes}



@pytest.fixture
def api(app, client):
    """A test client of the app and the headers that open its API (the user is `client`'s)."""
    return app.test_client(), {"Authorization": f"Bearer {api_token(app)}"}


def test_the_page_shows_the_status_of_a_target_without_pitr(client, source_db):
    targets = text(client.get("/targets/"))
    assert f'href="{page_url(source_db)}"' in targets, "the target's row links its PITR page"

    page = text(client.get(page_url(source_db)))

    assert f"Point-in-time recovery: {source_db}" in page
    for shown in ('data-field="enabled"><span class="badge missing">off</span>',
                  '<span class="badge missing">stopped</span>', "none archived yet",
                  "nothing yet: a base backup and the WAL after it are needed", "never run",
                  "No base backups yet.", ">Enable PITR</button>", ">Take base backup</button>",
                  ">Run PITR drill</button>", 'type="datetime-local"', 'name="timezone" required type="text" value="UTC"'):
        assert shown in page, shown
    assert "Disable PITR" not in page, "nothing to disable"


def test_unknown_target_pages_and_api_name_the_known_ones(bare_app, bare_client):
    for response in (bare_client.get(page_url("nosuch")),
                     submit(bare_client, "/targets/nosuch/pitr/verify", form_url="/targets/")):
        assert response.status_code == 400 and "Unknown database &#39;nosuch&#39;" in text(response)
    api, headers = bare_app.test_client(), {"Authorization": f"Bearer {api_token(bare_app)}"}
    for method, path in (("GET", ""), ("POST", "/base-backups"), ("POST", "/verify"), ("POST", "/restore")):
        response = api.open(f"/api/targets/nosuch/pitr{path}", method=method, headers=headers,
                            json={"to": "latest", "data_dir": "/srv/x"} if path == "/restore" else None)
        assert response.status_code == 404, path
        assert response.json["error"].startswith("Unknown database 'nosuch'"), path
    assert all_jobs(bare_app) == []


def test_base_backup_and_drill_say_why_not_and_queue_nothing_that_runs(app, client, source_db):
    with app.app_context():  # stored, as once its settings are saved: the drill's outcome is kept in its row
        save_env_target(db.session, app.config["BACKUP_DATABASE_URL"])
        db.session.commit()
    refused = submit(client, f"/targets/{source_db}/pitr/base-backups", {"incremental": "y"},
                     form_url=page_url(source_db), follow_redirects=True)
    assert f"{source_db}: PITR is off for {source_db}" in text(refused)
    assert all_jobs(app) == []

    drill = submit(client, f"/targets/{source_db}/pitr/verify", form_url=page_url(source_db))
    assert drill.status_code == 302 and drill.headers["Location"].startswith("/jobs/?highlight=")
    [job] = all_jobs(app)
    assert (job.kind, job.status) == ("pitr-verify", "failed")
    assert job.error == f"{source_db} has nothing to recover yet: it has no base backup"
    assert job.error in text(client.get("/jobs/"))
    page = text(client.get(page_url(source_db)))
    assert '<span class="badge failed">failed</span>' in page and job.error in page, "the last drill"
    assert audited(app) == [("pitr-base-backup-failed", source_db), ("pitr-verify-failed", source_db)], \
        "the drill's job failed after it was queued"


def test_restore_turns_the_local_time_into_utc_and_the_job_names_the_window(app, client, source_db, data_root):
    data_dir, port = data_root / "restored", reserve_port()
    response = submit(client, f"/targets/{source_db}/pitr/restore", restore_form(data_dir, port=str(port)),
                      form_url=page_url(source_db), follow_redirects=True)

    assert f"Restore of {source_db} as of 2026-01-15T09:30:00Z into {data_dir} queued" in text(response)
    [job] = all_jobs(app)
    assert (job.kind, job.status, job.database, job.target) == ("pitr-restore", "failed", source_db, str(data_dir))
    assert job.options == {"to": "2026-01-15T09:30:00Z", "data_dir": str(data_dir), "port": port,
                           "into_database": None, "root": str(data_root)}
    assert job.error == f"2026-01-15T09:30:00Z is outside the recoverable window of {source_db}: {WINDOW_EMPTY}"
    assert job.error in text(response), "shown on the jobs page"
    assert not data_dir.exists(), "refused before anything was written"
    assert audited(app) == [("pitr-restore-failed", source_db)], "its job failed"


def test_restore_latest_into_a_database(app, client, source_db, data_root):
    submit(client, f"/targets/{source_db}/pitr/restore",
           restore_form(data_root / "r", to="", latest="y", into_database=f" {source_db} "),
           form_url=page_url(source_db))

    [job] = all_jobs(app)
    assert job.options["to"] is None and job.options["into_database"] == source_db
    assert job.error == f"{source_db} has nothing to recover yet: it has no base backup"


@pytest.mark.parametrize(("changes", "message"), [
    ({"to": ""}, "Give the date and time to restore to, or tick latest."),
    ({"latest": "y"}, "Give a date and time or tick latest, not both."),
    ({"to": "yesterday"}, "Not a valid datetime value."),
    ({"to": "2026-03-29T02:30"}, "2026-03-29 02:30:00 never happened in Europe/Berlin: the clocks skipped it"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone &#39;Mars/Olympus&#39;"),
    ({"timezone": "Europe"}, "unknown time zone &#39;Europe&#39;"),
    ({"timezone": ""}, "This field is required."),
    ({"data_dir": ""}, "This field is required."),
    ({"data_dir": "restored"}, "Give an absolute path (on the machine the worker runs on)."),
    ({"port": "0"}, "Number must be between 1 and 65535."),
    ({"port": "many"}, "Not a valid integer value."),
])
def test_restore_form_errors_show_the_form_again_and_queue_nothing(app, client, source_db, tmp_path, changes,
                                                                   message):
    response = submit(client, f"/targets/{source_db}/pitr/restore", {**restore_form(tmp_path / "r"), **changes},
                      form_url=page_url(source_db))

    assert response.status_code == 200
    page = text(response)
    assert f'<p class="field-error">{message}' in page
    assert "Point-in-time recovery:" in page and "No base backups yet." in page, "the whole page again"
    assert all_jobs(app) == []
    assert audited(app) == [("pitr-restore-failed", source_db)]


def hold_the_pitr_slot(app, target: str) -> None:
    """A running PITR job of `target` (as if a worker were busy with it)."""
    with app.app_context():
        db.session.add(Job(kind="pitr-verify", database=target, target="scratch directory", slot=pitr_slot(target),
                           status=RUNNING, phase="recovering"))
        db.session.commit()


def test_a_second_pitr_job_is_refused_while_one_runs(app, client, api, source_db, data_root):
    hold_the_pitr_slot(app, source_db)

    drill = submit(client, f"/targets/{source_db}/pitr/verify", form_url=page_url(source_db), follow_redirects=True)
    assert f"A pitr-verify job for {source_db} is already running" in text(drill)
    restore = submit(client, f"/targets/{source_db}/pitr/restore", restore_form(data_root / "r"),
                     form_url=page_url(source_db))
    assert restore.status_code == 409 and "is already running" in text(restore)
    assert 'value="2026-01-15T10:30:00"' in text(restore), "the form keeps what was entered"
    api_client, headers = api
    refused = api_client.post(f"/api/targets/{source_db}/pitr/verify", headers=headers)
    assert refused.status_code == 409 and "is already running" in refused.json["error"]
    assert len(all_jobs(app)) == 1


def test_enable_then_disable_dropping_the_slot(app, client, pg_cluster, source_db):
    slot_count = f"SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '%{source_db}%'"
    try:
        enabled = submit(client, f"/targets/{source_db}/pitr/enable", form_url=page_url(source_db),
                         follow_redirects=True)
        page = text(enabled)
        assert f"PITR is on for {source_db}." in page
        assert "replication slot" in page and f"take a base backup now: flask pitr base-backup {source_db}" in page
        assert '<span class="badge present">on</span>' in page and ">Disable PITR</button>" in page
        assert "Enable PITR" not in page
        assert pg_cluster.psql(slot_count) == "1"
        with app.app_context():
            assert db.session.query(Target).filter_by(name=source_db).one().pitr_enabled

        disabled = submit(client, f"/targets/{source_db}/pitr/disable", {"drop_slot": "y"},
                          form_url=page_url(source_db), follow_redirects=True)
        page = text(disabled)
        assert f"WAL archiving of {source_db} is off; the archive and base backups are kept" in page
        assert "dropped" in page and ">Enable PITR</button>" in page
        assert ">Drop the slot</button>" not in page and "still holds WAL" not in page  # the slot is forgotten
        assert pg_cluster.psql(slot_count) == "0"
    finally:
        pg_cluster.psql(f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                        f"WHERE slot_name LIKE '%{source_db}%' AND NOT active")
    assert audited(app) == [("pitr-enable", source_db), ("pitr-disable", source_db)]


def test_api_status_has_the_clis_shape(app, api, source_db):
    api_client, headers = api
    response = api_client.get(f"/api/targets/{source_db}/pitr", headers=headers)

    assert response.status_code == 200
    cli = app.test_cli_runner().invoke(args=["pitr", "status", source_db, "--json"])
    assert response.json.keys() == json.loads(cli.stdout).keys()
    assert not response.json["enabled"]
    assert {key: response.json[key] for key in ("target", "receiver", "recoverable_from", "recoverable_to",
                                                "base_backups")} == {
        "target": source_db, "receiver": "stopped", "recoverable_from": None, "recoverable_to": None,
        "base_backups": []}


def test_api_jobs_are_accepted_and_fail_with_the_services_words(app, api, source_db, data_root):
    api_client, headers = api
    base = api_client.post(f"/api/targets/{source_db}/pitr/base-backups", headers=headers, json={"incremental": True})
    assert base.status_code == 400 and base.json == {"error": f"PITR is off for {source_db}: turn it on first "
                                                              f"(flask pitr enable {source_db}, or Enable on its "
                                                              "PITR page)"}

    for to in ("2026-01-15T10:30:00+01:00", "2026-01-15T09:30:00Z"):
        restore = api_client.post(f"/api/targets/{source_db}/pitr/restore", headers=headers,
                                  json={"to": to, "data_dir": str(data_root / "r"), "port": reserve_port()})
        assert restore.status_code == 202 and restore.headers["Location"].endswith(restore.json["job_id"])
        job = api_client.get(f"/api/jobs/{restore.json['job_id']}", headers=headers).json
        assert (job["kind"], job["status"]) == ("pitr-restore", "failed")
        assert job["error"] == f"{to} is outside the recoverable window of {source_db}: {WINDOW_EMPTY}"

    drill = api_client.post(f"/api/targets/{source_db}/pitr/verify", headers=headers)
    assert drill.status_code == 202
    job = api_client.get(f"/api/jobs/{drill.json['job_id']}", headers=headers).json
    assert job["error"] == f"{source_db} has nothing to recover yet: it has no base backup"
    assert audited(app) == [("pitr-base-backup-failed", source_db), ("pitr-restore-failed", source_db),
                            ("pitr-restore-failed", source_db), ("pitr-verify-failed", source_db)], "their jobs failed"


@pytest.mark.parametrize(("body", "message"), [
    ({"data_dir": "/srv/r"}, "'to' is required: an ISO 8601 time with its zone"),
    ({"to": "2026-01-15T10:30:00", "data_dir": "/srv/r"},
     "--to '2026-01-15T10:30:00' has no time zone: add Z for UTC or an offset like +01:00"),
    ({"to": "yesterday", "data_dir": "/srv/r"}, "--to takes an ISO 8601 time with its zone"),
    ({"to": 1700000000, "data_dir": "/srv/r"}, "'to' must be a string"),
    ({"to": "latest"}, "'data_dir' is required: an absolute path on the machine the worker runs on"),
    ({"to": "latest", "data_dir": "restored"}, "'data_dir' is required: an absolute path"),
    ({"to": "latest", "data_dir": "/srv/r", "port": "5432"}, "'port' must be a whole number from 1 to 65535"),
    ({"to": "latest", "data_dir": "/srv/r", "port": True}, "'port' must be a whole number"),
    ({"to": "latest", "data_dir": "/srv/r", "port": 70000}, "'port' must be a whole number"),
    ({"to": "latest", "data_dir": "/srv/r", "into_database": ["x"]}, "'into_database' must be a string"),
    (["latest"], "the request body must be a JSON object"),
])
def test_api_restore_refuses_bad_bodies(app, api, source_db, body, message):
    api_client, headers = api
    response = api_client.post(f"/api/targets/{source_db}/pitr/restore", headers=headers, json=body)

    assert response.status_code == 400
    assert response.json["error"].startswith(message), response.json
    assert all_jobs(app) == []


def test_api_base_backup_flag_must_be_a_boolean(app, api, source_db):
    api_client, headers = api
    response = api_client.post(f"/api/targets/{source_db}/pitr/base-backups", headers=headers,
                               json={"incremental": "yes"})
    assert response.status_code == 400 and response.json == {"error": "'incremental' must be true or false"}
    assert all_jobs(app) == []


def test_another_cluster_is_refused_by_enable_and_archived_as_a_new_lineage_by_its_button(app, client, pg_cluster,
                                                                                         source_db):
    with app.app_context():
        target = wiring.target(source_db)
        db.session.add(target)
        target.pitr_system_identifier = "1234"  # as if the archive followed a cluster since replaced
        db.session.commit()
    try:
        refused = text(submit(client, f"/targets/{source_db}/pitr/enable", form_url=page_url(source_db),
                              follow_redirects=True))
        assert "is another cluster" in refused and f"flask pitr enable {source_db} --new-cluster" in refused
        queued = text(submit(client, f"/targets/{source_db}/pitr/new-cluster", form_url=page_url(source_db),
                             follow_redirects=True))
        with app.app_context():
            found = db.session.query(Target).filter_by(name=source_db).one().pitr_system_identifier
        assert found not in (None, "1234")
        assert f"A new lineage (cluster {found}) is archived; its first base backup of {source_db} queued" in queued
        assert [job.kind for job in all_jobs(app)] == ["base-backup"]
    finally:
        pg_cluster.psql(f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                        f"WHERE slot_name LIKE '%{source_db}%' AND NOT active")
