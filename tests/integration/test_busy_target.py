"""A second create, restore or verify while one of the same target (or backup) runs is refused on
the CLI (`Error:`, exit 1), the API (409) and the pages (the message shown), each naming the job
that runs; nothing is queued or run twice, and the target and the catalog stay as they were."""
import pytest

from backup_app.extensions import db
from backup_app.jobs.slots import backup_slot
from backup_app.models import Backup
from tests.helpers import all_jobs, count_rows, create, error_line, hold_target, invoke, running_job
from tests.web_helpers import api_token, submit, text

pytestmark = pytest.mark.integration


def refusal(kind: str, database: str, job_id: str) -> str:
    return f"A {kind} job for {database} is already running (job {job_id}); wait for it to finish"


def assert_nothing_changed(app, pg_cluster, source_db, backup: dict, kind: str, busy: str) -> None:
    """The target as it was, the one backup, and no job row beside the backup's and the running one."""
    assert count_rows(pg_cluster, source_db) == 100, "the target was not touched"
    with app.app_context():
        assert [b.id for b in db.session.query(Backup)] == [backup["id"]]
    jobs = all_jobs(app)
    assert [(job.kind, job.status) for job in jobs] == [("create", "completed"), (kind, "running")]
    assert jobs[1].id == busy


@pytest.mark.parametrize("kind", ["create", "restore"])
def test_a_running_create_or_restore_refuses_another_of_its_target(app, runner, client, pg_cluster, source_db, kind):
    backup = create(runner)
    busy = hold_target(app, pg_cluster.url(source_db), kind=kind)
    pg_cluster.psql("DELETE FROM orders WHERE id > 100", source_db)
    message = refusal(kind, source_db, busy)
    api = app.test_client()
    headers = {"Authorization": f"Bearer {api_token(app)}"}

    cli_create = invoke(runner, "backup", "create", "--json", ok=False)
    cli_restore = invoke(runner, "backup", "restore", backup["id"], "--yes", ok=False)
    api_create = api.post("/api/backups", headers=headers)
    api_restore = api.post(f"/api/backups/{backup['id']}/restore", headers=headers, json={"confirm": source_db})
    page_create = submit(client, "/backups/new", {"database": source_db})
    page_restore = submit(client, f"/backups/{backup['id']}/restore", {"target": "configured", "confirm": source_db})

    for result in (cli_create, cli_restore):
        assert error_line(result) == f"Error: {message}" and result.stdout == ""
    for response in (api_create, api_restore):
        assert response.status_code == 409 and response.json == {"error": message}
    for response in (page_create, page_restore):
        assert response.status_code == 409 and message in text(response)
    assert_nothing_changed(app, pg_cluster, source_db, backup, kind, busy)


def test_a_running_verify_refuses_another_of_its_backup(app, runner, client, pg_cluster, source_db):
    backup = create(runner)
    busy = running_job(app, kind="verify", database=source_db, target="scratch", slot=backup_slot(backup["id"]),
                       backup_id=backup["id"])
    pg_cluster.psql("DELETE FROM orders WHERE id > 100", source_db)
    message = refusal("verify", source_db, busy)

    cli = invoke(runner, "backup", "verify", backup["id"], ok=False)
    page = submit(client, f"/backups/{backup['id']}/verify", form_url=f"/backups/{backup['id']}",
                  follow_redirects=True)

    assert error_line(cli) == f"Error: {message}"
    assert page.request.path == f"/backups/{backup['id']}" and message in text(page)
    assert_nothing_changed(app, pg_cluster, source_db, backup, "verify", busy)
