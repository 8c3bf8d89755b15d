"""services/two_factor.py on a real catalog (SQLite; PostgreSQL too where a code is claimed): enrolment, codes at sign-in (wrong, replayed,
drifted), recovery codes used once, the throttle, turning off and an admin's reset; the secret
encrypted under APP_ENCRYPTION_KEY."""
from datetime import timedelta

import pyotp
import pytest

from backup_app.core.crypto import MasterKey
from backup_app.errors import ConfigurationError, InvalidRequest, TooManyLoginAttempts, WrongCode
from backup_app.extensions import db
from backup_app.models import LoginFailure, RecoveryCode, User, utcnow
from backup_app.services import two_factor
from backup_app.services.users import FREE_FAILURES, get_user
from tests.conftest import both_catalogs
from tests.helpers import new_key
from tests.web_helpers import EMAIL, PASSWORD

NOW = utcnow().replace(microsecond=0)


@pytest.fixture
def catalog(bare_app):
    with bare_app.app_context():
        yield db.session


def user(session) -> User:
    return get_user(session, EMAIL)


def code_at(secret: str, when, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(when + timedelta(seconds=30 * steps))


def enrolled(session, key=None) -> tuple[str, list[str]]:
    """Turn 2FA on for EMAIL with a code of the step before NOW; its secret and recovery codes."""
    secret = two_factor.begin_enrolment(session, user(session), key).secret
    codes = two_factor.confirm_enrolment(session, user(session), code_at(secret, NOW, -1), key, NOW)
    return secret, codes


def test_enrolment_is_on_only_after_a_right_first_code(catalog):
    enrolment = two_factor.begin_enrolment(catalog, user(catalog), None)
    assert enrolment.uri.startswith("otpauth://totp/backup_app:admin%40example.com?secret=")
    assert "issuer=backup_app" in enrolment.uri and enrolment.secret in enrolment.uri
    assert not user(catalog).two_factor_on
    assert two_factor.pending_enrolment(user(catalog), None) == enrolment

    with pytest.raises(InvalidRequest, match="the code is wrong"):
        two_factor.confirm_enrolment(catalog, user(catalog), "000000" if code_at(enrolment.secret, NOW) != "000000"
                                     else "111111", None, NOW)
    assert not user(catalog).two_factor_on and catalog.query(RecoveryCode).count() == 0

    codes = two_factor.confirm_enrolment(catalog, user(catalog), code_at(enrolment.secret, NOW), None, NOW)
    assert user(catalog).two_factor_on and user(catalog).totp_enabled_at == NOW
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(code) == 11 and code[5] == "-" for code in codes)
    stored = {row.code_hash for row in catalog.query(RecoveryCode)}
    assert stored == {two_factor.hash_code(code) for code in codes}, "only hashes are kept"
    assert two_factor.pending_enrolment(user(catalog), None) is None


def test_enrolment_is_refused_while_on_and_for_an_account_without_a_password(catalog):
    secret, _ = enrolled(catalog)
    with pytest.raises(InvalidRequest, match="already on; turn it off first"):
        two_factor.begin_enrolment(catalog, user(catalog), None)
    assert two_factor.unseal(user(catalog).totp_secret, None) == secret, "the secret in use is kept"

    sso = User(email="sso@example.com", password_hash=None)
    catalog.add(sso)
    catalog.commit()
    with pytest.raises(InvalidRequest, match="for accounts with a password"):
        two_factor.begin_enrolment(catalog, sso, None)
    assert sso.totp_secret is None


@both_catalogs
def test_a_code_is_accepted_one_step_either_side_and_never_twice(catalog):
    secret, _ = enrolled(catalog)  # the step before NOW is used
    with pytest.raises(WrongCode):
        two_factor.verify_sign_in(catalog, user(catalog), code_at(secret, NOW, -1), None, NOW)
    two_factor.verify_sign_in(catalog, user(catalog), code_at(secret, NOW, +1), None, NOW)  # the phone runs ahead
    with pytest.raises(WrongCode, match="Wrong code"):
        two_factor.verify_sign_in(catalog, user(catalog), code_at(secret, NOW, +1), None, NOW)  # replayed
    with pytest.raises(WrongCode):  # older than the last one accepted
        two_factor.verify_sign_in(catalog, user(catalog), code_at(secret, NOW), None, NOW)
    with pytest.raises(WrongCode):  # too far ahead
        two_factor.verify_sign_in(catalog, user(catalog), code_at(secret, NOW, 3), None, NOW)
    assert user(catalog).totp_last_step == pyotp.TOTP(secret).timecode(NOW) + 1
    later = NOW + timedelta(seconds=90)
    two_factor.verify_sign_in(catalog, user(catalog), " " + code_at(secret, later)[:3] + " " + code_at(secret, later)[3:],
                              None, later)


