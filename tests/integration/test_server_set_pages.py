"""Server targets on the pages and the API: the targets form (every database, left-out ones), a
server target shown as one row with its newest set's databases under it, the set's page with its
restore form (typed server, URL never shown back), and /api/sets. Sets are made by `flask backup
create` of a server of the test's own; restores are only queued (no worker runs them here)."""
import json
import re

import pytest

from backup_app.extensions import db
from backup_app.models import RESTORE_SET, Backup, Job, Target
from devtools.localservers import PostgresCluster
from tests.conftest import both_catalogs
from tests.helpers import invoke, new_key
from tests.web_helpers import add_user, api_token, sign_in, submit, text

pytestmark = pytest.mark.integration

SERVER_SQL = """
CREATE DATABASE shop;
CREATE DATABASE crm;
CREATE DATABASE legacy;
CREATE DATABASE closed;
ALTER DATABASE closed ALLOW_CONNECTIONS false
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server of its own: shop, crm, legacy (left out by the target) and closed (allows no connections)."""
    cluster = PostgresCluster(tmp_path_factory.mktemp("server")).start()
    for statement in SERVER_SQL.strip().split(";\n"):
        cluster.psql(statement)
    cluster.psql("CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 100)", "shop")
    yield cluster
    cluster.stop()


def server_url(cluster, user: str = "postgres", password: str | None = None) -> str:
    return cluster.url("", user, password).rstrip("/") + "/"


def shown_server(cluster, user: str = "postgres") -> str:
    """The server as the pages show it and a restore's confirmation names it."""
    return f"postgresql://{user}@127.0.0.1:{cluster.port}/"


@pytest.fixture
def srv_app(make_app, s3_settings, tmp_path, server):
    """An app with a server target "srv" (legacy left out) whose queued jobs stay queued, and one user."""
    app = make_app(APP_ENCRYPTION_KEY=new_key(), RESTORE_ALLOWED_HOSTS="127.0.0.1", HUEY_IMMEDIATE=False,
                   HUEY_SQLITE_PATH=str(tmp_path / "huey.db"), **s3_settings)
    runner = app.test_cli_runner()
    invoke(runner, "storage", "init")
    invoke(runner, "targets", "add", "srv", "--url", server_url(server), "--all-databases", "--exclude", "legacy")
    add_user(app)
    return app


@pytest.fixture
def client(srv_app):
    client = srv_app.test_client()
    assert sign_in(client).status_code == 302
    return client


def make_set(app) -> dict:
    """`flask backup create --database srv --json`: the set it made."""
    return json.loads(invoke(app.test_cli_runner(), "backup", "create", "--database", "srv", "--json").stdout)


def jobs(app, kind: str) -> list[Job]:
    with app.app_context():
        found = db.session.query(Job).filter_by(kind=kind).all()
        db.session.expunge_all()
        return found


def rows(page: str, attribute: str, value: str) -> list[str]:
    """The <tr> elements of `page` whose `attribute` is `value`."""
    return re.findall(rf'<tr[^>]*{attribute}="{re.escape(value)}"[^>]*>.*?</tr>', page, re.S)


def target_row_and_members(page: str, name: str) -> tuple[str, list[str]]:
    """The target's own row and the rows of its set under it, in page order."""
    start = page.index(f'data-target="{name}"')
    after = page[start:]
    own, rest = after.split("</tr>", 1)
    members = []
    for chunk in rest.split("</tr>"):
        if 'class="set-member"' not in chunk:
            break
        members.append(chunk)
    return own, members


def member_database(row: str) -> str:
    return re.search(r'data-set-database="([^"]+)"', row).group(1)


SERVER_FORM = {"name": "whole", "host": "127.0.0.1", "user": "postgres", "dbname": "", "all_databases": "y",
               "exclude": "legacy, closed", "sslmode": "", "timezone": "UTC", "keep_days": "30", "keep_last": "3",
               "gfs_daily": "0", "gfs_weekly": "0", "gfs_monthly": "0", "format": "custom", "codec": "gzip"}


def stored_target(app, name: str) -> Target | None:
    with app.app_context():
        found = db.session.query(Target).filter_by(name=name).one_or_none()
        if found is not None:
            db.session.expunge(found)
        return found


