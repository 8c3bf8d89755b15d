"""The role table on every route of the URL map, for each role, so a new route without a rule fails."""
import pytest

from backup_app.extensions import db
from backup_app.models import ROLES, User
from backup_app.web.access import ROLE_NEEDED, allows, rank
from tests.security.routes import PUBLIC, all_routes, guarded_routes
from tests.security.test_access import unchanged
from tests.web_helpers import PASSWORD, add_backup, add_user, api_token, csrf_token, sign_in


def signed_in_as(app, role: str):
    """A client signed in as a user of `role` (bare_app's own user is the admin)."""
    email = f"{role}@example.com"
    if role != "admin":
        add_user(app, email, role=role)
    client = app.test_client()
    assert sign_in(client, email).status_code == 302
    return client


def test_every_route_has_a_rule_and_every_rule_a_route(bare_app):
    endpoints = {route.endpoint for route in guarded_routes(bare_app)}
    assert endpoints - set(ROLE_NEEDED) == set(), "a route without a rule (it needs admin until it has one)"
    assert set(ROLE_NEEDED) - endpoints == set(), "a rule for a route that does not exist"
    assert not set(ROLE_NEEDED) & PUBLIC


def test_the_rules_are_the_issue_s_promises():
    """viewer: pages, catalog, jobs, status, no download; operator: + create, verify, download; admin: the rest."""
    needed = {role: {endpoint for endpoint, rule in ROLE_NEEDED.items() if rule == role} for role in ROLES}
    assert {"backups.download", "api.download_backup", "backups.create", "api.create_backup", "backups.verify",
            "targets.run_now"} <= needed["operator"]
    assert {"backups.restore", "api.restore_backup", "api.restore_set", "backups.delete", "api.delete_backup",
            "targets.add", "targets.edit", "targets.remove", "settings.index", "users.index", "users.create",
            "restores.drop", "api.pitr_restore", "targets.pitr_restore"} <= needed["admin"]
    assert {"dashboard.index", "backups.index", "backups.detail", "jobs.index", "api.list_backups",
            "api.get_job", "account.index", "account.create_token"} <= needed["viewer"]


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_every_page_above_the_role_is_403_naming_the_role_and_changes_nothing(bare_app, role):
    add_backup(bare_app)
    client = signed_in_as(bare_app, role)
    token = csrf_token(client, "/account/")  # a valid form token: only the role stands in the way
    refused = [route for route in all_routes(bare_app)
               if not route.is_api and route.endpoint not in PUBLIC and not allows(role, route.endpoint)]
    assert refused
    for route in refused:
        response = route.call(client, data={"csrf_token": token, "confirm": "shop", "email": "x@example.com",
                                            "role": "admin", "database": "shop"})
        assert response.status_code == 403, route
        body = response.get_data(as_text=True)
        assert f"needs the {ROLE_NEEDED[route.endpoint]} role; you are" in body, route
        as_json = route.call(client, data={"csrf_token": token}, headers={"Accept": "application/json"})
        assert as_json.status_code == 403 and "role" in as_json.json["error"], route
    unchanged(bare_app)
    with bare_app.app_context():
        assert db.session.query(User).count() == 2, "no user was made, changed or deleted"
        assert {user.role for user in db.session.query(User)} == {"admin", role}


@pytest.mark.parametrize("role", ROLES)
def test_every_page_the_role_may_see_opens(bare_app, role):
    add_backup(bare_app)
    client = signed_in_as(bare_app, role)
    for route in all_routes(bare_app):
        if route.method == "GET" and not route.is_api and route.endpoint not in PUBLIC \
                and allows(role, route.endpoint):
            assert route.call(client).status_code not in (401, 403), route


@pytest.mark.parametrize("role", ROLES)
def test_every_api_call_above_the_token_s_role_is_403_and_changes_nothing(bare_app, role):
    add_backup(bare_app)
    if role != "admin":
        add_user(bare_app, f"{role}@example.com", role=role)
    headers = {"Authorization": f"Bearer {api_token(bare_app, f'{role}@example.com')}"}
    for route in (route for route in all_routes(bare_app) if route.is_api):
        if allows(role, route.endpoint):
            if route.method == "GET":
                assert route.call(bare_app.test_client(), headers=headers).status_code not in (401, 403), route
            continue
        response = route.call(bare_app.test_client(), headers=headers, json={"confirm": "shop"})
        assert response.status_code == 403, route
        assert response.json == {"error": f"this needs the {ROLE_NEEDED[route.endpoint]} role; you are "
                                          f"{'an' if role == 'operator' else 'a'} {role}"}
    unchanged(bare_app)


def test_a_token_with_a_lower_role_acts_with_it_and_one_without_follows_its_user(bare_app):
    add_backup(bare_app)
    scoped = {"Authorization": f"Bearer {api_token(bare_app, role='viewer')}"}
    following = {"Authorization": f"Bearer {api_token(bare_app)}"}
    client = bare_app.test_client()
    assert client.get("/api/backups/b1", headers=scoped).status_code == 200
    assert client.get("/api/backups/b1/download", headers=scoped).status_code == 403
    assert client.delete("/api/backups/b1", headers=scoped, json={"confirm": "shop"}).status_code == 403
    assert client.get("/api/backups/b1/download", headers=following).status_code == 200

    with bare_app.app_context():
        db.session.query(User).one().role = "operator"
        db.session.commit()
    assert client.delete("/api/backups/b1", headers=following).status_code == 403, "the user's role now"
    assert client.get("/api/backups/b1/download", headers=following).status_code == 200
    assert client.get("/api/backups/b1/download", headers=scoped).status_code == 403
    unchanged(bare_app)


def test_the_pages_show_only_what_the_role_may_use_in_the_header(bare_app):
    viewer = signed_in_as(bare_app, "viewer")
    header = viewer.get("/dashboard").get_data(as_text=True).split("</header>")[0]
    assert "/users/" not in header and "/settings/" not in header and "/backups/new" not in header
    assert "viewer" in header
    admin = bare_app.test_client()
    sign_in(admin, "admin@example.com", PASSWORD)
    header = admin.get("/dashboard").get_data(as_text=True).split("</header>")[0]
    assert "/users/" in header and "/settings/" in header and "/backups/new" in header


def test_rank_orders_the_roles():
    assert [rank(role) for role in ROLES] == [0, 1, 2] and rank(None) == rank("root") == -1
