"""The dashboard: every target's coverage at a glance."""
from flask import Blueprint

bp = Blueprint("dashboard", __name__)

from backup_app.web.dashboard import routes  # noqa: E402, F401 - registers the views on bp
