"""The dashboard: every target's coverage at a glance."""
from flask import Blueprint

bp = Blueprint("dashboard", __name__)

from . import routes  # noqa: E402,F401
