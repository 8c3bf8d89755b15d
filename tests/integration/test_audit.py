"""The audit log: every action from the CLI, the pages and the API, newest first."""
import json

import pytest

from tests.helpers import add_target, create, invoke
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
    assert events[0]["subject"] == "nosuchid" and "Backup not found" in events[0]["detail"]
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
