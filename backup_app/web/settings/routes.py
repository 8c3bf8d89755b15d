from flask import current_app, flash, redirect, render_template, url_for

from backup_app import wiring
from backup_app.errors import BackupError
from backup_app.extensions import db
from backup_app.services import notifications
from backup_app.web.backups.forms import ButtonForm
from backup_app.web.errorhandlers import status_code
from backup_app.web.settings import bp
from backup_app.web.settings.forms import NotificationsForm


def page(form: NotificationsForm, status: int = 200):
    stored = notifications.stored_global_urls(db.session)
    from_env = notifications.split_urls(current_app.config.get("NOTIFY_URLS"))
    if not stored:
        del form.clear
    return render_template("settings/index.html", form=form, button=ButtonForm(),
                           stored=[notifications.describe_url(url) for url in stored],
                           from_env=[notifications.describe_url(url) for url in from_env],
                           allowed=wiring.notify_allowed_hosts()), status


@bp.route("/", methods=["GET", "POST"])
def index():
    """The notification URLs for every target: what is set (scheme and host only), and a form to change them."""
    form = NotificationsForm()
    if form.validate_on_submit():
        urls, clear = form.entered(), form.clear.data
        if not urls and not clear:
            flash("Nothing entered; the stored URLs are kept.", "info")
            return redirect(url_for("settings.index"))
        try:
            notifications.set_global_urls(db.session, urls, wiring.notify_allowed_hosts())
        except BackupError as exc:
            flash(str(exc), "error")
            return page(form, status_code(exc))
        flash(f"Saved {len(urls)} notification URL{'s' if len(urls) != 1 else ''} for every target." if urls
              else "Forgot the stored notification URLs.", "success")
        return redirect(url_for("settings.index"))
    return page(form)


@bp.post("/notifications/test")
def notify_test():
    """Send a test message to the URLs for every target."""
    if ButtonForm().validate_on_submit():
        try:
            notifications.send_test(notifications.global_urls(db.session), "every target")
        except BackupError as exc:
            flash(str(exc), "error")
        else:
            flash("Sent a test message.", "success")
    return redirect(url_for("settings.index"))
