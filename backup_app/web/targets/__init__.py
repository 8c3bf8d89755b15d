"""Targets: the databases the app backs up (their pages; `flask targets …` is in cli/targets.py)."""
from flask import Blueprint

bp = Blueprint("targets", __name__, url_prefix="/targets")

from backup_app.web.targets import routes  # noqa: E402, F401 - registers the views on bp
