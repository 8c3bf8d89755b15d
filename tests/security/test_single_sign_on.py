"""Single sign-on's accounts (bound to the provider's identity, never taken over by an email) and
its settings (checked as the app starts); the whole flow runs in tests/browser/test_oidc_flow.py."""
import pytest
from sqlalchemy import select

from backup_app.errors import SignInRefused
from backup_app.extensions import db
from backup_app.models import AuditEvent, User
from backup_app.services import sso, users
from tests.web_helpers import EMAIL, PASSWORD, add_user, sign_in, text

ISSUER = "https://id.example.com"
POLICY = sso.Policy(role_map={"backup-admins": "admin", "ops": "operator"}, default_role="viewer")
OIDC = {"OIDC_ISSUER": ISSUER, "OIDC_CLIENT_ID": "backup-app", "OIDC_CLIENT_SECRET": "s3cret"}


def claims(sub="u1", email="alice@example.com", **extra):
    return {"sub": sub, "email": email, "email_verified": True, **extra}


@pytest.fixture
def session(make_app):
    with make_app().app_context():
        yield db.session


def test_the_first_sign_in_makes_a_user_without_password_and_later_ones_refresh_the_role(session):
    users.create_user(session, "root@example.com", None, role="admin")  # so alice is not the last admin
    user = sso.sign_in(session, ISSUER, claims(groups=["ops"]), POLICY)
    assert (user.email, user.role, user.password_hash, user.sso_issuer, user.sso_subject) == \
        ("alice@example.com", "operator", None, ISSUER, "u1")
    assert user.last_sign_in_at is not None

    assert sso.sign_in(session, ISSUER, claims(groups=["backup-admins"]), POLICY).role == "admin"
    assert sso.sign_in(session, ISSUER, claims(groups=[]), POLICY).role == "viewer"
    assert session.scalar(select(User.role).where(User.email == "alice@example.com")) == "viewer"
    assert len(users.list_users(session)) == 2


def test_a_renamed_email_at_the_provider_follows_the_same_user(session):
    first = sso.sign_in(session, ISSUER, claims(email="alice@example.com"), POLICY)
    again = sso.sign_in(session, ISSUER, claims(email="alice.smith@example.com"), POLICY)
    assert again.id == first.id and again.email == "alice.smith@example.com"


def test_an_existing_account_is_bound_at_its_first_sign_in_and_then_to_that_identity_only(session):
    users.create_user(session, "root@example.com", PASSWORD, "pbkdf2:sha256:1000", role="admin")
    users.create_user(session, "alice@example.com", PASSWORD, "pbkdf2:sha256:1000", role="admin")
    bound = sso.sign_in(session, ISSUER, claims(groups=["ops"]), POLICY)
    assert (bound.sso_subject, bound.role, bound.password_hash is not None) == ("u1", "operator", True)

    # Someone else at the provider who comes to hold alice's address cannot take her account.
    with pytest.raises(SignInRefused) as raised:
        sso.sign_in(session, ISSUER, claims(sub="intruder", groups=["backup-admins"]), POLICY)
    assert str(raised.value) == "The account alice@example.com belongs to another identity at the provider"
    # Nor can a bound user rename themselves onto another account's address.
    users.create_user(session, "bob@example.com", None, role="viewer")
    with pytest.raises(SignInRefused) as raised:
        sso.sign_in(session, ISSUER, claims(email="bob@example.com", groups=["backup-admins"]), POLICY)
    assert str(raised.value) == ("Your email at the provider is now bob@example.com, which another account "
                                 "here has")
    session.rollback()
    assert [(user.email, user.role, user.sso_subject) for user in users.list_users(session)] == \
        [("alice@example.com", "operator", "u1"), ("bob@example.com", "viewer", None),
         ("root@example.com", "admin", None)]


def test_a_disabled_user_is_refused_and_nothing_changes(session):
    users.create_user(session, "alice@example.com", None, role="viewer")
    users.create_user(session, "root@example.com", None, role="admin")
    users.disable_user(session, "alice@example.com")
    with pytest.raises(SignInRefused, match="This account is disabled; ask an admin to enable it"):
        sso.sign_in(session, ISSUER, claims(groups=["backup-admins"]), POLICY)
    session.rollback()
    alice = users.get_user(session, "alice@example.com")
    assert (alice.role, alice.sso_subject, alice.last_sign_in_at) == ("viewer", None, None)


def test_a_refused_identity_makes_no_user(session):
    strict = sso.Policy(role_map=POLICY.role_map)
    with pytest.raises(SignInRefused, match="No role for you here"):
        sso.sign_in(session, ISSUER, claims(groups=["staff"]), strict)
    assert users.list_users(session) == []


@pytest.mark.parametrize(("settings", "message"), [
    ({"LOCAL_LOGIN": False}, "LOCAL_LOGIN=false turns password sign-in off, but OIDC_ISSUER is not set: "
                             "nobody could sign in"),
    ({"OIDC_ROLE_MAP": "ops=boss"}, "OIDC_ROLE_MAP: 'boss' (for 'ops') is not a role"),
    ({"OIDC_DEFAULT_ROLE": "guest"}, "OIDC_DEFAULT_ROLE: 'guest' is not a role"),
    ({"OIDC_ISSUER": ISSUER}, "OIDC_ISSUER is set: OIDC_CLIENT_ID and OIDC_CLIENT_SECRET are needed too"),
    ({**OIDC, "OIDC_SCOPES": "email"}, "OIDC_SCOPES must include openid, not 'email'"),
])
def test_misconfigured_single_sign_on_stops_the_start_saying_why(make_app, settings, message):
    with pytest.raises(ValueError) as raised:
        make_app(**settings)
    assert str(raised.value).startswith(message)


