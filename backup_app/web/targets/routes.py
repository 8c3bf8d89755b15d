from datetime import datetime

from flask import current_app, flash, g, redirect, render_template, url_for

from backup_app import wiring
from backup_app.core.conninfo import ConnInfo
from backup_app.errors import BackupError
from backup_app.extensions import db
from backup_app.jobs import pitr as pitr_jobs
from backup_app.jobs.records import active_jobs
from backup_app.jobs.submit import queue, queue_create
from backup_app.models import Job, Target, isoformat
from backup_app.services import notifications
from backup_app.services import targets as service
from backup_app.services.backups.queries import latest_backups
from backup_app.services.overview import attempt_failed, attempt_problem, newest_create_jobs, newest_sets
from backup_app.services.pitr import setup as pitr
from backup_app.services.previous import kept_databases
from backup_app.services.prune import prune
from backup_app.web.backups.forms import ButtonForm
from backup_app.web.backups.routes import form_failed
from backup_app.web.targets import bp
from backup_app.web.targets.forms import (
    CONNECTION_FIELDS,
    BaseBackupForm,
    PitrDisableForm,
    PitrRestoreForm,
    TargetForm,
    stripped,
)


def next_runs(target) -> str:
    """' Next backup 2026-11-26 03:00:00 UTC.' for the flash after a save."""
    if not (target.schedule and target.schedule_enabled):
        return ""
    return f" Next backup {target.next_run_at:%Y-%m-%d %H:%M:%S} UTC."


@bp.get("/")
def index():
    """Every target: connection, schedules, retention, storage, its last attempt and its last backup
    (a server target's newest set, with its databases under it)."""
    targets = wiring.all_targets()
    return render_template("targets/index.html", targets=targets, env_url=wiring.env_url(),
                           latest=latest_backups(db.session), runs=newest_create_jobs(db.session),
                           sets=newest_sets(db.session, targets), attempt_failed=attempt_failed,
                           attempt_problem=attempt_problem, kept=kept_databases(db.session), button=ButtonForm())


def where_notifications_go(form: TargetForm) -> None:
    """Say beside the notification URLs which hosts they may reach (NOTIFY_ALLOWED_HOSTS)."""
    allowed = wiring.notify_allowed_hosts()
    form.notify.description += (f" They may only reach {', '.join(allowed)} (NOTIFY_ALLOWED_HOSTS)." if allowed
                                else " They may reach any host (NOTIFY_ALLOWED_HOSTS is not set).")


@bp.route("/new", methods=["GET", "POST"])
def add():
    """Add a database to back up."""
    form = TargetForm()
    del form.clear_password, form.clear_notify, form.verify_server, form.clear_verify_server
    where_notifications_go(form)
    if form.validate_on_submit():
        try:
            target = service.add_target(db.session, form.name.data.strip(), form.conn(), form.settings(),
                                        wiring.master_key(), wiring.env_url(), wiring.notify_allowed_hosts())
        except BackupError as exc:
            return form_failed(exc, "targets/form.html", form=form, target=None)
        flash(f"Added {target.name}.{next_runs(target)}", "success")
        return redirect(url_for("targets.index"))
    return render_template("targets/form.html", form=form, target=None)


def where_verifications_go(form: TargetForm, target: Target) -> None:
    """Say beside the verification server whether one is stored (host:port/dbname, never its password)."""
    if not target.verify_url_encrypted:
        del form.clear_verify_server
        return
    key = wiring.master_key()
    url = service.verify_server_url(target, key)
    if key is None:
        where = "one (APP_ENCRYPTION_KEY is not set, so it cannot be read)"
    elif url == service.VERIFY_SERVER_UNREADABLE:
        where = "one, unreadable with this APP_ENCRYPTION_KEY (forget it, or give a whole new URL)"
    else:
        conn = ConnInfo.from_url(url)
        where = f"{conn.host or 'localhost'}:{conn.port or 5432}/{conn.dbname}"
    form.verify_server.description = (f"Stored: {where}; the rest of its URL is never shown. Leave empty to keep "
                                       "it, or give a whole new URL.")


def changed_verify_server(form: TargetForm) -> tuple[bool, str | None]:
    """(whether the edit changes the target's verify server, the new URL or None to forget it)."""
    url = stripped(form.verify_server)
    if url:
        return True, url
    return bool(form.clear_verify_server and form.clear_verify_server.data), None


