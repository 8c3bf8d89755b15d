"""Restore by name: into a new database on the target's own server, with the target's stored
credentials, from the CLI and the API; the original is never touched, and a name that exists, the
target's own name or a confirmation that differs is refused before anything runs."""
import json

import pytest

from backup_app.extensions import db
from backup_app.models import Job
from tests.helpers import count_rows, create, error_line, invoke
from tests.web_helpers import add_user, api_token

pytestmark = pytest.mark.integration


def database_exists(pg_cluster, name: str) -> bool:
    return pg_cluster.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == "1"


def restore_jobs(app) -> list[Job]:
    with app.app_context():
        return [job for job in db.session.query(Job) if job.kind == "restore"]


def test_cli_restores_into_a_new_database_and_leaves_the_original(app, runner, pg_cluster, source_db):
    backup = create(runner)
    pg_cluster.psql("DELETE FROM orders WHERE id <= 10", source_db)
    new = source_db + "_copy"

    result = invoke(runner, "backup", "restore", backup["id"], "--as-database", new, "--yes", "--json")
    assert json.loads(result.stdout) == {"backup": backup["id"], "database": new, "previous_database": None}
    assert count_rows(pg_cluster, new) == 3000
    assert count_rows(pg_cluster, source_db) == 2990, "the original is untouched"
    [job] = restore_jobs(app)
    assert job.database == new and f"/{new}" in job.target

    asked = runner.invoke(args=["backup", "restore", backup["id"], "--as-database", source_db + "_other"], input="n\n")
    assert f"into the new database {source_db}_other; no other database changes" in asked.stderr
    assert not database_exists(pg_cluster, source_db + "_other")


def test_cli_refuses_an_existing_name_and_the_targets_own(app, runner, pg_cluster, source_db, other_db):
    backup = create(runner)

    taken = invoke(runner, "backup", "restore", backup["id"], "--as-database", other_db, "--yes", ok=False)
    assert error_line(taken) == (f"Error: a database {other_db} already exists on postgresql://postgres@127.0.0.1:"
                                 f"{pg_cluster.port}/: give a new name (a restore by name never replaces a database)")
    own = invoke(runner, "backup", "restore", backup["id"], "--as-database", source_db, "--yes", ok=False)
    assert error_line(own) == (f"Error: {source_db} is the target's own database: a restore into it replaces it "
                               "(the swap); give the name of a new database, or restore into its own database instead")
    both = invoke(runner, "backup", "restore", backup["id"], "--as-database", "x", "--target-url",
                  pg_cluster.url("x"), "--yes", ok=False)
    assert error_line(both) == "Error: give a connection URL, or a target and a database name, not both"
    in_place = invoke(runner, "backup", "restore", backup["id"], "--as-database", "x", "--in-place", "--yes", ok=False)
    assert "a restore into the new database x replaces nothing" in error_line(in_place)

    assert restore_jobs(app) == [], "no restore job was made"
    assert count_rows(pg_cluster, other_db) == 600


def test_api_restores_by_name_and_refuses_mismatch_existing_and_own(app, pg_cluster, source_db, other_db):
    backup = create(app.test_cli_runner())
    add_user(app)
    headers = {"Authorization": f"Bearer {api_token(app)}"}
    api = app.test_client()
    url, new = f"/api/backups/{backup['id']}/restore", source_db + "_api"

    mismatch = api.post(url, headers=headers, json={"database": new, "confirm": source_db})
    assert mismatch.status_code == 400
    assert mismatch.json == {"error": f"Confirmation does not match: type the target database name {new!r}"}
    taken = api.post(url, headers=headers, json={"database": other_db, "confirm": other_db})
    assert taken.status_code == 400 and f"a database {other_db} already exists" in taken.json["error"]
    own = api.post(url, headers=headers, json={"database": source_db, "confirm": source_db})
    assert own.status_code == 400 and f"{source_db} is the target's own database" in own.json["error"]
    swap_by_mistake = api.post(url, headers=headers, json={"confirm": new})
    assert swap_by_mistake.status_code == 400
    assert swap_by_mistake.json["error"] == (
        f"Confirmation does not match: this restore replaces {source_db} itself (its own database, swapped out and "
        "kept aside); to leave it untouched, restore into a new database on the same server and give that "
        "database's name")
    assert restore_jobs(app) == [] and not database_exists(pg_cluster, new)

    pg_cluster.psql("DELETE FROM orders", source_db)
    accepted = api.post(url, headers=headers, json={"database": new, "confirm": new})
    assert accepted.status_code == 202
    job = api.get(f"/api/jobs/{accepted.json['job_id']}", headers=headers).json
    assert job["status"] == "completed", job
    assert count_rows(pg_cluster, new) == 3000
    assert count_rows(pg_cluster, source_db) == 0, "the original is untouched"
