"""Backup pages."""
from flask import Blueprint

bp = Blueprint("backups", __name__)

from . import routes  # noqa: E402,F401
