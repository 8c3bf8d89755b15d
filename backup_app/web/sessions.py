"""The session cookie is marked Secure whenever the request came over https: to this server
itself, or to a proxy in front that says so in X-Forwarded-Proto. SESSION_COOKIE_SECURE=true
marks it Secure always.

X-Forwarded-Proto is taken from anyone here: a client that sends it over plain http only gets a
cookie its browser will not send back. Only with TRUSTED_PROXIES (web/proxies.py) does it decide
more: then the trusted proxy's value is the request's scheme (request.is_secure), for the URLs the
app builds and the CSRF checks too.
"""
from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface


def came_over_https() -> bool:
    """Whether the client spoke https: to this server, or to the first proxy on its way."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.is_secure or forwarded == "https"


class SessionInterface(SecureCookieSessionInterface):
    def get_cookie_secure(self, app: Flask) -> bool:
        return super().get_cookie_secure(app) or came_over_https()


def init_app(app: Flask) -> None:
    app.session_interface = SessionInterface()