@both_catalogs
def test_a_recovery_code_signs_in_once(catalog):
    _, codes = enrolled(catalog)
    two_factor.verify_sign_in(catalog, user(catalog), codes[0].upper().replace("-", " "), None, NOW)
    assert catalog.query(RecoveryCode).count() == 9
    with pytest.raises(WrongCode):
        two_factor.verify_sign_in(catalog, user(catalog), codes[0], None, NOW)
    assert catalog.query(RecoveryCode).count() == 9
    two_factor.verify_sign_in(catalog, user(catalog), codes[1], None, NOW)
    assert len(user(catalog).recovery_codes) == 8


def test_wrong_codes_count_toward_the_throttle_and_a_right_one_clears_it(catalog):
    secret, codes = enrolled(catalog)
    for _ in range(FREE_FAILURES):
        with pytest.raises(WrongCode):
            two_factor.verify_sign_in(catalog, user(catalog), "not-a-code", None, NOW)
    with pytest.raises(TooManyLoginAttempts, match="try again in 1 s"):
        two_factor.verify_sign_in(catalog, user(catalog), codes[0], None, NOW + timedelta(seconds=1))
    assert catalog.query(RecoveryCode).count() == 10, "a refused attempt is not even checked"
    two_factor.verify_sign_in(catalog, user(catalog), codes[0], None, NOW + timedelta(seconds=2))
    assert catalog.get(LoginFailure, f"two-factor:{user(catalog).id}") is None


def test_new_recovery_codes_replace_the_old_ones(catalog):
    secret, old = enrolled(catalog)
    with pytest.raises(InvalidRequest, match="the code is wrong"):
        two_factor.new_recovery_codes(catalog, user(catalog), old[0], None, NOW)  # a TOTP code only
    assert catalog.query(RecoveryCode).count() == 10
    new = two_factor.new_recovery_codes(catalog, user(catalog), code_at(secret, NOW), None, NOW)
    assert not set(new) & set(old)
    with pytest.raises(WrongCode):
        two_factor.verify_sign_in(catalog, user(catalog), old[1], None, NOW)
    two_factor.verify_sign_in(catalog, user(catalog), new[1], None, NOW)


def test_turning_off_needs_a_code_or_the_password(catalog):
    secret, _ = enrolled(catalog)
    with pytest.raises(InvalidRequest, match="neither a right code nor your password"):
        two_factor.disable(catalog, user(catalog), "wrong password", None, NOW)
    assert user(catalog).two_factor_on
    two_factor.disable(catalog, user(catalog), PASSWORD, None, NOW)
    assert not user(catalog).two_factor_on and user(catalog).totp_secret is None
    assert catalog.query(RecoveryCode).count() == 0
    with pytest.raises(InvalidRequest, match="two-factor sign-in is off"):
        two_factor.disable(catalog, user(catalog), PASSWORD, None, NOW)

    secret, _ = enrolled(catalog)
    two_factor.disable(catalog, user(catalog), code_at(secret, NOW), None, NOW)
    assert not user(catalog).two_factor_on


def test_an_admin_reset_turns_it_off_and_ends_the_sessions(catalog):
    enrolled(catalog)
    version = user(catalog).session_version
    reset = two_factor.reset(catalog, EMAIL.upper())
    assert reset.email == EMAIL and not reset.two_factor_on and reset.totp_secret is None
    assert reset.session_version == version + 1 and catalog.query(RecoveryCode).count() == 0
    with pytest.raises(InvalidRequest, match="admin@example.com has no two-factor sign-in to reset"):
        two_factor.reset(catalog, EMAIL)
    assert user(catalog).session_version == version + 1


def test_the_secret_is_stored_encrypted_under_the_master_key(catalog):
    key = MasterKey(new_key())
    secret, codes = enrolled(catalog, key)
    stored = user(catalog).totp_secret
    assert stored.startswith("enc:") and secret not in stored
    assert two_factor.pending_enrolment(user(catalog), key) is None
    two_factor.verify_sign_in(catalog, user(catalog), code_at(secret, NOW), key, NOW)

    with pytest.raises(ConfigurationError, match="stored encrypted but APP_ENCRYPTION_KEY is not set"):
        two_factor.verify_sign_in(catalog, user(catalog), code_at(secret, NOW, 1), None, NOW)
    with pytest.raises(ConfigurationError, match="stored under another APP_ENCRYPTION_KEY"):
        two_factor.verify_sign_in(catalog, user(catalog), code_at(secret, NOW, 1), MasterKey(new_key()), NOW)
    two_factor.verify_sign_in(catalog, user(catalog), codes[0], None, NOW)  # a recovery code needs no key


def test_without_a_key_the_secret_is_stored_as_it_is(catalog):
    secret, _ = enrolled(catalog)
    assert user(catalog).totp_secret == f"plain:{secret}"
