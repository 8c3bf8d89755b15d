"""`flask users …`, API tokens (scope, expiry, revocation, a disabled user), and the users and account pages."""
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from backup_app.errors import LastAdmin
from backup_app.extensions import db
from backup_app.models import ApiToken, AuditEvent, User
from backup_app.services import users as user_service
from tests.conftest import both_catalogs
from tests.web_helpers import EMAIL, PASSWORD, add_backup, add_user, api_token, sign_in, submit, text


def users(runner, *args, ok=True, input=None, code=1):
    """`flask users ARGS`; `ok` False: it must fail with exit `code` (2: bad usage)."""
    result = runner.invoke(args=["users", *args], input=input)
    assert result.exit_code == (0 if ok else code), result.output
    return result


def listed(runner) -> dict:
    return {user["email"]: user for user in json.loads(users(runner, "list", "--json").stdout)}


def secret_in(page: str) -> str:
    """The password or token a page shows once."""
    return re.search(r'data-field="secret">([^<]+)<', page).group(1)


def selected_role(page: str, email: str) -> str:
    row = page.split(f'data-email="{email}"')[1].split("</tr>")[0]
    return re.search(r'<option selected value="(\w+)"', row).group(1)


def audit_actions(app) -> list[tuple[str, str, str]]:
    with app.app_context():
        return [(event.actor, event.action, event.subject) for event in db.session.query(AuditEvent)
                .order_by(AuditEvent.id)]


@both_catalogs
def test_users_are_created_with_a_role_listed_changed_disabled_and_deleted(bare_app):
    runner = bare_app.test_cli_runner()
    assert "Created user ops@example.com (operator)" in \
        users(runner, "create", "Ops@example.com", "--role", "operator", "--password-stdin",
              input="a-long-password\n").output
    everyone = listed(runner)
    assert set(everyone) == {EMAIL, "ops@example.com"}
    assert everyone["ops@example.com"] == {"email": "ops@example.com", "role": "operator", "disabled": False,
                                           "created_at": everyone["ops@example.com"]["created_at"],
                                           "last_sign_in_at": None}
    assert everyone[EMAIL]["role"] == "admin", "the default role"

    users(runner, "set-role", "ops@example.com", "viewer")
    users(runner, "disable", "ops@example.com")
    assert listed(runner)["ops@example.com"]["disabled"] is True
    assert listed(runner)["ops@example.com"]["role"] == "viewer"
    users(runner, "enable", "ops@example.com")
    assert listed(runner)["ops@example.com"]["disabled"] is False

    bad_role = users(runner, "set-role", "ops@example.com", "root", ok=False, code=2)
    assert "Invalid value for 'ROLE': 'root' is not one of 'viewer', 'operator', 'admin'" in bad_role.output
    assert "Error: No user nobody@example.com" in users(runner, "disable", "nobody@example.com", ok=False).output

    users(runner, "token", "ops@example.com")
    no = users(runner, "delete", "ops@example.com", ok=False, input="n\n")
    assert "nothing changed" in no.output and "ops@example.com" in listed(runner)
    users(runner, "delete", "ops@example.com", "--yes")
    assert set(listed(runner)) == {EMAIL}
    with bare_app.app_context():
        assert db.session.query(ApiToken).count() == 0, "their tokens went with them"
    actions = [action for actor, action, _ in audit_actions(bare_app)]
    assert {"users-create", "users-set-role", "users-disable", "users-enable", "users-token", "users-delete",
            "users-set-role-failed", "users-disable-failed", "users-delete-failed"} <= set(actions)


def test_the_last_enabled_admin_cannot_be_demoted_disabled_or_deleted(bare_app):
    runner = bare_app.test_cli_runner()
    for args in (["set-role", EMAIL, "operator"], ["disable", EMAIL], ["delete", EMAIL, "--yes"]):
        refused = users(runner, *args, ok=False)
        assert f"Error: {EMAIL} is the last enabled admin; make another user an admin first" in refused.output
    assert listed(runner)[EMAIL] | {"created_at": None} == {"email": EMAIL, "role": "admin", "disabled": False,
                                                          "created_at": None, "last_sign_in_at": None}
    users(runner, "create", "second@example.com", "--password-stdin", input="a-long-password\n")
    users(runner, "set-role", EMAIL, "viewer")
    assert listed(runner)[EMAIL]["role"] == "viewer"


