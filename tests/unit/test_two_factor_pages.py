"""Two-factor sign-in through the Flask test client: enrolment on the account page, the second
sign-in step (a password alone never signs in, the pending marker opens no page, codes are not
taken twice), REQUIRE_2FA, turning it off, `flask users reset-2fa`, and what the audit log says."""
import re
import time

import pyotp
import pytest
from flask import render_template
from flask_login import login_user

from backup_app.extensions import db
from backup_app.models import AuditEvent, User
from backup_app.services import users
from backup_app.services.login_throttle import FREE_FAILURES
from backup_app.web.auth.two_factor import PENDING
from tests.helpers import invoke
from tests.security.routes import PUBLIC, all_routes
from tests.web_helpers import EMAIL, PASSWORD, add_user, sign_in, submit, text

PAGE = "/account/two-factor"


def code(secret: str, steps: int = 0) -> str:
    """The code `steps` time steps from now (the server takes one step either side)."""
    return pyotp.TOTP(secret).at(time.time() + 30 * steps)


def secret_on(page: str) -> str:
    start = page.index('data-field="totp-secret">') + len('data-field="totp-secret">')
    return page[start:page.index("</code>", start)].replace(" ", "")


def enrol(client) -> tuple[str, list[str]]:
    """Turn 2FA on for the signed-in client with a code of this step; its secret and recovery codes."""
    assert submit(client, f"{PAGE}/begin", form_url=PAGE).status_code == 302
    secret = secret_on(text(client.get(PAGE)))
    answer = submit(client, f"{PAGE}/confirm", {"code": code(secret)}, form_url=PAGE)
    assert answer.status_code == 200, text(answer)
    page = text(answer)
    return secret, re.findall(r"<li><code>([^<]+)</code></li>", page)


def user(app) -> User:
    with app.app_context():
        found = users.get_user(db.session, EMAIL)
        db.session.expunge(found)
        return found


def events(app, *actions) -> list[tuple[str, str, str, str]]:
    with app.app_context():
        rows = db.session.scalars(db.select(AuditEvent).order_by(AuditEvent.id)).all()
        return [(row.actor, row.action, row.subject, row.detail) for row in rows
                if not actions or row.action in actions]


@pytest.fixture
def enrolled(bare_app, bare_client):
    """`bare_app` whose user has 2FA on, signed out again; the secret and recovery codes."""
    secret, codes = enrol(bare_client)
    assert submit(bare_client, "/logout", form_url=PAGE).status_code == 302
    return secret, codes


def test_enrolment_shows_a_qr_code_and_is_on_only_after_a_right_code(bare_app, bare_client):
    page = text(bare_client.get(PAGE))
    assert "Off: your password alone signs you in" in page and "Set up two-factor sign-in" in page
    assert submit(bare_client, f"{PAGE}/begin", form_url=PAGE).status_code == 302
    page = text(bare_client.get(PAGE))
    assert '<img class="qr" src="data:image/svg+xml' in page
    secret = secret_on(page)
    assert len(secret) == 32 and not user(bare_app).two_factor_on

    wrong = "000000" if code(secret) != "000000" else "111111"
    answer = submit(bare_client, f"{PAGE}/confirm", {"code": wrong}, form_url=PAGE)
    assert answer.status_code == 400 and "the code is wrong" in text(answer)
    assert not user(bare_app).two_factor_on

    answer = submit(bare_client, f"{PAGE}/confirm", {"code": code(secret)}, form_url=PAGE)
    page = text(answer)
    assert answer.status_code == 200 and "Two-factor sign-in is on" in page and "save them somewhere safe now" in page
    assert page.count("<li><code>") == 10 and user(bare_app).two_factor_on
    assert "10 unused recovery codes left" in page and secret not in page
    again = text(bare_client.get(PAGE))
    assert "<li><code>" not in again and "10 unused recovery codes left" in again, "the codes are shown once"
    assert [event[1:] for event in events(bare_app, "2fa-enable", "2fa-enable-failed")] == [
        ("2fa-enable-failed", "", "refused: the code is wrong: enter the one your authenticator app shows now"),
        ("2fa-enable", "", "ok")]


