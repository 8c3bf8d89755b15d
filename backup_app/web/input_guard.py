"""What every request must be before any view reads it: no NUL anywhere, a body within
MAX_CONTENT_LENGTH.

No id, name, URL or form value of this app can hold NUL, and PostgreSQL text cannot store one:
refused here, before any view, it never reaches a catalog query (where it was a 500).

A body over MAX_CONTENT_LENGTH gets a 413 from werkzeug when its Content-Length says so; a
chunked one (no Content-Length) werkzeug would cut short at the limit without a word, so
ChunkedBodyLimit reads it first and declares the length it saw.
"""
import io

from flask import Flask, abort, request

from backup_app.web.uploads import IMPORT_PATHS, AppRequest


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


class ChunkedBodyLimit:
    """WSGI middleware: a chunked body is read here, up to one byte past MAX_CONTENT_LENGTH, and
    handed on with a Content-Length, so werkzeug answers 413 for it as for any other."""

    def __init__(self, app: Flask):
        self.app = app
        self.wsgi_app = app.wsgi_app

    def __call__(self, environ, start_response):
        limit = self.app.config.get("MAX_CONTENT_LENGTH")
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and environ.get("PATH_INFO") in IMPORT_PATHS:  # never held in memory: its length first
            start_response("411 Length Required", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"An upload of a dump must state its Content-Length (not be sent chunked).\n"]
        if limit is not None and chunked:
            body = read_at_most(environ["wsgi.input"], limit + 1)
            del environ["HTTP_TRANSFER_ENCODING"]
            environ.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))})
        return self.wsgi_app(environ, start_response)


def read_at_most(stream, size: int) -> bytes:
    """Up to `size` bytes of `stream` (fewer only at its end)."""
    chunks, left = [], size
    while left > 0:
        chunk = stream.read(min(left, 64 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def init_app(app: Flask) -> None:
    app.request_class = AppRequest  # an import's upload: its own limit, streamed to disk
    app.before_request(reject_nul)
    app.wsgi_app = ChunkedBodyLimit(app)
