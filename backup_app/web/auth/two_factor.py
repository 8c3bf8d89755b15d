"""The second step of signing in, for accounts with two-factor sign-in on; and REQUIRE_2FA, which
sends an account with a password and without it to set it up before anything else.

After the right password the session holds only a pending marker (the user's `<id>:<session_version>`
and a time limit), which signs nobody in: only a right code calls login_user.
"""
from datetime import timedelta

from flask import current_app, flash, g, jsonify, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user

from backup_app.errors import BackupError
from backup_app.extensions import db
from backup_app.models import User, utcnow
from backup_app.services import two_factor as service
from backup_app.services.users import complete_sign_in
from backup_app.web.auth import bp
from backup_app.web.auth.forms import CodeForm
from backup_app.web.auth.guard import load_user, public
from backup_app.web.errorhandlers import status_code, wants_json
from backup_app.wiring import master_key

PENDING = "two_factor_pending"
PENDING_FOR = timedelta(minutes=5)
# What an account that must set up two-factor sign-in may still reach.
ENROLMENT = {"account.two_factor", "account.two_factor_begin", "account.two_factor_confirm", "auth.logout"}
MUST_ENROL = "two-factor sign-in must be set up first"


def ask_for_code(user: User, next_url: str):
    """After the right password of `user`, whose two-factor sign-in is on: remember them for
    PENDING_FOR and ask for the code."""
    session[PENDING] = {"user": user.get_id(), "until": (utcnow() + PENDING_FOR).timestamp(), "next": next_url}
    g.audit_action = "sign-in-password"  # not signed in yet
    return redirect(url_for("auth.two_factor"))


def pending_user() -> tuple[User | None, str]:
    """The user the pending marker names, or None with the reason."""
    marker = session.get(PENDING)
    if not isinstance(marker, dict):
        return None, "Sign in with your email and password first."
    if marker["until"] < utcnow().timestamp():
        return None, f"Sign in again: the code must follow the password within {PENDING_FOR.seconds // 60} minutes."
    user = load_user(marker["user"])
    if user is None or not user.two_factor_on:
        return None, "Sign in again."
    return user, ""


@bp.route("/login/2fa", methods=["GET", "POST"])
@public
def two_factor():
    """Sign in, second step: a code from the authenticator app, or a recovery code."""
    user, reason = pending_user()
    if user is None:
        session.pop(PENDING, None)
        g.audit_error = reason
        flash(reason, "error")
        return redirect(url_for("auth.login"))
    g.audit_subject = user.email
    form = CodeForm()
    status = 200
    if form.validate_on_submit():
        try:
            service.verify_sign_in(db.session, user, form.code.data, master_key())
        except BackupError as exc:  # a wrong code (401), a wait (429), an unreadable secret (400)
            flash(str(exc), "error")
            status = status_code(exc)
        else:
            next_url = session.pop(PENDING)["next"]
            login_user(user)
            complete_sign_in(db.session, user, request.remote_addr or "unknown")
            return redirect(next_url)
    return render_template("auth/two_factor.html", form=form), status


@bp.before_app_request
def require_two_factor():
    """REQUIRE_2FA: a signed-in account with a password but without two-factor sign-in reaches only
    the page that sets it up, and sign-out. Single sign-on accounts (no password) are not affected."""
    if (not current_app.config["REQUIRE_2FA"] or request.blueprint == "api" or request.endpoint == "static"
            or request.endpoint in ENROLMENT):
        return None
    view = current_app.view_functions.get(request.endpoint)
    if view is None or getattr(view, "is_public", False) or not current_user.is_authenticated:
        return None
    if current_user.password_hash is None or current_user.two_factor_on:
        return None
    g.audit_error = MUST_ENROL
    if wants_json():
        return jsonify(error=MUST_ENROL), 403
    if request.headers.get("HX-Request"):
        return "", 403, {"HX-Redirect": url_for("account.two_factor")}
    return redirect(url_for("account.two_factor"))
