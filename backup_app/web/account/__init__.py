"""Each user's own account: their password and their API tokens."""
from flask import Blueprint

bp = Blueprint("account", __name__, url_prefix="/account")

from backup_app.web.account import routes  # noqa: E402, F401 - registers the views on bp