def test_the_targets_form_adds_and_edits_a_server_target_whose_url_names_no_database(srv_app, client, server):
    form = {**SERVER_FORM, "port": str(server.port), "password": server.password}
    page = text(client.get("/targets/new"))
    assert "Every database of the server" in page
    assert "Role passwords are in it only when the user may read them (a superuser)" in page
    assert "--no-role-passwords" in page

    added = submit(client, "/targets/new", form, follow_redirects=True)

    assert "Added whole." in text(added)
    target = stored_target(srv_app, "whole")
    assert (target.all_databases, target.excluded, target.dbname) == (True, ["legacy", "closed"], "postgres")
    row = rows(text(added), "data-target", "whole")[0]
    assert f"postgresql://postgres@127.0.0.1:{server.port}/ (every database)" in row
    assert "leaves out legacy, closed" in row and "no set yet" in row
    edit = text(client.get("/targets/whole/edit"))
    assert 'value="legacy, closed"' in edit and server.password not in edit

    saved = submit(client, "/targets/whole/edit", {**form, "password": "", "exclude": "legacy"},
                   follow_redirects=True)

    assert "Saved whole." in text(saved) and "forgotten" not in text(saved)
    target = stored_target(srv_app, "whole")
    assert target.excluded == ["legacy"] and target.password_encrypted, "the password is kept: same server"


@pytest.mark.parametrize(("changes", "error"), [
    ({"all_databases": ""}, "Give the database&#39;s name, or tick every database of the server."),
    ({"all_databases": "", "dbname": "shop"},
     "Databases are left out of a server target only: tick every database of the server, or leave this empty."),
])
def test_a_single_target_needs_a_database_and_leaves_nothing_out(srv_app, client, server, changes, error):
    response = submit(client, "/targets/new", {**SERVER_FORM, "port": str(server.port), **changes})

    assert response.status_code == 200 and error in text(response)
    assert stored_target(srv_app, "whole") is None


@both_catalogs  # the databases a run left out are read from its job's JSON options
def test_a_server_target_is_one_row_with_its_newest_sets_databases_under_it(srv_app, client):
    make_set(srv_app)
    newest = make_set(srv_app)

    for path in ("/dashboard", "/targets/"):
        page = text(client.get(path))
        assert page.count('data-target="srv"') == 1, path
        own, members = target_row_and_members(page, "srv")
        assert f"set {newest['set_id']}" in own and "(3 databases)" in own, path
        assert [member_database(row) for row in members] == ["globals", "crm", "postgres", "shop", "closed"], path
        by_name = dict(zip(["globals", "crm", "postgres", "shop", "closed"], members))
        shop = next(b for b in newest["backups"] if b["source_database"] == "shop")
        assert f'/backups/{shop["id"]}"' in by_name["shop"] and "completed" in by_name["shop"], path
        assert "roles and settings (globals)" in by_name["globals"]
        assert "left out" in by_name["closed"] and "it does not allow connections" in by_name["closed"], path
        assert "legacy" not in "".join(members), "excluded: not a database of the set, not left out by a run"


def test_the_backups_list_and_a_backups_page_name_its_set_and_source_database(srv_app, client):
    made = make_set(srv_app)
    crm = next(b for b in made["backups"] if b["source_database"] == "crm")
    globals_backup = next(b for b in made["backups"] if b["format"] == "globals")

    listing = text(client.get("/"))
    crm_row = rows(listing, "data-backup-id", crm["id"])[0]
    assert f'href="/backups/sets/{made["set_id"]}"' in crm_row and "crm ·" in crm_row
    assert "globals ·" in rows(listing, "data-backup-id", globals_backup["id"])[0]
    detail = text(client.get(f"/backups/{crm['id']}"))
    assert f'href="/backups/sets/{made["set_id"]}"' in detail
    assert re.search(r'data-field="source-database">crm<', detail)


def test_the_set_page_lists_the_globals_first_and_says_where_it_restores(srv_app, client, server):
    made = make_set(srv_app)

    page = text(client.get(f"/backups/sets/{made['set_id']}"))

    listed = re.findall(r'<tr data-backup-id="[^"]+" data-set-database="([^"]+)"', page)
    assert listed == ["globals", "crm", "postgres", "shop"]
    assert "it does not allow connections" in rows(page, "data-set-database", "closed")[0]
    assert f'data-field="own-server">{shown_server(server)}<' in page
    assert "those missing on the server are created from the set's globals backup" in page
    assert server.password not in page
    assert client.get("/backups/sets/nope").status_code == 404
    assert "Backup set not found: nope" in text(client.get("/backups/sets/nope"))


