"""What restores leave behind, listed, dropped and stopped: the database a swap restore kept (with
its size from the server) and the server a point-in-time restore left running (with its port and
directory); from the CLI and the Restores page, each written to the audit log."""
import json
import threading
from pathlib import Path

import pytest

from backup_app.extensions import db
from backup_app.models import COMPLETED, AuditEvent, Job, PreviousDatabase, utcnow
from tests.helpers import Tarpit, add_target, create, error_line, invoke
from tests.integration.pitr_support import (  # noqa: F401 - fixtures
    archiving,
    covered,
    insert_batch,
    pitr_app,
    pitr_cluster,
    receivers,
    wait_for,
)
from tests.web_helpers import add_user, sign_in, submit, text

pytestmark = pytest.mark.integration


def left_behind(runner) -> list[dict]:
    return json.loads(invoke(runner, "restores", "list", "--json").stdout)


def audited(app) -> list[tuple[str, str, str]]:
    with app.app_context():
        return [(e.actor, e.action, e.subject) for e in db.session.query(AuditEvent).order_by(AuditEvent.id)
                if e.action.startswith("restores-")]


def database_exists(pg_cluster, name: str) -> bool:
    return pg_cluster.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == "1"


def test_a_kept_database_is_listed_with_its_size_and_dropped(app, runner, pg_cluster, source_db):
    assert left_behind(runner) == []
    assert "Nothing left behind by restores." in invoke(runner, "restores", "list").stdout
    backup = create(runner)
    restored = json.loads(invoke(runner, "backup", "restore", backup["id"], "--yes", "--json").stdout)
    kept = restored["previous_database"]

    [item] = left_behind(runner)
    size = int(pg_cluster.psql(f"SELECT pg_database_size('{kept}')"))
    assert item["kind"] == "previous-database" and item["name"] == kept and item["target"] == source_db
    assert item["size_bytes"] == size and size > 0
    assert item["created_at"] and item["drop_at"] > item["created_at"]
    assert item["port"] is None and item["data_dir"] is None

    unknown = invoke(runner, "restores", "drop", "nosuch", "--yes", ok=False)
    assert error_line(unknown) == "Error: no database kept by a restore is called 'nosuch' (see `flask restores list`)"
    asked = runner.invoke(args=["restores", "drop", kept], input="n\n")
    assert asked.exit_code == 1 and database_exists(pg_cluster, kept), "nothing dropped without a yes"
    dropped = invoke(runner, "restores", "drop", kept, "--yes").stdout
    assert f"Dropped {kept} (kept by a restore of {source_db})" in dropped
    assert not database_exists(pg_cluster, kept)
    assert left_behind(runner) == []
    assert ("cli", "restores-drop", kept) in audited(app)


def test_the_restores_page_lists_and_drops_after_a_confirmation(app, client, runner, pg_cluster, source_db):
    backup = create(runner)
    kept = json.loads(invoke(runner, "backup", "restore", backup["id"], "--yes", "--json").stdout)["previous_database"]

    page = text(client.get("/restores/"))
    assert 'href="/restores/"' in page, "in the navigation"
    assert f'data-name="{kept}"' in page and "Drop now" in page
    confirm = client.get(f"/restores/drop/{kept}")
    assert confirm.status_code == 200 and "what it holds is gone" in text(confirm)
    assert database_exists(pg_cluster, kept), "showing the confirmation changes nothing"
    no_token = client.post(f"/restores/drop/{kept}")
    assert no_token.status_code == 400 and database_exists(pg_cluster, kept)

    done = submit(client, f"/restores/drop/{kept}", follow_redirects=True)
    assert f"Dropped {kept} (kept by a restore of {source_db})." in text(done)
    assert "Nothing left behind by restores." in text(done)
    assert not database_exists(pg_cluster, kept)
    missing = submit(client, f"/restores/drop/{kept}")
    assert missing.status_code == 404 and f"no database kept by a restore is called &#39;{kept}&#39;" in text(missing)
    assert [action for _actor, action, _subject in audited(app)] == ["restores-drop-failed", "restores-drop"], \
        "the post without a token, then the drop (a 404 names nothing to audit)"


