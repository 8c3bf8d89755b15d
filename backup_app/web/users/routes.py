from flask import flash, g, redirect, render_template, url_for
from flask_login import current_user

from backup_app.errors import BackupError
from backup_app.extensions import db
from backup_app.services import two_factor
from backup_app.services import users as service
from backup_app.web.backups.forms import ButtonForm
from backup_app.web.errorhandlers import status_code
from backup_app.web.users import bp
from backup_app.web.users.forms import CreateUserForm, RoleForm
from backup_app.wiring import password_hash_method


def page(form: CreateUserForm | None = None, new_password: tuple[str, str] | None = None, status: int = 200):
    """The users and the create form; `new_password` (email, password) is shown once in this answer,
    never kept in the session."""
    return render_template("users/index.html", users=service.list_users(db.session), form=form or CreateUserForm(formdata=None),
                           button=ButtonForm(), role_form=RoleForm, new_password=new_password), status


def change(action, message: str):
    """Run `action` (a service call) and go back to the list saying `message`; a refusal is shown on
    the list with its status."""
    try:
        action()
    except BackupError as exc:
        flash(str(exc), "error")
        return page(status=status_code(exc))
    flash(message, "success")
    return redirect(url_for("users.index"))



@bp.get("/")
def index():
    """Every user: role, state, last sign-in, and what an admin can change."""
    return page()


@bp.post("/")
def create():
    """Create a user; without a password, one is made up and shown once."""
    form = CreateUserForm()
    g.audit_subject = form.email.data or ""
    if not form.validate_on_submit():
        return page(form, status=400)
    password = form.password.data or service.random_password()
    try:
        user = service.create_user(db.session, form.email.data, password, password_hash_method(), form.role.data)
    except BackupError as exc:
        flash(str(exc), "error")
        return page(form, status=status_code(exc))
    flash(f"Created {user.email} ({user.role}).", "success")
    g.audit_done = True
    return page(new_password=None if form.password.data else (user.email, password))


@bp.post("/<email>/role")
def set_role(email):
    form = RoleForm()
    if not form.validate_on_submit():
        flash("Choose one of the roles.", "error")
        return page(status=400)
    return change(lambda: service.set_role(db.session, email, form.role.data),
                  f"{service.normalize_email(email)} is now {form.role.data}.")


@bp.post("/<email>/disable")
def disable(email):
    """Disable a user: their sessions and API tokens stop working at once."""
    return change(lambda: service.disable_user(db.session, email),
                  f"Disabled {service.normalize_email(email)}: signed out everywhere, API tokens refused.")


@bp.post("/<email>/enable")
def enable(email):
    return change(lambda: service.enable_user(db.session, email), f"Enabled {service.normalize_email(email)}.")


@bp.post("/<email>/reset-password")
def reset_password(email):
    """A new random password, shown once in this answer; the user's sessions end."""
    password = service.reset_password(db.session, email, password_hash_method())
    user = service.get_user(db.session, email)
    flash(f"Reset the password of {user.email}; their sessions have ended.", "success")
    g.audit_done = True
    return page(new_password=(user.email, password))


@bp.post("/<email>/reset-2fa")
def reset_two_factor(email):
    """Turn a user's two-factor sign-in off (a lost phone and recovery codes); their sessions end."""
    return change(lambda: two_factor.reset(db.session, email),
                  f"Two-factor sign-in of {service.normalize_email(email)} is off; their sessions have ended.")


@bp.route("/<email>/delete", methods=["GET", "POST"])
def delete(email):
    """Delete a user and their API tokens, after confirming on a page of its own."""
    user = service.get_user(db.session, email)
    form = ButtonForm()
    if form.validate_on_submit():
        return change(lambda: service.delete_user(db.session, user.email), f"Deleted {user.email}.")
    return render_template("users/delete.html", form=form, user=user, yourself=user.id == current_user.id)