def test_a_set_restore_from_the_page_needs_the_server_typed_and_never_shows_its_password(srv_app, client, server):
    made = make_set(srv_app)
    url = f"/backups/sets/{made['set_id']}/restore"
    with_password = server_url(server, password="url-secret-pw")

    wrong = submit(client, url, {"target_url": with_password, "confirm": made["set_id"]},
                   form_url=f"/backups/sets/{made['set_id']}")

    assert wrong.status_code == 400
    assert f"Confirmation does not match: type the server &#39;{shown_server(server)}&#39;" in text(wrong)
    assert "url-secret-pw" not in text(wrong) and server.password not in text(wrong)
    assert f'value="postgresql://postgres@127.0.0.1:{server.port}/"' in text(wrong), "the URL is kept, not its password"
    elsewhere = submit(client, url, {"target_url": "postgresql://postgres:pw@db.example.com/",
                                     "confirm": "postgresql://postgres@db.example.com/"},
                       form_url=f"/backups/sets/{made['set_id']}")
    assert elsewhere.status_code == 400 and "db.example.com" in text(elsewhere)
    assert jobs(srv_app, RESTORE_SET) == [], "nothing queued"

    queued = submit(client, url, {"target_url": with_password, "confirm": shown_server(server),
                                  "drop_previous": "y"}, form_url=f"/backups/sets/{made['set_id']}")

    assert queued.status_code == 302 and queued.headers["Location"].startswith("/jobs/?highlight=")
    [job] = jobs(srv_app, RESTORE_SET)
    assert queued.headers["Location"].endswith(job.id)
    assert (job.status, job.target, job.database) == ("queued", shown_server(server), "srv")
    assert job.options == {"set_id": made["set_id"], "drop_previous": True}
    assert "url-secret-pw" not in json.dumps(job.options) + job.log + job.target


def test_the_set_api_shows_a_set_and_queues_its_restore_after_the_server_is_confirmed(srv_app, server):
    made = make_set(srv_app)
    api = srv_app.test_client()
    headers = {"Authorization": f"Bearer {api_token(srv_app)}"}
    restore = f"/api/sets/{made['set_id']}/restore"

    shown = api.get(f"/api/sets/{made['set_id']}", headers=headers).get_json()
    assert (shown["set_id"], shown["database"]) == (made["set_id"], "srv")
    assert [b["source_database"] for b in shown["backups"]] == [None, "crm", "postgres", "shop"]
    assert shown["backups"][0]["format"] == "globals" and {b["set_id"] for b in shown["backups"]} == {made["set_id"]}
    missing = api.get("/api/sets/nope", headers=headers)
    assert (missing.status_code, missing.get_json()) == (404, {"error": "Backup set not found: nope"})
    assert api.post("/api/sets/nope/restore", headers=headers,
                    json={"confirm": shown_server(server)}).status_code == 404
    for body, error in [
            ({}, f"Confirmation does not match: type the server '{shown_server(server)}'"),
            ({"confirm": made["set_id"]}, f"Confirmation does not match: type the server '{shown_server(server)}'"),
            ({"confirm": shown_server(server), "drop_previous": "yes"}, "'drop_previous' must be true or false"),
            ({"confirm": "postgresql://postgres@db.example.com/", "target_url": "postgresql://db.example.com/"},
             "db.example.com")]:
        refused = api.post(restore, headers=headers, json=body)
        assert refused.status_code == 400 and error in refused.get_json()["error"], (body, refused.get_json())
    assert jobs(srv_app, RESTORE_SET) == [], "nothing queued"

    accepted = api.post(restore, headers=headers, json={"confirm": shown_server(server)})

    assert accepted.status_code == 202
    [job] = jobs(srv_app, RESTORE_SET)
    assert accepted.get_json() == {"job_id": job.id} and job.options["drop_previous"] is False
    again = api.post(restore, headers=headers, json={"confirm": shown_server(server)})
    assert again.status_code == 409 and "error" in again.get_json()


def test_a_set_whose_globals_failed_cannot_be_restored(srv_app, client, server):
    made = make_set(srv_app)
    with srv_app.app_context():
        db.session.get(Backup, made["backups"][0]["id"]).status = "failed"
        db.session.commit()

    page = text(client.get(f"/backups/sets/{made['set_id']}"))
    refused = srv_app.test_client().post(f"/api/sets/{made['set_id']}/restore", json={"confirm": shown_server(server)},
                                         headers={"Authorization": f"Bearer {api_token(srv_app)}"})

    assert "This set cannot be restored: the globals backup of set" in page and "Restore this set</button>" not in page
    assert refused.status_code == 409 and "did not complete" in refused.get_json()["error"]
    assert jobs(srv_app, RESTORE_SET) == []


def test_the_api_queues_a_set_for_a_server_target(srv_app):
    api = srv_app.test_client()

    accepted = api.post("/api/backups", json={"database": "srv"},
                        headers={"Authorization": f"Bearer {api_token(srv_app)}"})

    assert accepted.status_code == 202
    [job] = jobs(srv_app, "create")
    assert accepted.get_json() == {"job_id": job.id}
    assert (job.status, job.database, job.backup_id) == ("queued", "srv", None) and job.options["set_id"]
