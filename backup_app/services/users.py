"""Users: their roles, passwords and sign-in."""
import secrets
from datetime import datetime
from functools import cache

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from backup_app.errors import (
    AccountDisabled,
    InvalidRequest,
    LastAdmin,
    LoginFailed,
    UserExists,
    UserNotFound,
)
from backup_app.models import ADMIN, ROLES, SignInAddress, User, utcnow
from backup_app.services import login_throttle

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


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


def keep_an_admin(session: Session, user: User) -> None:
    """Refuse to take the last enabled admin away: nobody could manage users after it.

    The enabled admins' rows are first written unchanged, which holds them (PostgreSQL row locks,
    SQLite's write lock) until the caller commits: of two admins demoting each other at once, the
    second waits, then counts the first's change and is refused."""
    if user.role != ADMIN or user.disabled:
        return
    touch = (update(User).where(User.role == ADMIN, User.disabled.is_(False)).values(role=User.role)
             .returning(User.id).execution_options(synchronize_session=False))
    admins = set(session.scalars(touch))
    if user.id in admins and len(admins) <= 1:
        session.rollback()
        raise LastAdmin(user.email)


def set_role(session: Session, email: str, role: str) -> User:
    user = get_user(session, email)
    if check_role(role) != ADMIN:
        keep_an_admin(session, user)
    user.role = role
    session.commit()
    return user


def disable_user(session: Session, email: str) -> User:
    """Disable a user: their sessions and API tokens stop working at the next request."""
    user = get_user(session, email)
    keep_an_admin(session, user)
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
    """Delete a user, their API tokens and the addresses they signed in from (the audit log keeps their
    email): an account made later with that email starts afresh."""
    user = get_user(session, email)
    keep_an_admin(session, user)
    session.execute(delete(SignInAddress).where(SignInAddress.email == user.email))
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
    """Set a user's password to `password`, or to a new random one; returns it (shown once). A user of
    single sign-on only gets none: a password would outlive their access at the provider."""
    user = get_user(session, email)
    if user.password_hash is None:
        raise InvalidRequest(f"{user.email} signs in through single sign-on only: there is no password to reset")
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


def authenticate(session: Session, email: str, password: str, address: str,
                 now: datetime | None = None) -> User:
    """The user whose email and password these are.

    Repeated failures slow further attempts (login_throttle: per account, and per client address
    for accounts that never signed in from it): TooManyLoginAttempts, refused unchecked. A
    disabled user's right password is AccountDisabled (and stays counted as a failure).
    """
    now = now or utcnow()
    email = normalize_email(email)
    login_throttle.attempt(session, email, address, now)
    user = session.scalar(select(User).where(User.email == email))
    stored = user.password_hash if user is not None and user.password_hash else None
    # Hash even for an unknown email or an SSO-only user, so the answer takes as long either way.
    if not check_password_hash(stored or _dummy_hash(), password) or stored is None:
        raise LoginFailed()
    if user.disabled:
        raise AccountDisabled()
    if not user.two_factor_on:  # else the sign-in completes once the code is right too
        complete_sign_in(session, user, address, now)
    return user


def complete_sign_in(session: Session, user: User, address: str, now: datetime | None = None) -> None:
    """A password sign-in complete (with its second factor, if any): the account's failures cleared,
    the address remembered for it, the time recorded."""
    now = now or utcnow()
    login_throttle.succeeded(session, user.email, address, now)
    signed_in(session, user, now)
