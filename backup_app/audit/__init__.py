"""The audit log: its page, `flask audit list`, and the hook that records web and API actions."""
from flask import Blueprint

bp = Blueprint("audit", __name__)

from . import routes  # noqa: E402,F401
