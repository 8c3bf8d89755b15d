from flask import current_app, flash, redirect, render_template, url_for

from backup_app import wiring
from backup_app.errors import BackupError
from backup_app.extensions import db
from backup_app.services import leftovers, previous
from backup_app.web.backups.forms import ButtonForm
from backup_app.web.backups.routes import form_failed
from backup_app.web.restores import bp


@bp.get("/")
def index():
    """The databases swap restores kept and the servers point-in-time restores left running."""
    found = leftovers.list_leftovers(db.session, wiring.previous_conn)
    return render_template("restores/index.html", leftovers=found, kinds=leftovers)


@bp.route("/drop/<name>", methods=["GET", "POST"])
def drop(name):
    """Drop a kept database now, after confirming (404 when no restore kept one of that name)."""
    previous.kept_database(db.session, name)
    form = ButtonForm()
    context = {"form": form, "name": name, "action": "drop"}
    if form.validate_on_submit():
        try:
            kept = previous.drop_now(db.session, name, wiring.previous_conn, wiring.pg_tools())
        except BackupError as exc:
            return form_failed(exc, "restores/confirm.html", **context)
        flash(f"Dropped {kept.name} (kept by a restore of {kept.database}).", "success")
        return redirect(url_for("restores.index"))
    return render_template("restores/confirm.html", **context)


@bp.route("/stop/<name>", methods=["GET", "POST"])
def stop(name):
    """Stop a restored PITR server and remove its data directory, after confirming (404 when none runs there)."""
    leftovers.running_server(db.session, name)
    form = ButtonForm()
    context = {"form": form, "name": name, "action": "stop"}
    if form.validate_on_submit():
        try:
            stopped = leftovers.stop_server(db.session, name, wiring.pg_tools(), current_app.config["PITR_OS_USER"])
        except BackupError as exc:
            return form_failed(exc, "restores/confirm.html", **context)
        flash(f"Stopped the server on 127.0.0.1:{stopped.port} and removed {stopped.data_dir}.", "success")
        return redirect(url_for("restores.index"))
    return render_template("restores/confirm.html", **context)
