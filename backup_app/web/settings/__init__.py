"""Settings made in the pages: the notification URLs for every target, and a test message."""
from flask import Blueprint

bp = Blueprint("settings", __name__, url_prefix="/settings")

from backup_app.web.settings import routes  # noqa: E402, F401 - registers the views on bp
