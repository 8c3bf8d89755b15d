"""Single sign-on: who an OpenID Connect sign-in is and which role it gets, from the claims the
provider vouched for (the web layer verified them: web/auth/oidc.py).

The settings are read by parse_role_map and parse_domains; identity() turns claims into an email
and a role, or SignInRefused saying why; sign_in() finds or makes the user and refreshes their role.

A user is bound to their provider identity (issuer + `sub`) at their first SSO sign-in and found
by it afterwards. The email only finds a user that is not bound yet (one made by `flask users
create`, or before this binding existed): an account whose email someone else's identity at the
provider comes to claim later is refused, never taken over.
"""
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app.errors import LastAdmin, SignInRefused
from backup_app.models import ROLES, User
from backup_app.services import users

SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class Policy:
    """The settings that decide who may sign in, and as what."""

    roles_claim: str = "groups"
    role_map: Mapping[str, str] = field(default_factory=dict)  # group or role at the provider → our role
    default_role: str | None = None  # when no group maps; None refuses
    allowed_domains: frozenset[str] = frozenset()  # empty: any


@dataclass(frozen=True)
class Identity:
    email: str
    role: str


def parse_role_map(text: str) -> dict[str, str]:
    """OIDC_ROLE_MAP, `backup-admins=admin,ops=operator`, as {group: role}; ValueError naming the fault."""
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        group, equals, role = (part.strip() for part in item.rpartition("="))
        if not equals or not group:
            raise ValueError(f"OIDC_ROLE_MAP: {item!r} is not group=role (e.g. backup-admins=admin)")
        if role not in ROLES:
            raise ValueError(f"OIDC_ROLE_MAP: {role!r} (for {group!r}) is not a role; the roles are {', '.join(ROLES)}")
        if group in mapping:
            raise ValueError(f"OIDC_ROLE_MAP names {group!r} twice")
        mapping[group] = role
    return mapping


def parse_role(name: str, value: str | None) -> str | None:
    """A setting naming one role (OIDC_DEFAULT_ROLE), or None when unset."""
    value = (value or "").strip()
    if value and value not in ROLES:
        raise ValueError(f"{name}: {value!r} is not a role; the roles are {', '.join(ROLES)}")
    return value or None


def parse_domains(text: str) -> frozenset[str]:
    """OIDC_ALLOWED_DOMAINS, `example.com, corp.example`, lowercased (a leading @ is dropped)."""
    return frozenset(domain.lower().removeprefix("@") for domain in SEPARATORS.split(text.strip()) if domain)


def claim_values(claims: Mapping, name: str) -> list[str]:
    """The groups or roles in claim `name`: a list, or a string of names separated by spaces or
    commas; a dotted name reaches into objects (`realm_access.roles`, as Keycloak sends roles)."""
    value = claims.get(name)
    if value is None and "." in name:
        value = claims
        for key in name.split("."):
            value = value.get(key) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return [part for part in SEPARATORS.split(value) if part]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def role_for(claims: Mapping, policy: Policy) -> str:
    """The highest role any of the person's groups maps to; else the default role; else SignInRefused."""
    groups = claim_values(claims, policy.roles_claim)
    mapped = [policy.role_map[group] for group in groups if group in policy.role_map]
    if mapped:
        return max(mapped, key=ROLES.index)
    if policy.default_role:
        return policy.default_role
    held = f"none of your groups ({', '.join(groups[:10])}{', …' if len(groups) > 10 else ''}) is in " \
        "OIDC_ROLE_MAP" if groups else f"the provider sent no groups in its {policy.roles_claim!r} claim"
    raise SignInRefused(f"No role for you here: {held}, and there is no default role. Ask an admin.")


def email_of(claims: Mapping, policy: Policy) -> str:
    """The person's email, if the provider says it is verified and its domain is allowed."""
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise SignInRefused("The provider sent no email address (is the email scope granted?)")
    email = users.normalize_email(email)
    if claims.get("email_verified") in (False, "false"):  # absent: the provider does not say; allowed
        raise SignInRefused(f"Your email address {email} is not verified at the provider")
    domain = email.rpartition("@")[2]
    if policy.allowed_domains and domain not in policy.allowed_domains:
        raise SignInRefused(f"Addresses at {domain} may not sign in here")
    return email


def identity(claims: Mapping, policy: Policy) -> Identity:
    """The email and role verified claims give, or SignInRefused saying why."""
    return Identity(email_of(claims, policy), role_for(claims, policy))


def check_binding(holder: User, claims: Mapping) -> None:
    """Refuse to bind an account that exists here to a provider identity unless the provider says
    the email is verified, the account is not bound already, and it has no second factor (signing in
    through the provider would skip it): an email alone, which some providers let people edit, never
    takes an account over."""
    if holder.sso_subject is not None:
        raise SignInRefused(f"The account {holder.email} belongs to another identity at the provider")
    if claims.get("email_verified") not in (True, "true"):
        raise SignInRefused(f"The account {holder.email} exists here, and the provider does not say that this "
                            "email is verified: an admin can delete the account so that single sign-on makes it")
    if holder.two_factor_on:
        raise SignInRefused(f"The account {holder.email} has two-factor sign-in: sign in with your password "
                            "and code, or ask an admin to turn two-factor off before using single sign-on")


def sign_in(session: Session, issuer: str, claims: Mapping, policy: Policy) -> User:
    """The user these verified claims are: bound to (issuer, sub), made on their first sign-in
    (with no password), their email and role set from the claims, their sign-in recorded.
    SignInRefused, changing nothing, for a refused identity or a disabled user."""
    person = identity(claims, policy)
    subject = str(claims["sub"])
    user = session.scalar(select(User).where(User.sso_issuer == issuer, User.sso_subject == subject))
    holder = session.scalar(select(User).where(User.email == person.email))
    if user is None and holder is not None:
        check_binding(holder, claims)
        user = holder
    elif holder is not None and holder is not user:
        raise SignInRefused(f"Your email at the provider is now {person.email}, which another account here has")
    if user is not None and user.disabled:
        raise SignInRefused("This account is disabled; ask an admin to enable it")
    if user is None:
        user = users.create_user(session, person.email, None, role=person.role)
    elif person.role != user.role:
        try:
            users.keep_an_admin(session, user)
        except LastAdmin as exc:
            raise SignInRefused(f"The provider now gives you the {person.role} role, but {exc}") from None
    user.sso_issuer, user.sso_subject = issuer, subject
    user.email, user.role = person.email, person.role
    users.signed_in(session, user)
    return user
