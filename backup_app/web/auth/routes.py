from urllib.parse import urlsplit

from flask import current_app, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from backup_app.errors import BackupError
from backup_app.extensions import db
from backup_app.services import users as service
from backup_app.web.auth import bp, two_factor
from backup_app.web.auth.forms import LoginForm
from backup_app.web.auth.guard import public
from backup_app.web.errorhandlers import status_code


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site, never another host."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    """Sign in with email and password."""
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    form = LoginForm()
    status = 200
    if request.method == "POST" and not current_app.config["LOCAL_LOGIN"]:
        flash("Signing in with a password is turned off here: use single sign-on", "error")
        return render_template("auth/login.html", form=form), 403
    if form.validate_on_submit():
        try:
            user = service.authenticate(db.session, form.email.data, form.password.data,
                                        request.remote_addr or "unknown")
        except BackupError as exc:  # a wrong password (401), a disabled account, a wait (429)
            flash(str(exc), "error")
            status = status_code(exc)
        else:
            if user.two_factor_on:
                return two_factor.ask_for_code(user, safe_next(request.args.get("next")))
            login_user(user)
            return redirect(safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
def logout():
    """Sign out, here and in every other session of this user."""
    g.audit_actor = current_user.email  # once signed out, the request has no user to name
    service.end_sessions(db.session, current_user._get_current_object())
    logout_user()
    flash("Signed out.", "info")
    return redirect(url_for("auth.login"))
