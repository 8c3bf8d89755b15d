"""The session: signing out ends it on the server (a copied cookie stops working), its cookie is
Secure whenever the request came over https, its key is never a built-in one; and no page or
API answer is kept in a cache."""
import pytest

from backup_app.extensions import db
from backup_app.models import User
from tests.security.routes import all_routes
from tests.web_helpers import EMAIL, add_backup, api_token, sign_in, submit


def test_a_cookie_copied_before_sign_out_no_longer_signs_in(bare_app):
    add_backup(bare_app)
    client, other_browser = bare_app.test_client(), bare_app.test_client()
    assert sign_in(client).status_code == 302 and sign_in(other_browser).status_code == 302
    copied = client.get_cookie("session").value
    token = api_token(bare_app)

    assert submit(client, "/logout", form_url="/").status_code == 302

    thief = bare_app.test_client()
    thief.set_cookie("session", copied)
    for url in ("/", "/backups/b1", "/targets/"):
        response = thief.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login?next="), url
    assert other_browser.get("/").status_code == 302, "signing out ends every session of that user"
    api = bare_app.test_client().get("/api/backups", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 200, "API tokens are not sessions: they keep working"
    assert sign_in(client).status_code == 302 and client.get("/").status_code == 200, "signing in again works"


def test_a_session_signed_in_before_the_upgrade_asks_to_sign_in_again(bare_app):
    """Sessions from before the session version held a bare user id: they no longer load a user."""
    with bare_app.app_context():
        user_id = db.session.query(User).filter_by(email=EMAIL).one().id
    client = bare_app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = str(user_id)
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("headers, base_url, secure", [
    ({}, "http://localhost", False),
    ({"X-Forwarded-Proto": "http"}, "http://localhost", False),
    ({"X-Forwarded-Proto": "https"}, "http://localhost", True),
    ({"X-Forwarded-Proto": "https, http"}, "http://localhost", True),
    ({}, "https://localhost", True),
], ids=["http", "proxy-http", "proxy-https", "proxy-chain", "https"])
def test_the_session_cookie_is_secure_whenever_the_request_came_over_https(bare_app, headers, base_url, secure):
    client = bare_app.test_client()
    page = client.get("/login", headers=headers, base_url=base_url)
    assert ("; Secure" in page.headers["Set-Cookie"]) is secure
    signed_in = sign_in(client)  # the helper sends no such header: only the request's own way counts
    assert "; Secure" not in signed_in.headers["Set-Cookie"]


def test_session_cookie_secure_forces_it_on_plain_http(make_app):
    app = make_app(SESSION_COOKIE_SECURE=True)
    assert "; Secure" in app.test_client().get("/login").headers["Set-Cookie"]


def test_debug_without_a_secret_key_refuses_to_start(make_app, monkeypatch):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    with pytest.raises(RuntimeError, match="SECRET_KEY is not set; FLASK_DEBUG does not make one up"):
        make_app(SECRET_KEY=None)
    assert make_app(SECRET_KEY="given").debug, "with a key (as `make run` and the tests give) it starts"


def test_no_page_api_answer_or_download_is_stored_by_a_cache(bare_app, bare_client):
    """Pages and answers may hold connection URLs (targets, restores, job results), downloads a
    backup's bytes: every response says no-store but static files, which keep their own."""
    add_backup(bare_app)
    anonymous = bare_app.test_client()
    token = {"Authorization": f"Bearer {api_token(bare_app)}"}
    for route in all_routes(bare_app):
        for client, headers in ((anonymous, {}), (bare_client, {}), (anonymous, token)):
            response = route.call(client, headers=headers)
            if route.endpoint == "static":
                assert "no-store" not in response.headers["Cache-Control"], route
            else:
                assert response.headers["Cache-Control"] == "no-store", (route, response.status_code)
    for url in ("/no/such/page", "/backups/b1/download", "/targets/shop/edit"):
        assert bare_client.get(url).headers["Cache-Control"] == "no-store", url
