"""The slow-down of repeated failed sign-ins, counted in the catalog per account and per address.

Two counters of failures: `email:<email>` (one account, from any address) and `address:<address>`
(one client, for any email, made-up ones too). Past FREE_FAILURES, a counter makes the next attempt
wait (2 s, doubling up to MAX_WAIT after its last failure); an attempt in that wait is refused
unchecked. The account's counter refuses every attempt for that account. The address's counter
refuses only attempts for accounts that have never signed in from that address (SignInAddress):
an address that sprays made-up or other people's accounts is slowed, and a user who signed in from
it before (everyone behind one proxy shares an address) still gets their password checked.

Counting is one INSERT … ON CONFLICT DO UPDATE per counter (SQLite and PostgreSQL), so parallel
failures each add one. A counter with no failure for FORGET_AFTER starts again from one.

Use: check() before checking a password (or a second factor), failed() after a wrong one,
succeeded() once the sign-in is complete — with two factors, only after the second: it clears the
account's counter.
"""
from datetime import datetime, timedelta

from sqlalchemy import case, delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from backup_app.errors import TooManyLoginAttempts
from backup_app.models import LoginFailure, SignInAddress

# Failures allowed before each further attempt must wait; the wait then doubles up to MAX_WAIT.
FREE_FAILURES = 5
MAX_WAIT = timedelta(minutes=5)
# A counter whose last failure is this old is forgotten: the next failure counts from one again.
FORGET_AFTER = timedelta(hours=1)
MAX_ADDRESS = 100  # characters of a client address kept (an IPv6 address has at most 45)


def throttle_wait(failures: int) -> timedelta:
    """How long to wait after the last of `failures` failed sign-ins."""
    if failures < FREE_FAILURES:
        return timedelta(0)
    return min(timedelta(seconds=2 ** (failures - FREE_FAILURES + 1)), MAX_WAIT)


def _keys(email: str, address: str) -> tuple[str, str]:
    return f"email:{email}", f"address:{address[:MAX_ADDRESS]}"


def _wait(session: Session, key: str, now: datetime) -> timedelta:
    """How long from `now` until `key` allows another attempt (zero or less: now)."""
    failure = session.get(LoginFailure, key, populate_existing=True)
    if failure is None:
        return timedelta(0)
    return failure.last_failed_at + throttle_wait(failure.count) - now


def known_address(session: Session, email: str, address: str) -> bool:
    """Whether `email` has signed in from `address` before."""
    return session.scalar(select(exists().where(SignInAddress.email == email,
                                                SignInAddress.address == address[:MAX_ADDRESS])))


def check(session: Session, email: str, address: str, now: datetime) -> None:
    """Refuse (TooManyLoginAttempts, saying how long to wait) an attempt that must wait: for this
    account, or from this address unless the account has signed in from it before."""
    account_key, address_key = _keys(email, address)
    account_wait = _wait(session, account_key, now)
    if account_wait > timedelta(0):
        raise TooManyLoginAttempts(account_wait.total_seconds(), "for this account")
    address_wait = _wait(session, address_key, now)
    if address_wait > timedelta(0) and not known_address(session, email, address):
        raise TooManyLoginAttempts(address_wait.total_seconds(), "from your address")


def _insert(session: Session):
    """The dialect's INSERT, which has on_conflict_do_update/nothing (the catalog is SQLite or PostgreSQL)."""
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert


def failed(session: Session, email: str, address: str, now: datetime) -> None:
    """Count a failed attempt for the account and for the address, each in one atomic statement."""
    insert = _insert(session)
    table = LoginFailure.__table__
    for key in _keys(email, address):
        statement = insert(table).values(key=key, count=1, last_failed_at=now)
        session.execute(statement.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={"count": case((table.c.last_failed_at < now - FORGET_AFTER, 1), else_=table.c.count + 1),
                  "last_failed_at": now}))
    session.commit()
    # Apart, so this transaction (which locks many rows) never holds one of the counters above.
    session.execute(delete(LoginFailure).where(LoginFailure.last_failed_at < now - FORGET_AFTER))
    session.commit()


def succeeded(session: Session, email: str, address: str, now: datetime) -> None:
    """A complete sign-in: forget the account's failures and remember the address it came from.
    The address's failures stay: signing in to one account must not buy more guesses at others."""
    account_key, _ = _keys(email, address)
    session.execute(delete(LoginFailure).where(LoginFailure.key == account_key))
    session.execute(_insert(session)(SignInAddress.__table__)
                    .values(email=email, address=address[:MAX_ADDRESS], first_at=now)
                    .on_conflict_do_nothing())
    session.commit()