def within_half_a_minute(ask):
    """What `ask()` answers, given 30 s (a deadline, not a measure: asking a silent server 10 s per
    database and maintenance database, as it once was, took a minute here)."""
    answers = []
    thread = threading.Thread(target=lambda: answers.append(ask()), daemon=True)
    thread.start()
    thread.join(30)
    assert answers, "still waiting for the silent server"
    return answers[0]


def test_kept_databases_on_a_silent_server_are_listed_with_unknown_sizes(app, client):
    with Tarpit() as tarpit:
        add_target(app.test_cli_runner(), "silent", tarpit.url("shop"))
        with app.app_context():
            for name in ("shop_before_restore_1", "shop_before_restore_2", "shop_before_restore_3"):
                db.session.add(PreviousDatabase(name=name, database="shop", target="silent",
                                                server=f"postgresql://app@127.0.0.1:{tarpit.port}/"))
            db.session.commit()

        listed = within_half_a_minute(lambda: left_behind(app.test_cli_runner()))
        page = within_half_a_minute(lambda: text(client.get("/restores/")))

    assert [(item["name"], item["size_bytes"]) for item in listed] == [
        ("shop_before_restore_3", None), ("shop_before_restore_2", None), ("shop_before_restore_1", None)]
    assert page.count('<td data-field="size">unknown</td>') == 3


def test_confirmation_pages_of_what_is_not_left_behind_are_not_found(client):
    for path, message in (("/restores/drop/nosuch", "no database kept by a restore is called &#39;nosuch&#39;"),
                          ("/restores/stop/nosuch",
                           "no server left running by a point-in-time restore is called &#39;nosuch&#39;")):
        page = client.get(path)
        assert page.status_code == 404 and message in text(page), path


def test_a_restored_directory_without_pg_version_is_a_clear_error(app, client, tmp_path):
    data_dir = tmp_path / "no-version"
    data_dir.mkdir()
    (data_dir / "postmaster.pid").write_text("1\n")
    with app.app_context():
        db.session.add(Job(kind="pitr-restore", status=COMPLETED, database="shop", target="shop", slot="pitr:shop",
                           log="", finished_at=utcnow(), options={"data_dir": str(data_dir), "port": 5999}))
        db.session.commit()
    expected = (f"{data_dir} has no PG_VERSION: it is not a PostgreSQL data directory (any more); stop its server "
                "and remove it by hand")

    assert client.get("/restores/stop/no-version").status_code == 200, "it is listed"
    page = submit(client, "/restores/stop/no-version")
    result = invoke(app.test_cli_runner(), "restores", "stop", "no-version", "--yes", ok=False)

    assert page.status_code == 400 and expected in text(page)
    assert error_line(result) == f"Error: {expected}" and "Traceback" not in result.output
    assert data_dir.exists()


def test_a_restored_pitr_server_is_listed_then_stopped(pitr_app, pitr_cluster, receivers, data_root):
    runner = pitr_app.test_cli_runner()
    archiving(runner, receivers)
    inserted = insert_batch(pitr_cluster, 1)
    wait_for(lambda: covered(runner, inserted), what="the batch archived")
    data_dir = data_root / "left-running"
    out = json.loads(invoke(runner, "pitr", "restore", "shop", "--to", "latest", "--data-dir", str(data_dir),
                            "--json").stdout)

    [item] = left_behind(runner)
    assert item["kind"] == "pitr-server" and item["name"] == "left-running" and item["target"] == "shop"
    assert item["port"] == out["port"] and item["data_dir"] == str(data_dir)
    assert item["size_bytes"] > 1_000_000 and item["created_at"] and item["drop_at"] is None
    listed = invoke(runner, "restores", "list").stdout
    assert f"running on 127.0.0.1:{out['port']} in {data_dir}" in listed

    add_user(pitr_app)
    client = pitr_app.test_client()
    sign_in(client)
    assert 'data-name="left-running"' in text(client.get("/restores/"))

    unknown = invoke(runner, "restores", "stop", "nosuch", "--yes", ok=False)
    assert "no server left running by a point-in-time restore is called 'nosuch'" in error_line(unknown)
    stopped = invoke(runner, "restores", "stop", "left-running", "--yes").stdout
    assert f"Stopped the server on 127.0.0.1:{out['port']} and removed {data_dir}" in stopped
    assert not Path(data_dir).exists()
    assert left_behind(runner) == []
    assert ("cli", "restores-stop", "left-running") in audited(pitr_app)