@both_catalogs
def test_two_admins_taking_each_other_away_at_once_leave_one(bare_app):
    """Two sessions (as two requests have) start together, one demoting the only admin, the other
    disabling a new one: one is refused, and an enabled admin is left — in every round."""
    start = threading.Barrier(2)

    def take_away(change, email: str) -> str:
        with bare_app.app_context():
            start.wait(timeout=30)
            try:
                change(db.session, email)
            except LastAdmin:
                return "refused"
            return "done"

    def demote(session, email: str) -> None:
        user_service.set_role(session, email, "operator")

    def enabled_admins() -> list[str]:
        with bare_app.app_context():
            return list(db.session.scalars(select(User.email).where(User.role == "admin", User.disabled.is_(False))))

    for n in range(5):
        [admin] = enabled_admins()
        add_user(bare_app, f"admin{n}@example.com", role="admin")
        with ThreadPoolExecutor(2) as pool:
            outcomes = list(pool.map(take_away, [demote, user_service.disable_user], [admin, f"admin{n}@example.com"]))
        assert sorted(outcomes) == ["done", "refused"], outcomes
        assert len(enabled_admins()) == 1


def test_reset_password_prints_a_new_one_once_or_reads_stdin_and_ends_sessions(bare_app):
    runner = bare_app.test_cli_runner()
    client = bare_app.test_client()
    assert sign_in(client).status_code == 302
    new = users(runner, "reset-password", EMAIL).stdout.strip()
    assert len(new) >= 16
    assert client.get("/dashboard").status_code == 302, "the session signed in before ended"
    assert sign_in(bare_app.test_client(), EMAIL, PASSWORD).status_code == 401
    assert sign_in(bare_app.test_client(), EMAIL, new).status_code == 302
    given = users(runner, "reset-password", EMAIL, "--password-stdin", input="another-long-one\n")
    assert given.stdout.strip() == "Password changed"
    assert sign_in(bare_app.test_client(), EMAIL, "another-long-one").status_code == 302
    short = users(runner, "reset-password", EMAIL, "--password-stdin", input="short\n", ok=False)
    assert "at least 8 characters" in short.output
    assert sign_in(bare_app.test_client(), EMAIL, "another-long-one").status_code == 302, "unchanged"
    with bare_app.app_context():
        events = db.session.query(AuditEvent).filter_by(action="users-reset-password").all()
        assert events and all(new not in (event.detail or "") for event in events)


@both_catalogs
def test_tokens_are_named_scoped_expiring_listed_without_secrets_and_revocable(bare_app):
    add_backup(bare_app)
    runner = bare_app.test_cli_runner()
    made = json.loads(users(runner, "token", EMAIL, "--name", "ci", "--role", "viewer", "--expires-in-days", "30",
                            "--json").stdout)
    assert set(made) == {"id", "token", "name", "role", "expires_at"}
    assert made["name"] == "ci" and made["role"] == "viewer" and made["expires_at"].endswith("Z")
    plain = users(runner, "token", EMAIL).stdout.strip()
    expired = json.loads(users(runner, "token", EMAIL, "--expires-in-days", "0", "--json").stdout)
    client = bare_app.test_client()

    def status(token, path="/api/backups/b1"):
        return client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code

    assert status(made["token"]) == 200 and status(made["token"], "/api/backups/b1/download") == 403
    assert status(plain, "/api/backups/b1/download") == 200
    assert status(expired["token"]) == 401

    tokens = json.loads(users(runner, "tokens", EMAIL, "--json").stdout)
    assert [token["name"] for token in tokens] == ["ci", "token", "token"]
    assert all(set(token) == {"id", "name", "role", "created_at", "expires_at", "last_used_at"} for token in tokens)
    assert tokens[0]["last_used_at"] is not None and tokens[2]["last_used_at"] is None
    assert made["token"] not in users(runner, "tokens", EMAIL).output

    users(runner, "revoke-token", str(made["id"]))
    assert status(made["token"]) == 401 and status(plain) == 200
    assert "Error: No API token 999" in users(runner, "revoke-token", "999", ok=False).output

    add_user(bare_app, "viewer@example.com", role="viewer")
    above = users(runner, "token", "viewer@example.com", "--role", "admin", ok=False)
    assert "may not have the admin role: theirs is viewer" in above.output
    with bare_app.app_context():
        assert db.session.query(ApiToken).count() == 2, "the refused token was not made"

    users(runner, "disable", EMAIL, ok=False)  # the last admin
    users(runner, "set-role", "viewer@example.com", "admin")
    users(runner, "disable", EMAIL)
    assert status(plain) == 401, "a disabled user's tokens stop at once"
    users(runner, "enable", EMAIL)
    assert status(plain) == 200
    subjects = [subject for _, action, subject in audit_actions(bare_app) if action == "users-revoke-token"]
    assert subjects == [f"{EMAIL} token {made['id']} (ci)"]


