"""Each user's own account: their password, their API tokens and their two-factor sign-in."""
from flask import Blueprint

bp = Blueprint("account", __name__, url_prefix="/account")

from backup_app.web.account import routes, two_factor  # noqa: E402, F401 - registers the views on bp
