"""API tokens: named, optionally of a lower role than their user's, optionally expiring, revocable."""
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app.errors import InvalidRequest, TokenNotFound
from backup_app.models import ROLES, ApiToken, User, utcnow
from backup_app.services.users import check_role, get_user

TOKEN_PREFIX = "bk_"
MAX_NAME = 100
# last_used_at is written at most this often per token, not on every call.
LAST_USED_STEP = timedelta(minutes=1)


@dataclass(frozen=True)
class TokenAccess:
    """Whom a valid token acts for, and with which role."""

    user: User
    role: str


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a plain SHA-256 is enough (no salt or slow hash needed).
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, email: str, name: str | None = None, role: str | None = None,
                 expires_in_days: int | None = None, now: datetime | None = None) -> tuple[ApiToken, str]:
    """A new API token for the user and its secret (only its hash is stored: show it now or never).

    `role` may not be above the user's role; `expires_in_days` 0 makes one already expired.
    """
    user = get_user(session, email)
    name = (name or "token").strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidRequest(f"a token's name must have 1 to {MAX_NAME} characters")
    if role is not None and ROLES.index(check_role(role)) > ROLES.index(user.role):
        raise InvalidRequest(f"a token of {user.email} may not have the {role} role: theirs is {user.role}")
    if expires_in_days is not None and not 0 <= expires_in_days <= 3650:
        raise InvalidRequest("--expires-in-days must be 0 to 3650")
    now = now or utcnow()
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user=user, token_hash=hash_token(secret), name=name, role=role, created_at=now,
                     expires_at=None if expires_in_days is None else now + timedelta(days=expires_in_days))
    session.add(token)
    session.commit()
    return token, secret


def token_subject(token: ApiToken) -> str:
    """How the audit log names a token: `<email> token <id> (<name>)`."""
    return f"{token.user.email} token {token.id} ({token.name})"


def list_tokens(session: Session, user: User) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)))


def revoke_token(session: Session, token_id: int, owner: User | None = None) -> ApiToken:
    """Delete a token (only `owner`'s, when given); TokenNotFound otherwise."""
    token = session.get(ApiToken, token_id)
    if token is None or (owner is not None and token.user_id != owner.id):
        raise TokenNotFound(token_id)
    session.delete(token)
    session.commit()
    return token


def token_access(session: Session, secret: str, now: datetime | None = None) -> TokenAccess | None:
    """Whom `secret` acts for, or None for an unknown, expired or revoked token or a disabled user."""
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
    now = now or utcnow()
    if token is None or token.user.disabled or (token.expires_at is not None and token.expires_at <= now):
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_STEP:
        token.last_used_at = now
        session.commit()
    return TokenAccess(token.user, token.acting_role)
