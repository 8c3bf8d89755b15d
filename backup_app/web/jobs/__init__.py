"""The jobs page and the JSON its script polls for progress."""
from flask import Blueprint

bp = Blueprint("jobs", __name__, url_prefix="/jobs")

from backup_app.web.jobs import routes  # noqa: E402, F401 - registers the views on bp
