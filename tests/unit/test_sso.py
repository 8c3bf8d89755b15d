"""Single sign-on's settings and its claims → email and role (services/sso.py)."""
import pytest

from backup_app.errors import SignInRefused
from backup_app.services import sso

POLICY = sso.Policy(roles_claim="groups", role_map={"backup-admins": "admin", "ops": "operator"})


def claims(**extra):
    return {"sub": "u1", "email": "Alice@Example.com", "email_verified": True, **extra}


def test_the_role_map_reads_group_equals_role_pairs():
    assert sso.parse_role_map(" backup-admins=admin, ops = operator ,,") == {"backup-admins": "admin",
                                                                           "ops": "operator"}
    assert sso.parse_role_map("") == {}
    assert sso.parse_role_map("cn=admins=admin") == {"cn=admins": "admin"}  # the last = splits


@pytest.mark.parametrize(("text", "message"), [
    ("backup-admins", "OIDC_ROLE_MAP: 'backup-admins' is not group=role (e.g. backup-admins=admin)"),
    ("=admin", "OIDC_ROLE_MAP: '=admin' is not group=role (e.g. backup-admins=admin)"),
    ("ops=root", "OIDC_ROLE_MAP: 'root' (for 'ops') is not a role; the roles are viewer, operator, admin"),
    ("ops=admin,ops=viewer", "OIDC_ROLE_MAP names 'ops' twice"),
])
def test_a_bad_role_map_is_refused_saying_why(text, message):
    with pytest.raises(ValueError) as raised:
        sso.parse_role_map(text)
    assert str(raised.value) == message


def test_the_default_role_must_be_a_role():
    assert sso.parse_role("OIDC_DEFAULT_ROLE", " viewer ") == "viewer"
    assert sso.parse_role("OIDC_DEFAULT_ROLE", None) is None
    with pytest.raises(ValueError, match="OIDC_DEFAULT_ROLE: 'guest' is not a role"):
        sso.parse_role("OIDC_DEFAULT_ROLE", "guest")


def test_allowed_domains_are_lowercased_without_their_at():
    assert sso.parse_domains("Example.com, @corp.example  x.test") == {"example.com", "corp.example", "x.test"}
    assert sso.parse_domains("") == frozenset()


def test_the_highest_mapped_role_wins():
    assert sso.role_for(claims(groups=["staff", "ops", "backup-admins"]), POLICY) == "admin"
    assert sso.role_for(claims(groups=["ops", "staff"]), POLICY) == "operator"


@pytest.mark.parametrize("value", ["ops staff", "staff,ops", ["staff", "ops", 7]])
def test_the_roles_claim_may_be_a_list_or_a_string(value):
    assert sso.role_for(claims(groups=value), POLICY) == "operator"


def test_a_dotted_claim_reaches_into_objects():
    policy = sso.Policy(roles_claim="realm_access.roles", role_map={"backup-admin": "admin"})
    assert sso.role_for(claims(realm_access={"roles": ["offline", "backup-admin"]}), policy) == "admin"


def test_with_no_mapped_group_the_default_role_applies():
    policy = sso.Policy(role_map=POLICY.role_map, default_role="viewer")
    assert sso.role_for(claims(groups=["staff"]), policy) == "viewer"
    assert sso.role_for(claims(), policy) == "viewer"


def test_with_no_mapped_group_and_no_default_the_sign_in_is_refused_saying_why():
    with pytest.raises(SignInRefused) as raised:
        sso.role_for(claims(groups=["staff", "sales"]), POLICY)
    assert str(raised.value) == ("No role for you here: none of your groups (staff, sales) is in OIDC_ROLE_MAP, "
                                 "and there is no default role. Ask an admin.")
    with pytest.raises(SignInRefused) as raised:
        sso.role_for(claims(), POLICY)
    assert str(raised.value) == ("No role for you here: the provider sent no groups in its 'groups' claim, "
                                 "and there is no default role. Ask an admin.")


def test_the_email_is_normalized_and_must_be_verified_and_allowed():
    policy = sso.Policy(role_map=POLICY.role_map, allowed_domains=frozenset({"example.com"}))
    assert sso.identity(claims(groups=["ops"]), policy) == sso.Identity("alice@example.com", "operator")
    assert sso.email_of(claims(email_verified=None), policy) == "alice@example.com"  # not said: allowed

    for bad, message in [
        (claims(email_verified=False), "Your email address alice@example.com is not verified at the provider"),
        (claims(email_verified="false"), "Your email address alice@example.com is not verified at the provider"),
        (claims(email="mallory@elsewhere.test"), "Addresses at elsewhere.test may not sign in here"),
        (claims(email=None), "The provider sent no email address (is the email scope granted?)"),
        (claims(email="not-an-address"), "The provider sent no email address (is the email scope granted?)"),
    ]:
        with pytest.raises(SignInRefused) as raised:
            sso.email_of(bad, policy)
        assert str(raised.value) == message
