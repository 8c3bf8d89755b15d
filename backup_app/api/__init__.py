"""The JSON API: bearer tokens only (no session cookie, so no CSRF token is needed)."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")

from backup_app.api import routes  # noqa: E402, F401 - registers the views on bp
