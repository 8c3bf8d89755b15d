"""The login throttle (services/login_throttle.py): failures for one account slow that account from
every address; an address failing across accounts is slowed without locking out a user who signed
in from it before; parallel failures each count once (no IntegrityError, no 500), in threads on
SQLite and PostgreSQL catalogs and in gunicorn's processes; the client address behind
TRUSTED_PROXIES."""
import http.cookiejar
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from backup_app import create_app
from backup_app.config import Config, trusted_proxies
from backup_app.errors import LoginFailed, TooManyLoginAttempts
from backup_app.extensions import db
from backup_app.models import AuditEvent, LoginFailure, SignInAddress
from backup_app.services import login_throttle, users
from tests.conftest import both_catalogs
from tests.web_helpers import CSRF_INPUT, EMAIL, PASSWORD, LiveApp, add_user, live_env, sign_in, text

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=timezone.utc)
BOB = "bob@example.com"
A, B = "192.0.2.10", "192.0.2.20"


def attempt(app, email: str, password: str, address: str, now: datetime = T0) -> str:
    """"signed in", "wrong" or the refusal's message."""
    with app.app_context():
        try:
            users.authenticate(db.session, email, password, address, now)
        except TooManyLoginAttempts as exc:
            return str(exc)
        except LoginFailed:
            return "wrong"
        return "signed in"


def counters(app) -> dict[str, int]:
    with app.app_context():
        return {row.key: row.count for row in db.session.scalars(select(LoginFailure))}


def known_pairs(app) -> set[tuple[str, str]]:
    with app.app_context():
        return {(row.email, row.address) for row in db.session.scalars(select(SignInAddress))}


@both_catalogs
def test_failures_for_one_account_slow_that_account_from_every_address(bare_app):
    add_user(bare_app, BOB, PASSWORD)
    for n in range(5):
        assert attempt(bare_app, EMAIL, "wrong-password", f"198.51.100.{n}") == "wrong"
    before = counters(bare_app)
    assert before[f"email:{EMAIL}"] == 5

    assert attempt(bare_app, EMAIL, PASSWORD, B) == "Too many failed sign-ins for this account; try again in 2 s"
    assert attempt(bare_app, EMAIL, PASSWORD, B, T0 + timedelta(seconds=1.5)) == \
        "Too many failed sign-ins for this account; try again in 1 s"
    assert counters(bare_app) == before, "a refused attempt is not checked, nor counted"
    assert attempt(bare_app, BOB, PASSWORD, "198.51.100.0") == "signed in", "other accounts are not slowed"

    assert attempt(bare_app, EMAIL, PASSWORD, B, T0 + timedelta(seconds=2)) == "signed in"
    assert f"email:{EMAIL}" not in counters(bare_app), "a sign-in clears the account's failures"


@both_catalogs
def test_an_address_failing_across_accounts_is_slowed_but_a_user_who_signed_in_there_is_not(bare_app):
    add_user(bare_app, BOB, PASSWORD)
    assert attempt(bare_app, EMAIL, PASSWORD, A) == "signed in"
    assert known_pairs(bare_app) == {(EMAIL, A)}
    for n in range(5):
        assert attempt(bare_app, f"nobody{n}@example.com", "guess-password", A) == "wrong"

    slowed = "Too many failed sign-ins from your address; try again in 2 s"
    assert attempt(bare_app, "nobody9@example.com", "guess-password", A) == slowed
    assert attempt(bare_app, BOB, PASSWORD, A) == slowed, "bob never signed in from A: refused unchecked"
    assert attempt(bare_app, "nobody9@example.com", "guess-password", B) == "wrong", "other addresses go on"
    assert counters(bare_app) == {**{f"email:nobody{n}@example.com": 1 for n in range(5)}, f"address:{A}": 5,
                                  "email:nobody9@example.com": 1, f"address:{B}": 1}, "refusals count nowhere"

    assert attempt(bare_app, EMAIL, PASSWORD, A) == "signed in", "a user who signed in from A before still can"
    assert attempt(bare_app, EMAIL, "wrong-password", A) == "wrong", "their attempts are checked, and counted"
    assert counters(bare_app)[f"address:{A}"] == 6 and counters(bare_app)[f"email:{EMAIL}"] == 1
    assert attempt(bare_app, "nobody9@example.com", "guess-password", A) == \
        "Too many failed sign-ins from your address; try again in 4 s", \
        "a sign-in does not clear the address's failures (one account must not buy guesses at others)"

    assert attempt(bare_app, BOB, PASSWORD, A, T0 + timedelta(seconds=4)) == "signed in", "after the wait"
    assert known_pairs(bare_app) == {(EMAIL, A), (BOB, A)}


