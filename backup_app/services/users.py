"""Users, their passwords and API tokens, and the slow-down of repeated failed sign-ins."""
import hashlib
import secrets
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from backup_app.errors import LoginFailed, TooManyLoginAttempts, UserExists, UserNotFound
from backup_app.models import ApiToken, LoginFailure, User, utcnow

MIN_PASSWORD_LENGTH = 8
# Failures allowed before each further attempt must wait; the wait then doubles up to MAX_WAIT.
FREE_FAILURES = 5
MAX_WAIT = timedelta(minutes=5)
TOKEN_PREFIX = "bk_"


def normalize_email(email: str) -> str:
    return email.strip().lower()


def create_user(session: Session, email: str, password: str, hash_method: str = "scrypt") -> User:
    """A new user with its password hashed by `hash_method` (werkzeug's); raises UserExists or
    ValueError (short password)."""
    email = normalize_email(email)
    if "@" not in email:
        raise ValueError(f"not an email address: {email!r}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalar(select(User).where(User.email == email)):
        raise UserExists(email)
    user = User(email=email, password_hash=generate_password_hash(password, method=hash_method))
    session.add(user)
    session.commit()
    return user


def get_user(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        raise UserNotFound(email)
    return user


@cache
def _dummy_hash() -> str:
    return generate_password_hash(secrets.token_hex(16))


def throttle_wait(failures: int) -> timedelta:
    """How long to wait after the last of `failures` failed sign-ins."""
    if failures < FREE_FAILURES:
        return timedelta(0)
    return min(timedelta(seconds=2 ** (failures - FREE_FAILURES + 1)), MAX_WAIT)


def authenticate(session: Session, email: str, password: str, address: str,
                 now: datetime | None = None) -> User:
    """The user whose email and password these are.

    Failures are counted per email and per client address; past FREE_FAILURES, attempts
    are refused unchecked (TooManyLoginAttempts) until a doubling wait has passed.
    """
    now = now or utcnow()
    email = normalize_email(email)
    keys = [f"email:{email}", f"address:{address}"]
    failures = [session.get(LoginFailure, key) for key in keys]
    for failure in failures:
        if failure is not None:
            ready_at = failure.last_failed_at + throttle_wait(failure.count)
            if ready_at > now:
                raise TooManyLoginAttempts(max(1, round((ready_at - now).total_seconds())))
    user = session.scalar(select(User).where(User.email == email))
    # Hash even for an unknown email, so the answer takes as long either way.
    if not check_password_hash(user.password_hash if user else _dummy_hash(), password) or user is None:
        for key, failure in zip(keys, failures):
            if failure is None:
                failure = LoginFailure(key=key, count=0)
                session.add(failure)
            failure.count += 1
            failure.last_failed_at = now
        session.commit()
        raise LoginFailed()
    for failure in failures:
        if failure is not None:
            session.delete(failure)
    session.commit()
    return user


def end_sessions(session: Session, user: User) -> None:
    """Sign the user out everywhere: every session signed in so far stops loading them (API
    tokens are not sessions and keep working)."""
    user.session_version = User.session_version + 1
    session.commit()


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a plain SHA-256 is enough (no salt or slow hash needed).
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(session: Session, email: str) -> str:
    """A new API token for the user; only its hash is stored, so show it now or never."""
    user = get_user(session, email)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user=user, token_hash=hash_token(token)))
    session.commit()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    """The owner of an API token, or None for an unknown one."""
    api_token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    return api_token.user if api_token else None
