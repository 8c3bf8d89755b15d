"""The slow-down of repeated failed sign-ins, counted in the catalog per account and per address.

Two counters: `email:<email>` (one account, from any address) and `address:<address>` (one client,
for any email, made-up ones too). Past FREE_FAILURES, a counter makes the next attempt wait (2 s,
doubling up to MAX_WAIT after its last one); an attempt in that wait is refused unchecked. The
account's counter refuses every attempt for that account. The address's counter refuses only
attempts for accounts that never signed in from that address (SignInAddress): an address spraying
made-up or other people's accounts is slowed, and a user who signed in from it before (everyone
behind one proxy may share an address) still gets their password checked.

An attempt is counted before its password is checked, as a failure until it succeeds, by one
INSERT … ON CONFLICT DO UPDATE … WHERE <its wait is over> per counter (SQLite and PostgreSQL): of
attempts made at once, exactly as many get checked as the counts allow, and none collide. A
counter with nothing counted for FORGET_AFTER starts again from one.

Use: attempt() before checking a password and attempt_on() before checking a second factor (its own
counter per account, which a right password does not clear); succeeded() once, when the sign-in is
complete — with two factors, only after the second.
"""
from datetime import datetime, timedelta
from itertools import count, takewhile

from sqlalchemy import case, delete, exists, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from backup_app.errors import TooManyLoginAttempts
from backup_app.models import LoginFailure, SignInAddress, UTCDateTime

# Failures allowed before each further attempt must wait; the wait then doubles up to MAX_WAIT.
FREE_FAILURES = 5
MAX_WAIT = timedelta(minutes=5)
# A counter whose last attempt is this old is forgotten: the next one counts from one again.
FORGET_AFTER = timedelta(hours=1)
MAX_ADDRESS = 100  # characters of a client address kept (an IPv6 address has at most 45)

COUNTERS = LoginFailure.__table__


def throttle_wait(failures: int) -> timedelta:
    """How long to wait after the last of `failures` failed sign-ins."""
    if failures < FREE_FAILURES:
        return timedelta(0)
    return min(timedelta(seconds=2 ** (failures - FREE_FAILURES + 1)), MAX_WAIT)


def _keys(email: str, address: str) -> tuple[str, str]:
    return f"email:{email}", f"address:{address[:MAX_ADDRESS]}"


def _insert(session: Session):
    """The dialect's INSERT, which has on_conflict_do_update/nothing (the catalog is SQLite or PostgreSQL)."""
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert


def _over(now: datetime):
    """SQL: the counter's wait is over at `now` (its count's wait, written out as one CASE: no date
    arithmetic in SQL, which SQLite and PostgreSQL spell differently)."""
    doubling = takewhile(lambda n: throttle_wait(n) < MAX_WAIT, count(FREE_FAILURES))  # 5, 6 … 12
    ready_if_before = case(*((COUNTERS.c.count == n, literal(now - throttle_wait(n), UTCDateTime))
                             for n in doubling),
                           else_=literal(now - MAX_WAIT, UTCDateTime))
    return or_(COUNTERS.c.count < FREE_FAILURES, COUNTERS.c.last_failed_at <= ready_if_before)


def _count(session: Session, key: str, now: datetime, always: bool) -> bool:
    """Count an attempt under `key` if its wait is over (or `always`), in one statement; whether it was."""
    forgotten = COUNTERS.c.last_failed_at < literal(now - FORGET_AFTER, UTCDateTime)
    statement = _insert(session)(COUNTERS).values(key=key, count=1, last_failed_at=now).on_conflict_do_update(
        index_elements=[COUNTERS.c.key],
        set_={"count": case((forgotten, 1), else_=COUNTERS.c.count + 1), "last_failed_at": now},
        where=None if always else or_(forgotten, _over(now)))
    return session.execute(statement.returning(COUNTERS.c.key)).first() is not None  # no row: not counted


def _refusal(session: Session, key: str, now: datetime, scope: str) -> TooManyLoginAttempts:
    session.rollback()  # neither counter counts a refused attempt
    counter = session.get(LoginFailure, key, populate_existing=True)  # None if a sign-in cleared it since
    wait = counter.last_failed_at + throttle_wait(counter.count) - now if counter else timedelta(0)
    return TooManyLoginAttempts(wait.total_seconds(), scope)


def _known_address(session: Session, email: str, address: str) -> bool:
    """Whether `email` has signed in from `address` before."""
    return session.scalar(select(exists().where(SignInAddress.email == email,
                                                SignInAddress.address == address[:MAX_ADDRESS])))


def attempt(session: Session, email: str, address: str, now: datetime) -> None:
    """Count an attempt to sign in as `email` from `address` (a failure until succeeded()), or refuse
    it unchecked (TooManyLoginAttempts, saying how long to wait) while this account must wait, or
    this address must and the account never signed in from it."""
    account_key, address_key = _keys(email, address)
    known = _known_address(session, email, address)
    if not _count(session, account_key, now, always=False):
        raise _refusal(session, account_key, now, "for this account")
    if not _count(session, address_key, now, always=known):
        raise _refusal(session, address_key, now, "from your address")
    session.commit()
    _forget_stale(session, now)


def attempt_on(session: Session, key: str, now: datetime, scope: str) -> None:
    """Count an attempt under the one counter `key` (a second factor's: `two-factor:<user id>`), or
    refuse it unchecked while that counter must wait; forget(key) once it succeeds."""
    if not _count(session, key, now, always=False):
        raise _refusal(session, key, now, scope)
    session.commit()


def forget(session: Session, key: str) -> None:
    """The attempt counted under `key` succeeded: its failures no longer count."""
    session.execute(delete(LoginFailure).where(LoginFailure.key == key))
    session.commit()


def _forget_stale(session: Session, now: datetime) -> None:
    """Delete the counters forgotten by now, skipping those another attempt holds (PostgreSQL; SQLite
    has no row locks): it never waits on a row while holding others, so it never deadlocks."""
    stale = (select(LoginFailure.key).where(LoginFailure.last_failed_at < now - FORGET_AFTER)
             .with_for_update(skip_locked=True))
    session.execute(delete(LoginFailure).where(LoginFailure.key.in_(stale)))
    session.commit()


def succeeded(session: Session, email: str, address: str, now: datetime) -> None:
    """A complete sign-in: clear the account's failures, take its attempt off the address's count
    (whose other failures stay: signing in to one account must not buy guesses at others), and
    remember that the account signed in from this address."""
    account_key, address_key = _keys(email, address)
    session.execute(delete(LoginFailure).where(LoginFailure.key == account_key))
    session.execute(update(LoginFailure).where(LoginFailure.key == address_key, LoginFailure.count > 0)
                    .values(count=LoginFailure.count - 1))
    session.execute(_insert(session)(SignInAddress.__table__)
                    .values(email=email, address=address[:MAX_ADDRESS], first_at=now)
                    .on_conflict_do_nothing())
    session.commit()