def test_the_wait_doubles_up_to_five_minutes_and_the_message_says_how_long(bare_app):
    for n in range(7):
        assert attempt(bare_app, "nobody@example.com", "guess-password", A, T0 + timedelta(seconds=30 * n)) == "wrong"
    last = T0 + timedelta(seconds=180)
    assert attempt(bare_app, EMAIL, PASSWORD, A, last) == "Too many failed sign-ins from your address; try again in 8 s"
    with bare_app.app_context():
        db.session.get(LoginFailure, f"address:{A}").count = 20
        db.session.commit()
    assert attempt(bare_app, EMAIL, PASSWORD, A, last) == \
        "Too many failed sign-ins from your address; try again in 5 min"
    assert attempt(bare_app, EMAIL, PASSWORD, A, last + timedelta(seconds=169.5)) == \
        "Too many failed sign-ins from your address; try again in 2 min 11 s"
    assert attempt(bare_app, EMAIL, PASSWORD, A, last + timedelta(minutes=5)) == "signed in"


@both_catalogs
def test_failures_are_forgotten_after_an_hour_without_one(bare_app):
    for n in range(7):
        assert attempt(bare_app, "nobody@example.com", "guess-password", A, T0 + timedelta(seconds=30 * n)) == "wrong"
    assert counters(bare_app)[f"address:{A}"] == 7
    assert attempt(bare_app, "other@example.com", "guess-password", B, T0 + timedelta(minutes=30)) == "wrong"
    later = T0 + timedelta(minutes=3) + login_throttle.FORGET_AFTER + timedelta(seconds=1)
    assert attempt(bare_app, "nobody@example.com", "guess-password", A, later) == "wrong"
    assert counters(bare_app) == {"email:nobody@example.com": 1, f"address:{A}": 1,
                                  "email:other@example.com": 1, f"address:{B}": 1}
    forgotten = later + timedelta(minutes=30)
    assert attempt(bare_app, "third@example.com", "guess-password", A, forgotten) == "wrong"
    assert counters(bare_app) == {"email:nobody@example.com": 1, f"address:{A}": 2,
                                  "email:third@example.com": 1}, "stale counters are deleted"


@both_catalogs
def test_parallel_failures_in_threads_each_count_once(bare_app):
    """Each thread has its own session (app context), as each request has; they start together, at
    one moment: exactly the free five are checked, the rest refused."""
    threads = 16
    start = threading.Barrier(threads)

    def fail(n: int) -> str:
        start.wait(timeout=30)
        return attempt(bare_app, EMAIL, "wrong-password", A)

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(fail, range(threads)))

    assert outcomes.count("wrong") == login_throttle.FREE_FAILURES, outcomes
    assert outcomes.count("Too many failed sign-ins for this account; try again in 2 s") == threads - 5, outcomes
    assert counters(bare_app) == {f"email:{EMAIL}": 5, f"address:{A}": 5}


