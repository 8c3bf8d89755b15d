"""The account's two-factor sign-in: set it up (a QR code and a first code), new recovery codes,
turn it off. Recovery codes are shown once, in the answer that made them, never kept in the session."""
import segno
from flask import flash, g, redirect, render_template, url_for
from flask_login import current_user

from backup_app.errors import BackupError
from backup_app.extensions import db
from backup_app.services import two_factor as service
from backup_app.web.account import bp
from backup_app.web.auth.forms import CodeForm, DisableTwoFactorForm
from backup_app.web.backups.forms import ButtonForm
from backup_app.web.errorhandlers import status_code
from backup_app.wiring import master_key


def qr_code(uri: str) -> str:
    """The otpauth:// URI as a QR code, an SVG data URI for an <img> (no script, no request)."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2)


def page(code_form: CodeForm | None = None, disable_form: DisableTwoFactorForm | None = None,
         recovery_codes: list[str] | None = None, status: int = 200):
    user = current_user._get_current_object()
    enrolment = service.pending_enrolment(user, master_key())
    return render_template("account/two_factor.html", enrolment=enrolment,
                           qr=qr_code(enrolment.uri) if enrolment else None, code_form=code_form or CodeForm(),
                           disable_form=disable_form or DisableTwoFactorForm(), button=ButtonForm(),
                           recovery_codes=recovery_codes, codes_left=len(user.recovery_codes)), status


def refused(exc: BackupError, code_form: CodeForm | None = None, disable_form: DisableTwoFactorForm | None = None):
    flash(str(exc), "error")
    return page(code_form, disable_form, status=status_code(exc))


@bp.get("/two-factor")
def two_factor():
    """Two-factor sign-in: its state, and the forms to set it up, renew recovery codes or turn it off."""
    return page()


@bp.post("/two-factor/begin")
def two_factor_begin():
    """Start (or start over) setting up two-factor sign-in: a new secret, shown as a QR code."""
    if not ButtonForm().validate_on_submit():
        return page(status=400)
    try:
        service.begin_enrolment(db.session, current_user._get_current_object(), master_key())
    except BackupError as exc:
        return refused(exc)
    return redirect(url_for("account.two_factor"))


def codes_shown(make_codes, message: str):
    """Run `make_codes(code)` with the form's code from the app; the recovery codes it makes are shown
    once, in this answer."""
    form = CodeForm()
    if not form.validate_on_submit():
        return page(form, status=400)
    try:
        codes = make_codes(form.code.data)
    except BackupError as exc:
        return refused(exc, form)
    g.audit_done = True
    flash(message, "success")
    return page(recovery_codes=codes)


@bp.post("/two-factor/confirm")
def two_factor_confirm():
    """Turn two-factor sign-in on with a first code from the app; the recovery codes are shown once."""
    return codes_shown(lambda code: service.confirm_enrolment(db.session, current_user._get_current_object(), code,
                                                              master_key()),
                       "Two-factor sign-in is on: each sign-in now asks for a code from your app.")


@bp.post("/two-factor/recovery-codes")
def two_factor_recovery_codes():
    """Ten new recovery codes in place of the old ones, for a code from the app; shown once."""
    return codes_shown(lambda code: service.new_recovery_codes(db.session, current_user._get_current_object(), code,
                                                               master_key()),
                       "New recovery codes made; the old ones no longer work.")


@bp.post("/two-factor/disable")
def two_factor_disable():
    """Turn two-factor sign-in off, for a code from the app or the password."""
    form = DisableTwoFactorForm()
    if not form.validate_on_submit():
        return page(disable_form=form, status=400)
    try:
        service.disable(db.session, current_user._get_current_object(), form.proof.data, master_key())
    except BackupError as exc:
        return refused(exc, disable_form=form)
    flash("Two-factor sign-in is off: your password alone signs you in.", "success")
    return redirect(url_for("account.two_factor"))
