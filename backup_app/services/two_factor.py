"""Two-factor sign-in for accounts with a password: a TOTP code (RFC 6238, as authenticator apps
make them) after the password, or one of ten single-use recovery codes.

Enrolment stores a new secret; only a first right code turns two-factor sign-in on. The secret is
kept encrypted under APP_ENCRYPTION_KEY when that is set, else as it is (see docs/security.md).
A code is accepted one time step either side of now (clock drift), never twice: the step of the
last accepted code is stored and only a later one passes, claimed in one UPDATE so two requests
cannot both use it. Recovery codes are random, so a SHA-256 of each is kept; using one deletes it
in one DELETE. Every wrong code (or password, where one may stand in) counts under the login
throttle, per account.
"""
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import pyotp
from sqlalchemy import delete, or_, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from backup_app.core.crypto import MasterKey, SecretUnreadable
from backup_app.errors import ConfigurationError, InvalidRequest, WrongCode
from backup_app.models import RecoveryCode, User, utcnow
from backup_app.services import login_throttle
from backup_app.services.users import get_user

ISSUER = "backup_app"
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/i/l to misread
RECOVERY_LENGTH = 10  # about 50 random bits each
TOTP_CODE = re.compile(r"\d{6}")
WRONG_CODE = "the code is wrong: enter the one your authenticator app shows now"


@dataclass(frozen=True)
class Enrolment:
    """A secret to put into an authenticator app, by hand or as the otpauth:// URI (a QR code)."""

    secret: str
    uri: str


def begin_enrolment(session: Session, user: User, key: MasterKey | None) -> Enrolment:
    """A new secret for `user`, stored but not yet on (confirm_enrolment turns it on); starting again
    replaces it. Refused for an account without a password and while two-factor sign-in is on."""
    if user.password_hash is None:
        raise InvalidRequest("two-factor sign-in is for accounts with a password; single sign-on has its own")
    if user.two_factor_on:
        raise InvalidRequest("two-factor sign-in is already on; turn it off first to move it to another app")
    secret = pyotp.random_base32()
    user.totp_secret, user.totp_last_step = seal(secret, key), None
    session.commit()
    return enrolment(user.email, secret)


def pending_enrolment(user: User, key: MasterKey | None) -> Enrolment | None:
    """The enrolment `user` began and has not confirmed yet, if any (none when its secret can no longer
    be read, e.g. sealed under another APP_ENCRYPTION_KEY: it is begun again)."""
    if user.totp_secret is None or user.two_factor_on:
        return None
    try:
        return enrolment(user.email, unseal(user.totp_secret, key))
    except ConfigurationError:
        return None


def confirm_enrolment(session: Session, user: User, code: str, key: MasterKey | None,
                      now: datetime | None = None) -> list[str]:
    """Turn two-factor sign-in on with a first right code; returns the recovery codes (shown once)."""
    if user.totp_secret is None or user.two_factor_on:
        raise InvalidRequest("there is no two-factor enrolment to confirm: start one first")
    now = now or utcnow()
    _check(session, user, code, key, now, InvalidRequest(WRONG_CODE))
    user.totp_enabled_at = now
    codes = _new_recovery_codes(user)
    session.commit()
    return codes


def verify_sign_in(session: Session, user: User, code: str, key: MasterKey | None,
                   now: datetime | None = None) -> None:
    """The second step of a sign-in: a TOTP code or an unused recovery code (which is then used
    up). WrongCode, or TooManyLoginAttempts while earlier wrong codes make the account wait."""
    _check(session, user, code, key, now or utcnow(), WrongCode(), recovery=True)


def new_recovery_codes(session: Session, user: User, code: str, key: MasterKey | None,
                       now: datetime | None = None) -> list[str]:
    """Ten new recovery codes in place of the old ones, for a right TOTP code."""
    _require_on(user)
    _check(session, user, code, key, now or utcnow(), InvalidRequest(WRONG_CODE))
    codes = _new_recovery_codes(user)
    session.commit()
    return codes


