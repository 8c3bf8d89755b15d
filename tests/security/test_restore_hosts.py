"""A restore goes only to a host a target names or RESTORE_ALLOWED_HOSTS lists: whoever may restore
cannot make the app connect (and write) anywhere else. Anything else is refused, with the reason,
before a job, a database or a connection is made: 400 from the API and the page, `Error:` from the CLI."""
import json

import pytest

from backup_app.extensions import db
from backup_app.models import Job
from tests.helpers import count_rows, create, error_line, invoke
from tests.web_helpers import add_user, api_token, sign_in, submit, text

pytestmark = pytest.mark.integration

REASON = "a restore may only go to a host that a target names or RESTORE_ALLOWED_HOSTS lists"


def elsewhere(pg_cluster, dbname: str) -> str:
    """The same server under a name no target uses (`localhost`, where the target says `127.0.0.1`)."""
    return pg_cluster.url(dbname).replace("@127.0.0.1:", "@localhost:")


def job_kinds(app) -> list[str]:
    with app.app_context():
        return [job.kind for job in db.session.query(Job)]


def database_exists(pg_cluster, name: str) -> bool:
    return pg_cluster.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == "1"


def test_every_way_in_refuses_a_host_no_target_names(app, runner, pg_cluster, source_db):
    backup = create(runner)
    other = source_db + "_elsewhere"

    result = invoke(runner, "backup", "restore", backup["id"], "--target-url", elsewhere(pg_cluster, other), "--yes",
                    ok=False)
    assert error_line(result) == f"Error: cannot restore into localhost: {REASON}"

    add_user(app)
    api = app.test_client()
    answer = api.post(f"/api/backups/{backup['id']}/restore", headers={"Authorization": f"Bearer {api_token(app)}"},
                      json={"confirm": other, "target_url": elsewhere(pg_cluster, other)})
    assert answer.status_code == 400 and answer.json == {"error": f"cannot restore into localhost: {REASON}"}

    client = app.test_client()
    sign_in(client)
    page = submit(client, f"/backups/{backup['id']}/restore",
                  {"target": "other", "target_url": elsewhere(pg_cluster, other), "confirm": other})
    assert page.status_code == 400 and f"cannot restore into localhost: {REASON}" in text(page)

    sneaky = pg_cluster.url(other) + "?host=db.attacker.example"
    result = invoke(runner, "backup", "restore", backup["id"], "--target-url", sneaky, "--yes", ok=False)
    assert error_line(result) == f"Error: cannot restore into db.attacker.example: {REASON}"

    assert job_kinds(app) == ["create"], "no restore job was made"
    assert not database_exists(pg_cluster, other)


def test_a_host_restore_allowed_hosts_lists_is_restored_into(make_app, pg_cluster, source_db, s3_settings):
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), RESTORE_ALLOWED_HOSTS="scratch.example, LOCALHOST",
                   **s3_settings)
    runner = app.test_cli_runner()
    invoke(runner, "storage", "init")
    backup = create(runner)
    other = source_db + "_listed"
    try:
        restored = invoke(runner, "backup", "restore", backup["id"], "--target-url", elsewhere(pg_cluster, other),
                          "--yes", "--json")
        assert json.loads(restored.stdout)["database"] == other
        assert count_rows(pg_cluster, other) == 3000
    finally:
        pg_cluster.dropdb(other)