def test_a_password_alone_never_signs_in_and_the_pending_marker_opens_no_page(bare_app, enrolled):
    secret, _ = enrolled
    client = bare_app.test_client()
    before = user(bare_app).last_sign_in_at
    answer = submit(client, "/login?next=/jobs/", {"email": EMAIL, "password": PASSWORD}, form_url="/login")
    assert answer.status_code == 302 and answer.headers["Location"] == "/login/2fa"
    assert user(bare_app).last_sign_in_at == before, "not signed in yet"
    prompt = text(client.get("/login/2fa"))
    assert "Enter the code from your authenticator app" in prompt
    for route in all_routes(bare_app):
        if route.method == "GET" and not route.is_api and route.endpoint not in PUBLIC:
            response = route.call(client)
            assert response.status_code == 302 and response.headers["Location"].startswith("/login?next="), route

    answer = submit(client, "/login/2fa", {"code": "12345"})
    assert answer.status_code == 401 and "Wrong code" in text(answer)
    assert client.get("/").status_code == 302

    answer = submit(client, "/login/2fa", {"code": code(secret, 1)})
    assert answer.status_code == 302 and answer.headers["Location"] == "/jobs/"
    assert client.get("/jobs/").status_code == 200 and user(bare_app).last_sign_in_at > before
    with client.session_transaction() as session:
        assert PENDING not in session
    assert events(bare_app, "sign-in", "sign-in-password", "sign-in-2fa", "sign-in-2fa-failed")[-3:] == [
        ("anonymous", "sign-in-password", EMAIL, "ok"),
        ("anonymous", "sign-in-2fa-failed", EMAIL, "refused: Wrong code: enter the one your authenticator app "
                                                   "shows now, or an unused recovery code"),
        (EMAIL, "sign-in-2fa", EMAIL, "ok")]


def test_a_code_is_not_taken_twice(bare_app, enrolled):
    secret, _ = enrolled
    client = bare_app.test_client()
    used = code(secret, 1)
    sign_in(client)
    assert submit(client, "/login/2fa", {"code": used}).status_code == 302
    assert submit(client, "/logout", form_url="/").status_code == 302

    sign_in(client)
    answer = submit(client, "/login/2fa", {"code": used})
    assert answer.status_code == 401 and "Wrong code" in text(answer)
    assert client.get("/").status_code == 302


def test_a_recovery_code_signs_in_once(bare_app, enrolled):
    _, codes = enrolled
    client = bare_app.test_client()
    sign_in(client)
    assert submit(client, "/login/2fa", {"code": codes[0]}).status_code == 302
    assert "9 unused recovery codes left" in text(client.get(PAGE))
    submit(client, "/logout", form_url="/")

    sign_in(client)
    answer = submit(client, "/login/2fa", {"code": codes[0]})
    assert answer.status_code == 401 and client.get("/").status_code == 302


def test_wrong_codes_count_toward_the_login_throttle(bare_app, enrolled, long_throttle_waits):
    _, codes = enrolled
    client = bare_app.test_client()
    sign_in(client)
    for _ in range(FREE_FAILURES):
        assert submit(client, "/login/2fa", {"code": "nope"}).status_code == 401
    answer = submit(client, "/login/2fa", {"code": codes[0]})
    assert answer.status_code == 429 and "Too many failed sign-ins for this account; try again in" in text(answer)
    assert client.get("/").status_code == 302
    sign_in(client)  # a right password again does not start the count over
    assert submit(client, "/login/2fa", {"code": codes[0]}).status_code == 429