def test_without_an_issuer_there_is_no_sso_button_and_its_routes_are_404(make_app):
    client = make_app().test_client()
    assert "Sign in with" not in text(client.get("/login"))
    assert client.get("/login/oidc").status_code == 404
    assert client.get("/login/oidc/callback?code=x&state=y").status_code == 404


def test_with_local_login_off_the_password_form_is_gone_and_a_password_post_is_refused(make_app):
    app = make_app(LOCAL_LOGIN=False, OIDC_PROVIDER_NAME="Sign in with Keycloak", **OIDC)
    add_user(app)
    client = app.test_client()
    page = text(client.get("/login"))
    assert "Sign in with Keycloak" in page and 'type="password"' not in page
    assert "csrf_token" not in page  # no form: a password POST fails its CSRF check before anything else

    app.config["WTF_CSRF_ENABLED"] = False  # past that first check, the view refuses it too
    response = client.post("/login", data={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 403
    assert "Signing in with a password is turned off here: use single sign-on" in text(response)
    assert client.get("/").status_code == 302  # still not signed in
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).order_by(AuditEvent.id.desc()))
        assert (event.actor, event.action, event.detail) == (
            "anonymous", "sign-in-failed", "refused: Signing in with a password is turned off here: use single sign-on")
        assert users.get_user(db.session, EMAIL).last_sign_in_at is None


def test_with_both_on_the_page_offers_the_form_and_the_button(make_app):
    app = make_app(OIDC_PROVIDER_NAME="Sign in with Keycloak", **OIDC)
    add_user(app)
    client = app.test_client()
    page = text(client.get("/login?next=/jobs/"))
    assert 'type="password"' in page
    assert 'href="/login/oidc?next=/jobs/"' in page and "Sign in with Keycloak" in page
    assert sign_in(client).status_code == 302


def test_a_callback_this_browser_did_not_start_is_refused_before_the_provider_is_asked(make_app):
    app = make_app(**OIDC)  # the issuer does not exist: nothing may be fetched from it
    client = app.test_client()
    response = client.get("/login/oidc/callback?code=stolen&state=forged")
    assert response.status_code == 400
    assert "This sign-in was not started in this browser (its state does not match); start again" in text(response)
    assert client.get("/").status_code == 302
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).order_by(AuditEvent.id.desc()))
        assert (event.action, event.detail) == ("sign-in-failed", "refused: This sign-in was not started in this "
                                                "browser (its state does not match); start again")
        assert users.list_users(db.session) == []


@pytest.mark.parametrize("verified", [None, False, "false"], ids=["absent", "false", "false-string"])
def test_an_existing_account_is_never_bound_by_an_email_the_provider_does_not_say_is_verified(session, verified):
    users.create_user(session, "admin@corp.example", PASSWORD, "pbkdf2:sha256:1000", role="admin")
    person = {"sub": "attacker", "email": "admin@corp.example", "groups": ["ops"]}
    if verified is not None:
        person["email_verified"] = verified
    with pytest.raises(SignInRefused) as raised:
        sso.sign_in(session, ISSUER, person, POLICY)
    assert "admin@corp.example" in str(raised.value) and ("does not say that this email is verified" in
                                                          str(raised.value) or "not verified" in str(raised.value))
    session.rollback()
    user = users.get_user(session, "admin@corp.example")
    assert (user.sso_subject, user.role) == (None, "admin"), "not bound, not changed"
    fresh = sso.sign_in(session, ISSUER, {"sub": "n1", "email": "new@corp.example"}, POLICY)
    assert fresh.role == "viewer", "a new account may be made from an email the provider does not qualify"


def test_an_account_with_two_factor_is_not_bound_by_single_sign_on(session):
    user = users.create_user(session, "alice@example.com", PASSWORD, "pbkdf2:sha256:1000", role="viewer")
    user.totp_secret, user.totp_enabled_at = "plain:JBSWY3DPEHPK3PXP", user.created_at
    session.commit()
    with pytest.raises(SignInRefused) as raised:
        sso.sign_in(session, ISSUER, claims(), POLICY)
    assert "has two-factor sign-in" in str(raised.value)
    session.rollback()
    assert users.get_user(session, "alice@example.com").sso_subject is None


def test_single_sign_on_never_demotes_the_last_enabled_admin(session):
    sso.sign_in(session, ISSUER, claims(groups=["backup-admins"]), POLICY)
    with pytest.raises(SignInRefused) as raised:
        sso.sign_in(session, ISSUER, claims(groups=["ops"]), POLICY)
    assert str(raised.value) == ("The provider now gives you the operator role, but alice@example.com is the "
                                 "last enabled admin; make another user an admin first")
    session.rollback()
    assert users.get_user(session, "alice@example.com").role == "admin"
    users.create_user(session, "bob@example.com", PASSWORD, "pbkdf2:sha256:1000", role="admin")
    assert sso.sign_in(session, ISSUER, claims(groups=["ops"]), POLICY).role == "operator"
