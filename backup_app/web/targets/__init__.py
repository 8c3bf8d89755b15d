"""Targets: the databases the app backs up (pages here, `flask targets …` in commands.py)."""
from flask import Blueprint

bp = Blueprint("targets", __name__, url_prefix="/targets")

from backup_app.web.targets import routes  # noqa: E402, F401 - registers the views on bp