@bp.route("/<name>/edit", methods=["GET", "POST"])
def edit(name):
    """Change a target's connection (a new password, or the stored one kept) and settings."""
    target = wiring.target(name)
    form = TargetForm(obj=target)
    del form.name
    if not form.is_submitted():
        form.exclude.data = ", ".join(target.excluded)
    if target.from_env:
        for field in CONNECTION_FIELDS:
            delattr(form, field)
    else:
        form.password.description = ("Leave empty to keep the stored password (it is never shown). A change of "
                                     "host, port, user, database or SSL mode forgets it unless it is entered again.")
    stored = [notifications.describe_url(url) for url in (target.notify_urls or "").split()]
    if stored:
        form.notify.description = (f"Stored: {', '.join(stored)} (the rest of each URL is never shown: it may "
                                   "carry tokens). Leave empty to keep them, or give the whole new list, one per line.")
    else:
        del form.clear_notify
    where_notifications_go(form)
    where_verifications_go(form, target)
    context = {"form": form, "target": target, "env_url": wiring.env_url(), "button": ButtonForm()}
    if form.validate_on_submit():
        conn = None if target.from_env else form.conn()
        clear_password = conn is not None and form.clear_password.data
        forgotten = conn is not None and not clear_password and service.forgets_password(target, conn)
        change_verify, verify_url = changed_verify_server(form)
        try:
            if change_verify:  # first: a bad URL is refused before anything is saved
                service.check_verify_server(verify_url, wiring.master_key())
            service.update_target(db.session, target.name, form.settings(target.notify_urls), wiring.master_key(),
                                  conn, clear_password=clear_password, env_url=wiring.env_url(),
                                  notify_hosts=wiring.notify_allowed_hosts())
            if change_verify:  # after the edit is accepted: a refused edit stores nothing
                service.set_verify_server(db.session, target.name, verify_url, wiring.master_key(),
                                          wiring.env_url())
        except BackupError as exc:
            return form_failed(exc, "targets/form.html", **context)
        forgot = (" Its stored password was forgotten because its address changed: enter it again if the server "
                  "needs one." if forgotten else "")
        flash(f"Saved {target.name}.{next_runs(target)}{forgot}", "success")
        return redirect(url_for("targets.index"))
    return render_template("targets/form.html", **context)


@bp.route("/<name>/remove", methods=["GET", "POST"])
def remove(name):
    """Forget a target after confirming; its backups stay."""
    target = wiring.target(name)
    form = ButtonForm()
    context = {"form": form, "target": target, "env_url": wiring.env_url()}
    if form.validate_on_submit():
        try:
            service.remove_target(db.session, target.name)
        except BackupError as exc:
            return form_failed(exc, "targets/remove.html", **context)
        flash(f"Removed {name}; its backups are kept.", "success")
        return redirect(url_for("targets.index"))
    return render_template("targets/remove.html", **context)


@bp.post("/<name>/test")
def test(name):
    """Connect to the target: its server version and the pg_dump for it, or why not (CSRF-checked like every POST)."""
    target = wiring.target(name)
    try:
        flash(f"{target.name}: {service.check_connection(wiring.target_conn(target.name), wiring.pg_tools())}",
              "success")
    except BackupError as exc:
        flash(f"{target.name}: {exc}", "error")
    return redirect(url_for("targets.index"))


@bp.post("/<name>/notify-test")
def notify_test(name):
    """Send a test message where news about the target goes (the URLs for every target and its own)."""
    target = wiring.target(name)
    try:
        notifications.send_test(notifications.urls_for(target.name), target.name)
    except BackupError as exc:
        flash(f"{target.name}: {exc}", "error")
    else:
        flash(f"{target.name}: sent a test message.", "success")
    return redirect(url_for("targets.edit", name=target.name))


@bp.post("/<name>/run")
def run_now(name):
    """Queue a backup of the target now."""
    target = wiring.target(name)
    try:
        job = queue_create(db.session, wiring.dump_spec(target.name))
    except BackupError as exc:
        flash(f"{target.name}: {exc}", "error")
        g.audit_error = str(exc)
        return redirect(url_for("targets.index"))
    flash(f"Backup of {job.database} queued (job {job.id}).", "success")
    return redirect(url_for("jobs.index", highlight=job.id))


@bp.get("/<name>/retention")
def retention(name):
    """What the target's retention policy would delete now, and why (a dry run of prune)."""
    target = wiring.target(name)
    report = prune(db.session, [target], wiring.local_storage(), wiring.s3_stores(), dry_run=True,
                   pitr_stores=wiring.pitr_stores(), pitr_readers=pitr_jobs.pitr_readers(db.session))
    return render_template("targets/retention.html", target=target, doomed=report.deleted,
                           pitr=report.pitr_lines("Would delete"))


STATUS_TIMES = ("last_segment_at", "recoverable_from", "recoverable_to", "verified_at", "verified_to",
                "base_next_run_at")
BASE_BACKUP_TIMES = ("started_at", "finished_at")


def with_datetimes(record: dict, keys: tuple[str, ...]) -> dict:
    """`record` with its ISO 8601 times at `keys` as datetimes, for the pages' time filters."""
    return {**record, **{key: datetime.fromisoformat(record[key]) for key in keys if record.get(key)}}