def test_the_pending_marker_expires_and_ends_with_the_sessions(bare_app, enrolled):
    secret, _ = enrolled
    client = bare_app.test_client()
    sign_in(client)
    with client.session_transaction() as session:
        session[PENDING] = {**session[PENDING], "until": time.time() - 1}
    answer = client.get("/login/2fa", follow_redirects=True)
    assert "the code must follow the password within 5 minutes" in text(answer)
    with client.session_transaction() as session:
        assert PENDING not in session

    sign_in(client)
    invoke(bare_app.test_cli_runner(), "users", "reset-2fa", EMAIL)
    answer = submit(client, "/login/2fa", {"code": code(secret, 1)}, form_url="/login")
    assert answer.status_code == 302 and answer.headers["Location"] == "/login"
    assert client.get("/").status_code == 302
    assert events(bare_app, "sign-in-2fa-failed")[-1] == ("anonymous", "sign-in-2fa-failed", "", "refused: Sign in again.")

    answer = client.get("/login/2fa", follow_redirects=True)
    assert "Sign in with your email and password first." in text(answer)


def test_turning_it_off_needs_the_password_or_a_code(bare_app, bare_client):
    secret, _ = enrol(bare_client)
    answer = submit(bare_client, f"{PAGE}/disable", {"proof": "not my password"}, form_url=PAGE)
    assert answer.status_code == 400 and "neither a right code nor your password" in text(answer)
    assert user(bare_app).two_factor_on
    answer = submit(bare_client, f"{PAGE}/disable", {"proof": PASSWORD}, form_url=PAGE)
    assert answer.status_code == 302 and not user(bare_app).two_factor_on
    assert "Two-factor sign-in is off" in text(bare_client.get(PAGE))
    assert [event[1] for event in events(bare_app, "2fa-disable", "2fa-disable-failed")] == [
        "2fa-disable-failed", "2fa-disable"]
    assert sign_in(bare_app.test_client()).headers["Location"] == "/dashboard", "the password alone signs in again"


def test_new_recovery_codes_need_a_code_and_replace_the_old_ones(bare_app, bare_client):
    secret, old = enrol(bare_client)
    answer = submit(bare_client, f"{PAGE}/recovery-codes", {"code": old[0]}, form_url=PAGE)
    assert answer.status_code == 400 and "the code is wrong" in text(answer)
    answer = submit(bare_client, f"{PAGE}/recovery-codes", {"code": code(secret, 1)}, form_url=PAGE)
    assert answer.status_code == 200 and "the old ones no longer work" in text(answer)
    assert text(answer).count("<li><code>") == 10 and old[0] not in text(answer)
    assert [event[1:] for event in events(bare_app, "2fa-recovery-codes")] == [("2fa-recovery-codes", "", "ok")]


def test_require_2fa_sends_a_password_account_to_enrol_first(make_app):
    app = make_app(REQUIRE_2FA=True)
    with app.app_context():
        users.create_user(db.session, EMAIL, PASSWORD, app.config["PASSWORD_HASH_METHOD"])
        sso = User(email="sso@example.com", password_hash=None)
        db.session.add(sso)
        db.session.commit()
        sso_id = sso.get_id()
    client = app.test_client()
    assert sign_in(client).status_code == 302
    for url in ("/", "/dashboard", "/targets/", "/audit"):
        answer = client.get(url)
        assert answer.status_code == 302 and answer.headers["Location"] == PAGE, url
    assert client.get("/jobs/", headers={"Accept": "application/json"}).json == {
        "error": "two-factor sign-in must be set up first"}
    answer = submit(client, "/backups/new", {"database": "shop"}, form_url=PAGE)
    assert answer.status_code == 302 and answer.headers["Location"] == PAGE
    assert events(app, "create-failed")[-1][3] == "refused: two-factor sign-in must be set up first"
    assert "Two-factor sign-in is required here" in text(client.get(PAGE))

    secret, codes = enrol(client)
    assert len(codes) == 10 and client.get("/dashboard").status_code == 200

    sso_client = app.test_client()
    with sso_client.session_transaction() as session:
        session["_user_id"] = sso_id
    assert sso_client.get("/dashboard").status_code == 200, "single sign-on accounts are not affected"


