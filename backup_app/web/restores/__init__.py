"""The Restores page: what restores left behind, each dropped or stopped after a confirmation."""
from flask import Blueprint

bp = Blueprint("restores", __name__, url_prefix="/restores")

from backup_app.web.restores import routes  # noqa: E402, F401 - registers the views on bp
