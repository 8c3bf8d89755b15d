"""Users: their roles, passwords and sign-in, and the slow-down of repeated failed sign-ins."""
import secrets
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from backup_app.errors import (
    AccountDisabled,
    InvalidRequest,
    LastAdmin,
    LoginFailed,
    TooManyLoginAttempts,
    UserExists,
    UserNotFound,
)
from backup_app.models import ADMIN, ROLES, LoginFailure, User, utcnow

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
# Failures allowed before each further attempt must wait; the wait then doubles up to MAX_WAIT.
FREE_FAILURES = 5
MAX_WAIT = timedelta(minutes=5)


def normalize_email(email: str) -> str:
    return email.strip().lower()


def check_role(role: str) -> str:
    """`role` if it is one; InvalidRequest naming the roles otherwise."""
    if role not in ROLES:
        raise InvalidRequest(f"unknown role {role!r}: the roles are {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidRequest(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
    return password


def create_user(session: Session, email: str, password: str | None, hash_method: str = "scrypt",
                role: str = ADMIN) -> User:
    """A new user with `role` and its password hashed by `hash_method` (werkzeug's); None: no
    password (single sign-on only). Raises UserExists or InvalidRequest."""
    email = normalize_email(email)
    if "@" not in email or len(email) > 320:
        raise InvalidRequest(f"not an email address: {email!r}")
    check_role(role)
    password_hash = None if password is None else generate_password_hash(check_password(password), hash_method)
    if session.scalar(select(User).where(User.email == email)):
        raise UserExists(email)
    user = User(email=email, password_hash=password_hash, role=role)
    session.add(user)
    session.commit()
    return user


def get_user(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        raise UserNotFound(email)
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.email)))


def _keep_an_admin(session: Session, user: User) -> None:
    """Refuse to take the last enabled admin away: nobody could manage users after it."""
    if user.role != ADMIN or user.disabled:
        return
    admins = session.scalar(select(func.count()).select_from(User)
                            .where(User.role == ADMIN, User.disabled.is_(False)))
    if admins <= 1:
        raise LastAdmin(user.email)


def set_role(session: Session, email: str, role: str) -> User:
    user = get_user(session, email)
    if check_role(role) != ADMIN:
        _keep_an_admin(session, user)
    user.role = role
    session.commit()
    return user


def disable_user(session: Session, email: str) -> User:
    """Disable a user: their sessions and API tokens stop working at the next request."""
    user = get_user(session, email)
    _keep_an_admin(session, user)
    user.disabled = True
    user.session_version = User.session_version + 1
    session.commit()
    return user


def enable_user(session: Session, email: str) -> User:
    user = get_user(session, email)
    user.disabled = False
    session.commit()
    return user


def delete_user(session: Session, email: str) -> None:
    """Delete a user and their API tokens (the audit log keeps their email)."""
    user = get_user(session, email)
    _keep_an_admin(session, user)
    session.delete(user)
    session.commit()


def set_password(session: Session, user: User, password: str, hash_method: str) -> None:
    """Give `user` a new password and end every session signed in with the old one."""
    user.password_hash = generate_password_hash(check_password(password), hash_method)
    user.session_version = User.session_version + 1
    session.commit()


def random_password() -> str:
    return secrets.token_urlsafe(15)


def reset_password(session: Session, email: str, hash_method: str, password: str | None = None) -> str:
    """Set a user's password to `password`, or to a new random one; returns it (shown once)."""
    user = get_user(session, email)
    password = password if password is not None else random_password()
    set_password(session, user, password, hash_method)
    return password


def change_own_password(session: Session, user: User, current: str, new: str, hash_method: str) -> None:
    """A user's change of their own password, which needs the current one. A user of single sign-on
    has none to change: a password of their own would outlive their access at the provider."""
    if user.password_hash is None:
        raise InvalidRequest("you sign in through single sign-on: there is no password here to change")
    if not check_password_hash(user.password_hash, current):
        raise InvalidRequest("the current password is wrong")
    set_password(session, user, new, hash_method)


def end_sessions(session: Session, user: User) -> None:
    """Sign the user out everywhere: every session signed in so far stops loading them (API
    tokens are not sessions and keep working)."""
    user.session_version = User.session_version + 1
    session.commit()


def signed_in(session: Session, user: User, now: datetime | None = None) -> None:
    """Record a sign-in (by password or single sign-on)."""
    user.last_sign_in_at = now or utcnow()
    session.commit()


@cache
def _dummy_hash() -> str:
    return generate_password_hash(secrets.token_hex(16))


def throttle_wait(failures: int) -> timedelta:
    """How long to wait after the last of `failures` failed sign-ins."""
    if failures < FREE_FAILURES:
        return timedelta(0)
    return min(timedelta(seconds=2 ** (failures - FREE_FAILURES + 1)), MAX_WAIT)


def check_throttle(session: Session, key: str, now: datetime) -> None:
    """TooManyLoginAttempts while the failures counted under `key` still make attempts wait."""
    failure = session.get(LoginFailure, key)
    if failure is not None:
        ready_at = failure.last_failed_at + throttle_wait(failure.count)
        if ready_at > now:
            raise TooManyLoginAttempts(max(1, round((ready_at - now).total_seconds())))


def count_failure(session: Session, key: str, now: datetime) -> None:
    """Count one more failed attempt under `key` (committed)."""
    failure = session.get(LoginFailure, key)
    if failure is None:
        failure = LoginFailure(key=key, count=0)
        session.add(failure)
    failure.count += 1
    failure.last_failed_at = now
    session.commit()


def forget_failures(session: Session, key: str) -> None:
    """A success under `key`: its failures no longer count (committed)."""
    failure = session.get(LoginFailure, key)
    if failure is not None:
        session.delete(failure)
        session.commit()


def authenticate(session: Session, email: str, password: str, address: str,
                 now: datetime | None = None) -> User:
    """The user whose email and password these are.

    Failures are counted per email and per client address; past FREE_FAILURES, attempts
    are refused unchecked (TooManyLoginAttempts) until a doubling wait has passed. A disabled
    user's right password is AccountDisabled.
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
    stored = user.password_hash if user is not None and user.password_hash else None
    # Hash even for an unknown email or an SSO-only user, so the answer takes as long either way.
    if not check_password_hash(stored or _dummy_hash(), password) or stored is None:
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
    if user.disabled:
        raise AccountDisabled()
    if not user.two_factor_on:  # else signed in only once the code is right too
        signed_in(session, user, now)
    return user
