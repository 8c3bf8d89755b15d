"""The jobs page and the JSON its script polls for progress."""
from flask import Blueprint

bp = Blueprint("jobs", __name__, url_prefix="/jobs")

from . import routes  # noqa: E402,F401