def pitr_context(target: Target, restore_form: PitrRestoreForm | None = None) -> dict:
    state = with_datetimes(pitr.status(db.session, target, wiring.target_conn(target.name)), STATUS_TIMES)
    state["base_backups"] = [with_datetimes(base, BASE_BACKUP_TIMES) for base in state["base_backups"]]
    # Once PITR is off, what is left to disable is the slot: its box comes ticked.
    return {"target": target, "state": state, "button": ButtonForm(), "jobs": active_jobs(db.session, target.name),
            "disable_form": PitrDisableForm(drop_slot=not target.pitr_enabled),
            "base_form": BaseBackupForm(), "restore_form": restore_form or PitrRestoreForm(timezone=target.timezone)}


@bp.get("/<name>/pitr")
def pitr_page(name):
    """Point-in-time recovery of a target: its WAL receiver, recoverable window, drills and base backups."""
    return render_template("targets/pitr.html", **pitr_context(wiring.target(name)))


def back_to_pitr(target: Target, exc: BackupError):
    """To the PITR page with the service's message (and the audit log told it failed)."""
    flash(f"{target.name}: {exc}", "error")
    g.audit_error = str(exc)
    return redirect(url_for("targets.pitr_page", name=target.name))


@bp.post("/<name>/pitr/enable")
def pitr_enable(name):
    """Check the target's server, create its replication slot and archive its WAL from now on."""
    target = wiring.target(name)
    try:
        advice = pitr.enable(db.session, target, wiring.target_conn(target.name), wiring.pg_tools())
    except BackupError as exc:
        return back_to_pitr(target, exc)
    flash(f"PITR is on for {target.name}.", "success")
    for line in advice:
        flash(line, "info")
    return redirect(url_for("targets.pitr_page", name=target.name))


@bp.post("/<name>/pitr/new-cluster")
def pitr_new_cluster(name):
    """Archive the other cluster now at the target's address as a new lineage, from a new base backup."""
    target = wiring.target(name)
    try:
        advice = pitr.enable(db.session, target, wiring.target_conn(target.name), wiring.pg_tools(), new_cluster=True)
    except BackupError as exc:
        return back_to_pitr(target, exc)
    for line in advice:
        flash(line, "info")
    return pitr_job_queued(target, lambda: pitr_jobs.base_backup_job(target.name),
                           f"A new lineage (cluster {target.pitr_system_identifier}) is archived; its first base "
                           f"backup of {target.name}")


@bp.post("/<name>/pitr/disable")
def pitr_disable(name):
    """Stop archiving the target's WAL (what is archived is kept); drop its slot if ticked."""
    target = wiring.target(name)
    form = PitrDisableForm()
    try:
        lines = pitr.disable(db.session, target, wiring.target_conn(target.name), form.drop_slot.data)
    except BackupError as exc:
        return back_to_pitr(target, exc)
    flash(lines[0], "success")
    for line in lines[1:]:
        flash(line, "info")
    return redirect(url_for("targets.pitr_page", name=target.name))


def pitr_job_queued(target: Target, make_job, what: str):
    """Queue the job `make_job()` builds and show it on the jobs page, or go back with why not."""
    try:
        job = queue(db.session, make_job())
    except BackupError as exc:
        return back_to_pitr(target, exc)
    return job_page(job, f"{what} queued (job {job.id}).")


def job_page(job: Job, message: str):
    flash(message, "success")
    return redirect(url_for("jobs.index", highlight=job.id))


@bp.post("/<name>/pitr/base-backups")
def pitr_base_backup(name):
    """Queue a base backup of the target's whole server (incremental if ticked)."""
    target = wiring.target(name)
    incremental = BaseBackupForm().incremental.data
    return pitr_job_queued(target, lambda: pitr_jobs.base_backup_job(target.name, incremental),
                           f"{'Incremental' if incremental else 'Full'} base backup of {target.name}")


@bp.post("/<name>/pitr/verify")
def pitr_verify(name):
    """Queue a PITR drill: restore "latest" into a scratch directory, check it answers, remove it."""
    target = wiring.target(name)
    return pitr_job_queued(target, lambda: pitr_jobs.verify_job(target.name), f"PITR drill of {target.name}")


@bp.post("/<name>/pitr/restore")
def pitr_restore(name):
    """Queue a restore of the target's server as of a moment (or the latest) into a data directory."""
    target = wiring.target(name)
    form = PitrRestoreForm()
    if not form.validate_on_submit():
        return render_template("targets/pitr.html", **pitr_context(target, form))
    moment, data_dir = form.moment(), form.data_dir.data.strip()
    try:
        job = queue(db.session, pitr_jobs.restore_job(target.name, moment, data_dir, form.port.data,
                                                      stripped(form.into_database),
                                                      root=current_app.config["PITR_RESTORE_ROOT"]))
    except BackupError as exc:
        return form_failed(exc, "targets/pitr.html", **pitr_context(target, form))
    return job_page(job, f"Restore of {target.name} as of {isoformat(moment) or 'latest'} into {data_dir} "
                         f"queued (job {job.id}).")
