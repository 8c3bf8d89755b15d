"""Buttons a user may not use are not shown: each main page, rendered for a viewer, an operator and an
admin, links, posts and polls only routes that user's role may use (backup_app.web.access), and shows
every one it may. The check is generic: every href, form action and hx-get/hx-post in the page (its
header too) is mapped back to its endpoint, so a new button without a `can(...)` guard fails here."""
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from flask import url_for

from backup_app.extensions import db
from backup_app.models import ADMIN, GLOBALS, OPERATOR, VIEWER, Backup, Job, PreviousDatabase, utcnow
from backup_app.web.access import allows
from tests.helpers import invoke
from tests.web_helpers import PASSWORD, add_backup, add_user, sign_in, text

pytestmark = pytest.mark.integration

ROLES = (VIEWER, OPERATOR, ADMIN)

# What an admin sees on the pages below; every other role sees the part of it its role allows.
ADMIN_ACTIONS = {
    "settings.index", "users.index", "backups.create", "backups.import_dump", "backups.download", "backups.verify",
    "backups.restore", "backups.restore_set", "backups.delete", "targets.add", "targets.edit", "targets.remove",
    "targets.run_now", "targets.test", "targets.pitr_enable", "targets.pitr_base_backup", "targets.pitr_verify",
    "targets.pitr_restore", "restores.drop", "restores.stop",
}
# What every role is shown, the viewer included: the pages that only read, its own account, signing out.
READ_PAGES = {
    "dashboard.index", "backups.index", "backups.detail", "backups.set_detail", "backups.storage",
    "backups.storage_table", "jobs.index", "jobs.row", "targets.index", "targets.retention", "targets.pitr_page",
    "restores.index", "audit.index", "account.index", "auth.logout",
}


class Actions(HTMLParser):
    """The (method, URL) of every link, form and htmx request of a page."""

    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.found.append(("GET", attrs["href"]))
        if tag == "form":
            self.found.append(((attrs.get("method") or "get").upper(), attrs.get("action") or ""))
        for method in ("get", "post", "put", "patch", "delete"):
            if attrs.get(f"hx-{method}"):
                self.found.append((method.upper(), attrs[f"hx-{method}"]))


def endpoints(app, page: str, html: str) -> set[str]:
    """The endpoints the page at `page` leads to (a form without an action posts to the page itself)."""
    parser = Actions()
    parser.feed(html)
    adapter = app.url_map.bind("localhost")
    found = set()
    for method, url in parser.found:
        parts = urlsplit(url or page)
        if parts.scheme or parts.netloc or not parts.path:  # elsewhere, or an anchor on this page
            continue
        endpoint, _args = adapter.match(parts.path, method=method)
        if endpoint != "static":
            found.add(endpoint)
    return found


@pytest.fixture
def seeded(app, runner, tmp_path, source_db):
    """A catalog with something behind every button: a backup, a set (its globals and one database), a
    removable target, a database a restore kept, a server a point-in-time restore left running, a job
    running. Returns the URLs of the main pages."""
    invoke(runner, "targets", "add", "gone", "--url", "postgresql://postgres@127.0.0.1:1/gone")
    add_backup(app, backup_id="b1", database=source_db)
    add_backup(app, b"-- roles", backup_id="g1", database="srv")
    add_backup(app, backup_id="d1", database="srv")
    data_dir = tmp_path / "left-running"
    data_dir.mkdir()
    (data_dir / "postmaster.pid").write_text("1\n")
    with app.app_context():
        for backup_id, source in (("g1", None), ("d1", "shop")):
            backup = db.session.get(Backup, backup_id)
            backup.set_id, backup.source_database = "s1", source
            backup.format = GLOBALS if source is None else backup.format
        db.session.add(PreviousDatabase(name=f"{source_db}_before_restore_1", database=source_db, target=source_db,
                                        server="postgresql://postgres@127.0.0.1:1/", backup_id="b1"))
        db.session.add(Job(kind="pitr-restore", status="completed", database=source_db, target=str(data_dir),
                           slot="pitr-restore", log="", finished_at=utcnow(),
                           options={"data_dir": str(data_dir), "port": 1}))
        db.session.add(Job(kind="create", status="running", database=source_db, target=source_db, slot="running"))
        db.session.commit()
    with app.test_request_context():
        return [url_for("dashboard.index"), url_for("backups.index"), url_for("backups.detail", backup_id="b1"),
                url_for("backups.detail", backup_id="g1"), url_for("backups.set_detail", set_id="s1"),
                url_for("targets.index"), url_for("targets.pitr_page", name=source_db), url_for("restores.index"),
                url_for("jobs.index")]