def test_a_disabled_user_is_signed_out_at_once_and_cannot_sign_in(bare_app):
    add_user(bare_app, "ops@example.com", role="operator")
    client = bare_app.test_client()
    assert sign_in(client, "ops@example.com").status_code == 302
    assert client.get("/dashboard").status_code == 200
    users(bare_app.test_cli_runner(), "disable", "ops@example.com")
    assert client.get("/dashboard").status_code == 302
    refused = sign_in(bare_app.test_client(), "ops@example.com")
    assert refused.status_code == 401 and "This account is disabled" in text(refused)
    wrong = sign_in(bare_app.test_client(), "ops@example.com", "a-wrong-password")
    assert "Wrong email or password" in text(wrong), "a wrong password says nothing of the account"


def test_the_users_page_creates_changes_resets_and_deletes(bare_app, bare_client):
    page = text(bare_client.get("/users/"))
    assert EMAIL in page and "(you)" in page

    made = submit(bare_client, "/users/", {"email": "new@example.com", "role": "operator"}, form_url="/users/")
    body = text(made)
    assert made.status_code == 200 and "Created new@example.com (operator)" in body
    shown = secret_in(body)
    assert selected_role(body, EMAIL) == "admin", "each row shows its user's role, not the form just sent"
    assert 'value="new@example.com"' not in body, "the add form is empty again"
    assert sign_in(bare_app.test_client(), "new@example.com", shown).status_code == 302
    assert shown not in text(bare_client.get("/users/")), "shown once"

    again = submit(bare_client, "/users/", {"email": "new@example.com", "role": "viewer"}, form_url="/users/")
    assert again.status_code == 409 and "A user new@example.com already exists" in text(again)
    bad = submit(bare_client, "/users/", {"email": "x@example.com", "role": "root"}, form_url="/users/")
    assert bad.status_code == 400 and "Not a valid choice" in text(bad)

    assert submit(bare_client, "/users/new@example.com/role", {"role": "viewer"}, form_url="/users/") \
        .status_code == 302
    assert submit(bare_client, "/users/new@example.com/disable", form_url="/users/").status_code == 302
    last = submit(bare_client, f"/users/{EMAIL}/disable", form_url="/users/")
    assert last.status_code == 409 and "is the last enabled admin" in text(last)
    reset = submit(bare_client, "/users/new@example.com/reset-password", form_url="/users/")
    assert reset.status_code == 200 and "Reset the password of new@example.com" in text(reset)
    with bare_app.app_context():
        user = db.session.query(User).filter_by(email="new@example.com").one()
        assert (user.role, user.disabled) == ("viewer", True)

    confirm = bare_client.get("/users/new@example.com/delete")
    assert "Delete the user new@example.com?" in text(confirm)
    gone = submit(bare_client, "/users/new@example.com/delete")
    assert gone.status_code == 302
    assert bare_client.get("/users/new@example.com/delete").status_code == 404
    actions = [action for actor, action, subject in audit_actions(bare_app) if actor == EMAIL]
    assert actions == ["sign-in", "users-create", "users-create-failed", "users-create-failed", "users-set-role",
                       "users-disable", "users-disable-failed", "users-reset-password", "users-delete"]


