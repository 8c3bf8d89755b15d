"""Requests with a NUL character in the path, the query, a form field or the JSON body get a 400.

No id, name, URL or form value of this app can hold NUL, and PostgreSQL text cannot store one:
refused here, before any view, it never reaches a catalog query (where it was a 500).
"""
from flask import Flask, abort, request


def contains_nul(value) -> bool:
    """Whether a string, or any key or value inside a JSON-like structure, holds NUL."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(key) or contains_nul(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return any(contains_nul(item) for item in value)
    return False


def reject_nul() -> None:
    """before_request: 400 when any part of the request holds NUL."""
    parts = [request.path, list(request.args.items(multi=True)), list(request.form.items(multi=True)),
             request.get_json(silent=True)]
    if contains_nul(parts):
        abort(400, "The request contains a NUL character.")


def init_app(app: Flask) -> None:
    app.before_request(reject_nul)
