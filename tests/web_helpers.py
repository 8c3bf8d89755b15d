"""Helpers for the tests of the pages and the API."""
import re

from backup_app.extensions import db
from backup_app.services import users

EMAIL = "admin@example.com"
PASSWORD = "correct-horse-battery"
CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def add_user(app, email: str = EMAIL, password: str = PASSWORD) -> None:
    with app.app_context():
        users.create_user(db.session, email, password)


def api_token(app, email: str = EMAIL) -> str:
    with app.app_context():
        return users.create_api_token(db.session, email)


def csrf_token(client, url: str) -> str:
    """The CSRF token of the form on the page at `url` (the session keeps it valid)."""
    page = client.get(url)
    match = CSRF_INPUT.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {url} ({page.status_code})"
    return match.group(1)


def submit(client, url: str, data: dict | None = None, form_url: str | None = None, **kwargs):
    """POST a form to `url` with the token from the page that shows it (`form_url`, default `url`)."""
    token = csrf_token(client, form_url or url)
    return client.post(url, data={**(data or {}), "csrf_token": token}, **kwargs)


def sign_in(client, email: str = EMAIL, password: str = PASSWORD):
    return submit(client, "/login", {"email": email, "password": password})


def text(response) -> str:
    return response.get_data(as_text=True)
