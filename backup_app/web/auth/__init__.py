"""Sign-in and sign-out; every other page needs a signed-in user."""
from flask import Blueprint

bp = Blueprint("auth", __name__)

from backup_app.web.auth import oidc, routes, two_factor  # noqa: E402, F401 - register the views on bp
