"""The sign-in requirement, applied to every route unless it is marked @public."""
from urllib.parse import urlsplit

from flask import current_app, g, jsonify, redirect, request, url_for
from flask_login import current_user

from backup_app.extensions import db, login_manager
from backup_app.models import User
from backup_app.web import access
from backup_app.web.errorhandlers import wants_json


def public(view):
    """Mark a view as open to everyone (sign-in page, health check)."""
    view.is_public = True
    return view


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """The user a session's `<id>:<session_version>` names, unless that user has signed out or been
    disabled since (read on every request, so either ends the session at once)."""
    user_id, _, version = session_id.partition(":")
    user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
    return user if user is not None and version == str(user.session_version) and not user.disabled else None


def require_login():
    """before_request: pages redirect to sign-in, or answer 403 to a role too low for them; the API
    checks its own bearer tokens."""
    if request.endpoint is None or request.endpoint == "static" or request.blueprint == "api":
        return None
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "is_public", False):
        return None
    if current_user.is_authenticated:
        return None if access.allows(current_user.role, request.endpoint) else access.refusal(current_user.role)
    g.audit_error = "not signed in"  # an attempt that did nothing, whatever its status says
    if wants_json():
        return jsonify(error="sign in first"), 401
    if request.headers.get("HX-Request"):  # a part of a page refreshing itself: the whole page goes to sign-in
        page = urlsplit(request.referrer or "/")
        return "", 401, {"HX-Redirect": url_for("auth.login", next=page._replace(scheme="", netloc="").geturl())}
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
