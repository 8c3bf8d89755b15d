"""The Users page (admins): who may sign in, with which role; create, disable, delete, reset passwords."""
from flask import Blueprint

bp = Blueprint("users", __name__, url_prefix="/users")

from backup_app.web.users import routes  # noqa: E402, F401 - registers the views on bp
