"""Backup pages."""
from flask import Blueprint

bp = Blueprint("backups", __name__)

from backup_app.web.backups import routes  # noqa: E402, F401 - registers the views on bp