def test_reset_2fa_turns_it_off_ends_the_sessions_and_is_audited(bare_app, bare_client):
    enrol(bare_client)
    runner = bare_app.test_cli_runner()
    result = invoke(runner, "users", "reset-2fa", EMAIL)
    assert "Two-factor sign-in of admin@example.com is off; their sessions have ended" in result.output
    assert not user(bare_app).two_factor_on and bare_client.get("/").status_code == 302
    result = invoke(runner, "users", "reset-2fa", EMAIL, ok=False)
    assert "Error: admin@example.com has no two-factor sign-in to reset" in result.output
    result = invoke(runner, "users", "reset-2fa", "nobody@example.com", ok=False)
    assert "Error: No user nobody@example.com" in result.output
    assert [event[:3] for event in events(bare_app, "users-reset-2fa", "users-reset-2fa-failed")] == [
        ("cli", "users-reset-2fa", EMAIL), ("cli", "users-reset-2fa-failed", EMAIL),
        ("cli", "users-reset-2fa-failed", "nobody@example.com")]


def test_an_admin_turns_two_factor_off_on_the_users_page(bare_app, bare_client):
    add_user(bare_app, "ops@example.com", role="operator")
    ops = bare_app.test_client()
    sign_in(ops, "ops@example.com")
    enrol(ops)
    row = text(bare_client.get("/users/")).split('data-email="ops@example.com"')[1].split("</tr>")[0]
    assert '<td data-label="Two-factor" data-field="two-factor">on</td>' in row and "Turn two-factor off" in row
    done = submit(bare_client, "/users/ops@example.com/reset-2fa", form_url="/users/")
    assert done.status_code == 302
    assert "Two-factor sign-in of ops@example.com is off" in text(bare_client.get("/users/"))
    assert ops.get("/dashboard").status_code == 302, "their sessions ended"
    again = submit(bare_client, "/users/ops@example.com/reset-2fa", form_url="/users/")
    assert again.status_code == 400 and "has no two-factor sign-in to reset" in text(again)
    assert [event[1:3] for event in events(bare_app, "users-reset-2fa", "users-reset-2fa-failed")] == [
        ("users-reset-2fa", "ops@example.com"), ("users-reset-2fa-failed", "ops@example.com")]


def test_an_enrolment_begun_under_another_key_is_begun_again_not_a_dead_end(make_app):
    from tests.helpers import new_key
    from tests.web_helpers import add_user as add

    first = make_app(APP_ENCRYPTION_KEY=new_key(), REQUIRE_2FA=True)
    add(first)
    client = first.test_client()
    sign_in(client)
    assert submit(client, f"{PAGE}/begin", form_url=PAGE).status_code == 302
    other = make_app(APP_ENCRYPTION_KEY=new_key(), REQUIRE_2FA=True)  # the same catalog, the key changed
    client = other.test_client()
    sign_in(client)
    page = client.get(PAGE)
    assert page.status_code == 200 and "data-field=\"totp-secret\"" not in text(page)
    assert submit(client, f"{PAGE}/begin", form_url=PAGE).status_code == 302
    secret = secret_on(text(client.get(PAGE)))
    assert submit(client, f"{PAGE}/confirm", {"code": code(secret)}, form_url=PAGE).status_code == 200


def test_the_account_page_part_says_the_state(bare_app, bare_client):
    def part() -> str:
        with bare_app.test_request_context():
            with bare_app.app_context():
                login_user(db.session.get(User, user(bare_app).id))
                return render_template("account/_two_factor.html")
    assert "Off: your password alone signs you in" in part()
    enrol(bare_client)
    assert "On since" in part()
    with bare_app.app_context():
        db.session.execute(db.update(User).values(password_hash=None, totp_enabled_at=None))
        db.session.commit()
    assert "single sign-on" in part()


def test_a_wrong_password_never_reaches_the_code_page(bare_app, enrolled):
    client = bare_app.test_client()
    answer = sign_in(client, password="wrong password")
    assert answer.status_code == 401 and "Wrong email or password" in text(answer)
    with client.session_transaction() as session:
        assert PENDING not in session
    assert client.get("/login/2fa").headers["Location"] == "/login"