def test_the_account_page_changes_one_s_own_password(bare_app, bare_client):
    other = bare_app.test_client()
    sign_in(other)
    wrong = submit(bare_client, "/account/password", {"current": "not-it-at-all", "new": "a-new-password",
                                                      "repeat": "a-new-password"}, form_url="/account/")
    assert wrong.status_code == 400 and "the current password is wrong" in text(wrong)
    differ = submit(bare_client, "/account/password", {"current": PASSWORD, "new": "a-new-password",
                                                       "repeat": "another"}, form_url="/account/")
    assert differ.status_code == 400 and "The two differ." in text(differ)
    assert sign_in(bare_app.test_client(), EMAIL, PASSWORD).status_code == 302, "unchanged"

    done = submit(bare_client, "/account/password", {"current": PASSWORD, "new": "a-new-password",
                                                     "repeat": "a-new-password"}, form_url="/account/")
    assert done.status_code == 302
    assert bare_client.get("/account/").status_code == 200, "this session goes on"
    assert other.get("/dashboard").status_code == 302, "the other session ended"
    assert sign_in(bare_app.test_client(), EMAIL, "a-new-password").status_code == 302


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_the_tokens_page_makes_tokens_of_the_user_s_role_or_lower(bare_app, role):
    add_backup(bare_app)
    add_user(bare_app, "me@example.com", role=role)
    client = bare_app.test_client()
    sign_in(client, "me@example.com")
    page = text(client.get("/account/tokens"))
    assert "No API tokens yet." in page and 'value="admin"' not in page
    made = submit(client, "/account/tokens", {"name": "laptop", "role": "", "expires_in_days": "7"},
                  form_url="/account/tokens")
    secret = secret_in(text(made))
    assert made.status_code == 200 and secret.startswith("bk_")
    headers = {"Authorization": f"Bearer {secret}"}
    assert bare_app.test_client().get("/api/backups/b1", headers=headers).status_code == 200
    assert bare_app.test_client().get("/api/backups/b1/download", headers=headers).status_code == \
        (200 if role == "operator" else 403)
    above = submit(client, "/account/tokens", {"name": "x", "role": "admin"}, form_url="/account/tokens")
    assert above.status_code == 400 and "Not a valid choice" in text(above)
    listing = text(client.get("/account/tokens"))
    assert "laptop" in listing and secret not in listing

    with bare_app.app_context():
        token_id = db.session.query(ApiToken).filter_by(name="laptop").one().id
        admins_token = db.session.query(ApiToken).count()
    api_token(bare_app, EMAIL)
    with bare_app.app_context():
        admins_id = db.session.query(ApiToken).filter(ApiToken.id != token_id).one().id
    not_mine = submit(client, f"/account/tokens/{admins_id}/revoke", form_url="/account/tokens")
    assert not_mine.status_code == 404, "only one's own tokens"
    assert submit(client, f"/account/tokens/{token_id}/revoke", form_url="/account/tokens").status_code == 302
    assert bare_app.test_client().get("/api/backups/b1", headers=headers).status_code == 401
    with bare_app.app_context():
        assert db.session.query(ApiToken).count() == admins_token, "the admin's token is still there"


def test_a_single_sign_on_user_has_no_password_to_change_or_sign_in_with(bare_app):
    with bare_app.app_context():
        user_service.create_user(db.session, "sso@example.com", None, role="viewer")
    refused = sign_in(bare_app.test_client(), "sso@example.com", "anything-at-all")
    assert refused.status_code == 401 and "Wrong email or password" in text(refused)
    with bare_app.app_context():
        session_id = db.session.query(User).filter_by(email="sso@example.com").one().get_id()
    client = bare_app.test_client()
    with client.session_transaction() as session:  # signed in as single sign-on would
        session["_user_id"] = session_id
    page = text(client.get("/account/"))
    assert "You sign in through single sign-on" in page and "Change password" not in page
    forced = submit(client, "/account/password", {"current": "x", "new": "a-new-password",
                                                  "repeat": "a-new-password"}, form_url="/account/")
    assert forced.status_code == 400 and "there is no password here to change" in text(forced)
    by_cli = users(bare_app.test_cli_runner(), "reset-password", "sso@example.com", ok=False)
    assert "Error: sso@example.com signs in through single sign-on only: there is no password to reset" in \
        by_cli.output
    admin = bare_app.test_client()
    sign_in(admin)
    by_page = submit(admin, "/users/sso@example.com/reset-password", form_url="/users/")
    assert by_page.status_code == 400 and "there is no password to reset" in text(by_page)
    with bare_app.app_context():
        assert db.session.query(User).filter_by(email="sso@example.com").one().password_hash is None


@both_catalogs
def test_a_revoked_token_s_id_is_never_given_again_and_a_lowered_user_s_token_says_how_it_acts(bare_app):
    runner = bare_app.test_cli_runner()
    first = json.loads(users(runner, "token", EMAIL, "--role", "admin", "--json").stdout)
    users(runner, "revoke-token", str(first["id"]))
    second = json.loads(users(runner, "token", EMAIL, "--role", "admin", "--json").stdout)
    assert second["id"] > first["id"], "revoke-token ID and the audit log name tokens by id"
    users(runner, "create", "root@example.com", "--password-stdin", input="a-long-password\n")
    users(runner, "set-role", EMAIL, "viewer")
    assert "(acts as viewer)" in users(runner, "tokens", EMAIL).output
    assert json.loads(users(runner, "tokens", EMAIL, "--json").stdout)[0]["role"] == "admin", "the role it was given"
    client = bare_app.test_client()
    sign_in(client)
    assert "admin (acts as viewer)" in text(client.get("/account/tokens"))


def test_deleting_a_user_forgets_the_addresses_they_signed_in_from(bare_app):
    from backup_app.models import SignInAddress

    add_user(bare_app, "ops@example.com", role="operator")
    assert sign_in(bare_app.test_client(), "ops@example.com").status_code == 302
    users(bare_app.test_cli_runner(), "delete", "ops@example.com", "--yes")
    with bare_app.app_context():
        assert db.session.query(SignInAddress).filter_by(email="ops@example.com").count() == 0
