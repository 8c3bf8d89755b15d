"""The client's address and scheme behind TRUSTED_PROXIES reverse proxies.

With N > 0, werkzeug's ProxyFix takes the N-th X-Forwarded-For value from the right (the address the
outermost trusted proxy saw) as request.remote_addr, and the N-th X-Forwarded-Proto value from the
right as the scheme; what a client writes into those headers further left is ignored. With 0 (the
default), remote_addr is whoever connected and X-Forwarded-For is ignored.
"""
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix


def init_app(app: Flask) -> None:
    count = app.config["TRUSTED_PROXIES"]  # a whole number, checked where config.py reads it
    if count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count)
