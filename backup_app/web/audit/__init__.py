"""The audit log: its page and the hook that records web and API actions."""
from flask import Blueprint

bp = Blueprint("audit", __name__)

from backup_app.web.audit import routes  # noqa: E402, F401 - registers the views on bp