def disable(session: Session, user: User, code_or_password: str, key: MasterKey | None,
            now: datetime | None = None) -> None:
    """Turn `user`'s own two-factor sign-in off, for a right TOTP code or their password."""
    _require_on(user)
    _check(session, user, code_or_password, key, now or utcnow(),
           InvalidRequest("neither a right code nor your password"), password=True)
    _turn_off(user)
    session.commit()


def reset(session: Session, email: str) -> User:
    """An admin's reset for a user who lost their authenticator and recovery codes: two-factor
    sign-in off (or a begun enrolment dropped) and every session of theirs ended."""
    user = get_user(session, email)
    if user.totp_secret is None:
        raise InvalidRequest(f"{user.email} has no two-factor sign-in to reset")
    _turn_off(user)
    user.session_version = User.session_version + 1
    session.commit()
    return user


def enrolment(email: str, secret: str) -> Enrolment:
    return Enrolment(secret, pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER))


def seal(secret: str, key: MasterKey | None) -> str:
    """The secret as stored: encrypted under the master key when there is one."""
    return f"enc:{key.encrypt_secret(secret)}" if key is not None else f"plain:{secret}"


def unseal(stored: str, key: MasterKey | None) -> str:
    kind, _, value = stored.partition(":")
    if kind == "plain":
        return value
    if key is None:
        raise ConfigurationError("the two-factor secret is stored encrypted but APP_ENCRYPTION_KEY is not set; "
                                 "use a recovery code, or ask an admin to reset it")
    try:
        return key.decrypt_secret(value)
    except SecretUnreadable:
        raise SecretUnreadable("the two-factor secret was stored under another APP_ENCRYPTION_KEY; use a "
                               "recovery code, or ask an admin to reset it") from None


def normalized(code: str) -> str:
    """A code as typed, without spaces or dashes, lower case."""
    return "".join(code.split()).replace("-", "").lower()


def hash_code(code: str) -> str:
    return hashlib.sha256(normalized(code).encode()).hexdigest()


def _require_on(user: User) -> None:
    if not user.two_factor_on:
        raise InvalidRequest("two-factor sign-in is off")


def _check(session: Session, user: User, proof: str, key: MasterKey | None, now: datetime, wrong: Exception,
           *, recovery: bool = False, password: bool = False) -> None:
    """Accept `proof` (a TOTP code; with `recovery`, a recovery code; with `password`, the password)
    or raise `wrong`; attempts are counted under the account's second-factor throttle."""
    throttle = f"two-factor:{user.id}"
    login_throttle.attempt_on(session, throttle, now, "for this account")  # counted as a failure until right
    code = normalized(proof)
    accepted = (
        (TOTP_CODE.fullmatch(code) is not None and _claim_totp(session, user, code, key, now))
        or (recovery and _use_recovery_code(session, user, code))
        or (password and user.password_hash is not None and check_password_hash(user.password_hash, proof)))
    if not accepted:
        raise wrong
    login_throttle.forget(session, throttle)


def _claim_totp(session: Session, user: User, code: str, key: MasterKey | None, now: datetime) -> bool:
    """Whether `code` is the secret's code one step either side of `now` and later than the last one
    accepted; if so, its step becomes the last one accepted."""
    totp = pyotp.TOTP(unseal(user.totp_secret, key))
    current = totp.timecode(now)
    step = next((step for step in (current - 1, current, current + 1)
                 if hmac.compare_digest(totp.generate_otp(step), code)), None)
    if step is None:
        return False
    claimed = session.execute(
        update(User).where(User.id == user.id, or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step)).rowcount == 1
    session.commit()
    return claimed


def _use_recovery_code(session: Session, user: User, code: str) -> bool:
    used = session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id,
                                                      RecoveryCode.code_hash == hash_code(code))).rowcount == 1
    session.commit()
    session.expire(user, ["recovery_codes"])
    return used


def _new_recovery_codes(user: User) -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    user.recovery_codes = [RecoveryCode(code_hash=hash_code(code)) for code in codes]
    return codes


def _turn_off(user: User) -> None:
    user.totp_secret = user.totp_enabled_at = user.totp_last_step = None
    user.recovery_codes = []
