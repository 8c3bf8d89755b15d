"""Security headers on every response, and templates that need no inline script or style."""
import re
from pathlib import Path

from tests.security.routes import all_routes
from tests.web_helpers import add_backup, api_token

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
INLINE = {
    "inline <script>": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "<style> element": re.compile(r"<style\b", re.IGNORECASE),
    "style= attribute": re.compile(r"\sstyle\s*=", re.IGNORECASE),
    "on…= handler": re.compile(r"\son[a-z]+\s*=", re.IGNORECASE),
    "javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
}


def assert_security_headers(response) -> None:
    headers = response.headers
    policy = {directive.split()[0]: directive.split()[1:]
              for directive in headers["Content-Security-Policy"].split("; ")}
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert not any("'unsafe-inline'" in values or "'unsafe-eval'" in values for values in policy.values())
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"


def test_every_response_carries_the_headers(bare_app, bare_client):
    add_backup(bare_app)
    anonymous = bare_app.test_client()
    token = {"Authorization": f"Bearer {api_token(bare_app)}"}
    for route in all_routes(bare_app):
        for client, headers in ((anonymous, {}), (bare_client, {}), (anonymous, token)):
            assert_security_headers(route.call(client, headers=headers))
    for url in ("/no/such/page", "/api/no/such/call", "/static/no-such-file.css"):
        assert_security_headers(bare_client.get(url, headers=token))


def test_errors_and_downloads_carry_the_headers(bare_app, bare_client, monkeypatch):
    add_backup(bare_app)
    assert_security_headers(bare_client.get("/backups/b1/download"))
    assert_security_headers(bare_client.post("/backups/b1/delete"))  # CSRF refusal

    from backup_app.web.backups import routes

    def broken(*_args):
        raise RuntimeError("boom")
    monkeypatch.setattr(routes, "backups_query", broken)
    bare_app.config["PROPAGATE_EXCEPTIONS"] = False
    server_error = bare_client.get("/")
    assert server_error.status_code == 500
    assert_security_headers(server_error)


def test_templates_have_no_inline_script_style_or_handlers():
    templates = sorted(TEMPLATES.rglob("*.html"))
    assert templates
    found = [f"{path.relative_to(TEMPLATES)}: {what}" for path in templates
             for what, pattern in INLINE.items() if pattern.search(path.read_text())]
    assert found == []
