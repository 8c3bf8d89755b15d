"""Sign-in, CSRF and tokens on every route of the URL map, so a new route is covered the day it is added."""
import pytest

from backup_app.extensions import db
from backup_app.models import Backup, Job
from tests.security.routes import PUBLIC, all_routes, guarded_routes
from tests.security.test_headers import assert_security_headers
from tests.web_helpers import add_backup, api_token, csrf_token

BAD_AUTHORIZATION = [{}, {"Authorization": "Bearer bk_not-a-token"}, {"Authorization": "Bearer "},
                     {"Authorization": "Basic eDp5"}, {"Authorization": "bk_not-a-token"}]


def unchanged(app) -> None:
    """The backup the requests aimed at is still there, and no job was queued."""
    with app.app_context():
        assert db.session.get(Backup, "b1") is not None
        assert db.session.query(Job).count() == 0


def test_the_public_routes_are_exactly_the_marked_ones(bare_app):
    endpoints = {route.endpoint for route in all_routes(bare_app)}
    assert PUBLIC <= endpoints, "a public exception names a route that no longer exists"
    marked = {endpoint for endpoint, view in bare_app.view_functions.items() if getattr(view, "is_public", False)}
    assert marked | {"static"} == PUBLIC


def test_every_page_redirects_to_sign_in_and_every_api_call_is_401(bare_app):
    add_backup(bare_app)
    client = bare_app.test_client()
    token = csrf_token(client, "/login")  # a valid form token, so only the sign-in check stands in the way
    for route in guarded_routes(bare_app):
        response = route.call(client, data={"csrf_token": token, "confirm": "shop"})
        if route.is_api:
            assert response.status_code == 401, route
        else:
            assert response.status_code == 302, route
            assert response.headers["Location"].startswith("/login?next="), route
        assert_security_headers(response)
        as_json = route.call(client, data={"csrf_token": token}, headers={"Accept": "application/json"})
        assert as_json.status_code == 401, route
    unchanged(bare_app)


def test_every_form_post_without_a_valid_csrf_token_is_400(bare_app, bare_client):
    add_backup(bare_app)
    other_session_token = csrf_token(bare_app.test_client(), "/login")
    posts = [route for route in all_routes(bare_app) if route.changes_state and not route.is_api]
    assert {"auth.login", "auth.logout", "backups.create", "backups.restore", "backups.delete"} <= \
        {route.endpoint for route in posts}
    for route in posts:
        for token in (None, "forged", other_session_token):
            data = {"database": "shop", "confirm": "shop"} | ({"csrf_token": token} if token else {})
            response = route.call(bare_client, data=data)
            assert response.status_code == 400, (route, token)
            assert "The form expired or was not sent from this site" in response.get_data(as_text=True)
    unchanged(bare_app)
    assert bare_client.get("/").status_code == 200, "still signed in: the sign-out form was refused too"


@pytest.mark.parametrize("headers", BAD_AUTHORIZATION, ids=["none", "unknown", "empty", "basic", "no-scheme"])
def test_every_api_call_without_a_valid_token_is_401(bare_app, bare_client, headers):
    add_backup(bare_app)
    api = [route for route in all_routes(bare_app) if route.is_api]
    assert len(api) >= 7
    for route in api:
        response = route.call(bare_app.test_client(), headers=headers, json={"confirm": "shop"})
        assert response.status_code == 401, route
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "API token" in response.json["error"]
        by_cookie = route.call(bare_client, headers=headers, json={"confirm": "shop"})
        assert by_cookie.status_code == 401, f"{route}: the API never takes the session cookie"
    unchanged(bare_app)


def test_a_valid_token_opens_the_api(bare_app):
    add_backup(bare_app)
    response = bare_app.test_client().get("/api/backups/b1",
                                          headers={"Authorization": f"Bearer {api_token(bare_app)}"})
    assert response.status_code == 200 and response.json["id"] == "b1"


def test_metrics_are_off_without_a_token_setting_and_need_the_token(make_app):
    off = make_app().test_client()
    assert off.get("/metrics").status_code == 404
    assert off.get("/metrics", headers={"Authorization": "Bearer anything"}).status_code == 404

    client = make_app(METRICS_TOKEN="s3cret-metrics").test_client()
    for headers in [*BAD_AUTHORIZATION, {"Authorization": "Bearer s3cret-metricsX"},
                    {"Authorization": "Bearer s3cret-metric"}]:
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert "s3cret" not in response.get_data(as_text=True)
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics"}).status_code == 200