def signed_in(app, role: str):
    email = f"{role}@example.com"
    add_user(app, email, PASSWORD, role=role)
    client = app.test_client()
    assert sign_in(client, email).status_code == 302
    return client


def shown(app, client, pages: list[str]) -> dict[str, set[str]]:
    """The endpoints each page leads to."""
    found = {}
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        found[page] = endpoints(app, page, text(response))
    return found


@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_shown_exactly_the_actions_it_may_use(app, seeded, role):
    found = shown(app, signed_in(app, role), seeded)

    for page, leads_to in found.items():
        refused = {endpoint for endpoint in leads_to if not allows(role, endpoint)}
        assert not refused, f"{page} shows {role} a way to {sorted(refused)}"
    everything = set().union(*found.values())
    assert READ_PAGES <= everything, sorted(READ_PAGES - everything)
    expected = {endpoint for endpoint in ADMIN_ACTIONS if allows(role, endpoint)}
    assert everything - READ_PAGES == expected, f"{role} misses {sorted(expected - everything)}"


def test_a_viewer_is_told_who_can_act_where_an_admin_gets_the_button(app, seeded):
    viewer, admin = signed_in(app, VIEWER), signed_in(app, ADMIN)
    pages = {"backup": "/backups/b1", "set": "/backups/sets/s1", "restores": "/restores/", "pitr": seeded[6]}

    seen = {page: text(viewer.get(url)) for page, url in pages.items()}
    admins = {page: text(admin.get(url)) for page, url in pages.items()}

    assert 'class="actions"' not in seen["backup"].split("<main>")[1].split("<p>")[0], "no empty action bar"
    assert "An operator or an admin can verify it: that checks\n  every copy" in seen["backup"]
    assert "An admin can restore it onto a server." in seen["set"] and "Restore this set</button>" not in seen["set"]
    assert "<th></th>" not in seen["restores"] and "An admin can drop or stop them here." in seen["restores"]
    assert "An admin can start a restore." in seen["pitr"]
    assert 'class="actions"' in admins["backup"] and '"Verify now" checks\n  every copy' in admins["backup"]
    assert "Restore this set</button>" in admins["set"] and "An admin can" not in admins["set"]
    assert "<th></th>" in admins["restores"] and "An admin can" not in admins["restores"]
    assert "An admin can" not in admins["pitr"]


def test_a_viewer_opening_an_action_directly_gets_the_403_and_nothing_changes(app, seeded):
    viewer = signed_in(app, VIEWER)

    for url in ("/backups/b1/restore", "/backups/b1/delete", "/targets/new", "/restores/drop/x", "/backups/new"):
        response = viewer.get(url)
        assert response.status_code == 403, url
        assert "Ask an admin if you need it." in text(response), url
    assert "this needs the admin role; you are a viewer" in text(viewer.get("/backups/b1/restore")).lower()
    with app.app_context():
        assert db.session.get(Backup, "b1").status == "completed"


@pytest.mark.parametrize("role", [VIEWER, OPERATOR])
def test_empty_pages_say_who_can_act_instead_of_a_dead_link(bare_app, role):
    client = signed_in(bare_app, role)

    dashboard, backups, jobs, targets = (text(client.get(url)) for url in ("/dashboard", "/", "/jobs/", "/targets/"))

    assert "No databases yet: an admin can add one." in dashboard
    assert "No targets yet. An admin can add one." in targets
    if role == VIEWER:
        assert "No backups yet.\n  An operator or an admin can make one." in backups
        assert "No jobs yet.\n  An operator or an admin can start a backup." in jobs
    else:
        assert 'href="/backups/new">Create one</a>' in backups and 'href="/backups/new">Create a backup</a>' in jobs
    for page in (dashboard, backups, jobs, targets):
        assert {endpoint for endpoint in endpoints(bare_app, "/", page) if not allows(role, endpoint)} == set()