def login_page(url: str) -> tuple[urllib.request.OpenerDirector, str]:
    """A browser of its own (a cookie jar) that opened the sign-in page, and the page's CSRF token."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    return opener, CSRF_INPUT.search(opener.open(f"{url}/login", timeout=30).read().decode()).group(1)


def post_login(opener, url: str, token: str, email: str, password: str, headers: dict) -> tuple[int, str]:
    data = urllib.parse.urlencode({"email": email, "password": password, "csrf_token": token}).encode()
    try:
        with opener.open(urllib.request.Request(f"{url}/login", data=data, headers=headers), timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@both_catalogs
def test_parallel_failed_sign_ins_through_gunicorn_processes_count_once_each(tmp_path, catalog_url):
    """Three gunicorn processes of four threads behind one trusted proxy; 24 browsers fail at once."""
    live = LiveApp(live_env(tmp_path, catalog_url, TRUSTED_PROXIES=1), tmp_path)
    live.prepare()
    live.start_web("--workers", "3", "--threads", "4")
    try:
        browsers = 24
        start = threading.Barrier(browsers)

        def fail(n: int) -> tuple[int, str]:
            opener, token = login_page(live.url)
            start.wait(timeout=60)
            # A client's own X-Forwarded-For value comes first; the trusted proxy appends the address it saw.
            return post_login(opener, live.url, token, EMAIL, "wrong-password",
                              {"X-Forwarded-For": f"10.9.9.{n}, 203.0.113.7"})

        with ThreadPoolExecutor(browsers) as pool:
            answers = list(pool.map(fail, range(browsers)))
    finally:
        live.stop()

    statuses = [status for status, _ in answers]
    assert set(statuses) <= {401, 429}, statuses
    # The first five are checked; the rest are refused while their wait (2 s, then 4 s …) runs.
    assert login_throttle.FREE_FAILURES <= statuses.count(401) < browsers, statuses
    assert all("Too many failed sign-ins for this account" in page for status, page in answers if status == 429)
    app = create_app({"SQLALCHEMY_DATABASE_URI": catalog_url, "BACKUP_DIR": str(tmp_path / "backups")})
    assert counters(app) == {f"email:{EMAIL}": statuses.count(401), "address:203.0.113.7": statuses.count(401)}
    with app.app_context():
        db.engine.dispose()


LONGEST_WAIT = re.compile(r"Too many failed sign-ins from your address; try again in (5 min|4 min \d+ s)<")


def slow_down(app, key: str) -> None:
    """Make `key`'s wait the longest, 5 minutes from its last failure, as after a long run of guesses
    (a page's second attempt would not be sure to come within the first wait, 2 s)."""
    with app.app_context():
        db.session.get(LoginFailure, key).count = 20
        db.session.commit()


def test_the_sign_in_page_refuses_a_slowed_address_with_429_but_signs_in_a_user_known_there(bare_app):
    add_user(bare_app, BOB, PASSWORD)
    assert sign_in(bare_app.test_client()).status_code == 302  # admin signs in from the test client's address
    attacker = bare_app.test_client()
    for n in range(5):
        assert sign_in(attacker, f"nobody{n}@example.com", "guess-password").status_code == 401
    slow_down(bare_app, "address:127.0.0.1")
    refused = sign_in(attacker, BOB, PASSWORD)
    assert refused.status_code == 429 and LONGEST_WAIT.search(text(refused))
    assert sign_in(attacker, EMAIL, PASSWORD).status_code == 302


def test_without_trusted_proxies_x_forwarded_for_is_ignored(bare_app):
    client = bare_app.test_client()
    for n in range(5):
        response = sign_in_from(client, "nobody@example.com", "guess-password", f"10.0.0.{n}")
        assert response.status_code == 401
    assert counters(bare_app)["address:127.0.0.1"] == 5
    slow_down(bare_app, "address:127.0.0.1")
    response = sign_in_from(client, "other@example.com", "guess-password", "10.0.0.99")
    assert response.status_code == 429 and LONGEST_WAIT.search(text(response))


def test_one_trusted_proxy_gives_the_address_it_saw_and_its_scheme(make_app):
    app = make_app(TRUSTED_PROXIES=1)
    add_user(app)
    client = app.test_client()
    for _ in range(5):
        response = sign_in_from(client, "nobody@example.com", "guess-password", "10.0.0.1, 203.0.113.7")
        assert response.status_code == 401
    assert counters(app) == {"email:nobody@example.com": 5, "address:203.0.113.7": 5}
    # A client that writes the slowed address itself is still the address the proxy saw.
    response = sign_in_from(client, "other@example.com", "guess-password", "203.0.113.7, 203.0.113.8")
    assert response.status_code == 401

    response = sign_in_from(client, EMAIL, PASSWORD, "203.0.113.9", "https")
    assert response.status_code == 302 and "Secure" in response.headers["Set-Cookie"]
    assert response.headers["Location"] == "/dashboard"
    with app.app_context():
        sign_in_event = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert (sign_in_event.actor, sign_in_event.address) == (EMAIL, "203.0.113.9")
    assert (EMAIL, "203.0.113.9") in known_pairs(app)


def sign_in_from(client, email: str, password: str, forwarded_for: str, proto: str = "http"):
    """Sign in through a proxy that says the client had `forwarded_for` and spoke `proto`."""
    headers = {"X-Forwarded-For": forwarded_for, "X-Forwarded-Proto": proto}
    token = CSRF_INPUT.search(text(client.get("/login", headers=headers))).group(1)
    if proto == "https":
        headers["Referer"] = "https://localhost/login"  # Flask-WTF checks it on https
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token},
                       headers=headers)


@pytest.mark.parametrize("value, count", [("", 0), ("0", 0), ("2", 2), (" 1 ", 1)])
def test_trusted_proxies_is_a_count(value, count):
    assert trusted_proxies({"TRUSTED_PROXIES": value}) == count
    assert trusted_proxies({}) == 0


@pytest.mark.parametrize("value", ["-1", "two", "1.5", "yes"])
def test_trusted_proxies_that_is_not_a_count_stops_the_start(value, monkeypatch):
    monkeypatch.setenv("TRUSTED_PROXIES", value)
    with pytest.raises(ValueError, match=rf"TRUSTED_PROXIES must be the number of reverse proxies in front "
                                         rf"of the app \(0, 1, 2 …\), not '{value}'"):
        Config()  # as create_app() reads the environment
