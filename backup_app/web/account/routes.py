from flask import flash, g, redirect, render_template, url_for
from flask_login import current_user, login_user

from backup_app.errors import BackupError
from backup_app.extensions import db
from backup_app.models import utcnow
from backup_app.services import tokens
from backup_app.services import users as service
from backup_app.services.tokens import token_subject
from backup_app.web.account import bp
from backup_app.web.account.forms import PasswordForm, TokenForm
from backup_app.web.backups.forms import ButtonForm
from backup_app.web.errorhandlers import status_code
from backup_app.wiring import password_hash_method


@bp.get("/")
def index():
    """The signed-in user's account: role, last sign-in, and a form to change their password."""
    return render_template("account/index.html", form=PasswordForm())


@bp.post("/password")
def password():
    """Change one's own password (the current one is asked); every other session ends."""
    form = PasswordForm()
    user = current_user._get_current_object()
    if form.validate_on_submit():
        try:
            service.change_own_password(db.session, user, form.current.data, form.new.data,
                                        password_hash_method())
        except BackupError as exc:
            flash(str(exc), "error")
            return render_template("account/index.html", form=form), status_code(exc)
        login_user(user)  # this session goes on under the new session version
        flash("Password changed; your other sessions have ended.", "success")
        return redirect(url_for("account.index"))
    return render_template("account/index.html", form=form), 400


def tokens_page(form: TokenForm, new_secret: str | None = None, status: int = 200):
    user = current_user._get_current_object()
    return render_template("account/tokens.html", form=form, button=ButtonForm(), new_secret=new_secret,
                           tokens=tokens.list_tokens(db.session, user), now=utcnow()), status


@bp.get("/tokens")
def tokens_index():
    """The user's API tokens (never their secrets) and a form for a new one."""
    return tokens_page(TokenForm(current_user.role))


@bp.post("/tokens")
def create_token():
    """A new API token, its secret shown once in this answer."""
    form = TokenForm(current_user.role)
    if not form.validate_on_submit():
        return tokens_page(form, status=400)
    try:
        token, secret = tokens.create_token(db.session, current_user.email, form.name.data, form.role.data or None,
                                            form.expires_in_days.data)
    except BackupError as exc:
        flash(str(exc), "error")
        return tokens_page(form, status=status_code(exc))
    g.audit_subject, g.audit_done = token_subject(token), True
    flash(f"Created the token {token.name}.", "success")
    return tokens_page(TokenForm(current_user.role, formdata=None), new_secret=secret)


@bp.post("/tokens/<token_id>/revoke")
def revoke_token(token_id):
    """Revoke one of the user's own tokens; it stops working at once."""
    token = tokens.revoke_token(db.session, int(token_id) if token_id.isdigit() else -1,
                                owner=current_user._get_current_object())
    g.audit_subject = token_subject(token)
    flash(f"Revoked the token {token.name}.", "success")
    return redirect(url_for("account.tokens_index"))
