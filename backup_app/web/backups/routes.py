from dataclasses import dataclass
from pathlib import Path

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from wtforms import SelectChoice

from backup_app import wiring
from backup_app.adapters.store import Store
from backup_app.core.conninfo import ConnInfo
from backup_app.core.formatting import clip
from backup_app.errors import BackupError, InvalidBackupState, InvalidRequest, StorageUnavailable
from backup_app.extensions import db
from backup_app.jobs.records import active_jobs, jobs_of_backup
from backup_app.jobs.submit import (
    delete_job,
    import_job,
    queue_create,
    queue_restore,
    queue_restore_set,
    queue_verify,
    run_here,
)
from backup_app.models import COMPLETED, FAILED, RUNNING, Backup
from backup_app.services.backups.queries import backups_query, get_backup, get_completed_backup
from backup_app.services.backups.restore import describe_restore
from backup_app.services.backups.restore_roles import check_roles
from backup_app.services.backups.set_restore import get_set
from backup_app.services.backups.sets import find_set
from backup_app.services.overview import left_out
from backup_app.services.usage import storage_usage
from backup_app.web.backups import bp
from backup_app.web.backups.forms import (
    ButtonForm,
    CreateBackupForm,
    FilterForm,
    ImportForm,
    RestoreForm,
    RestoreSetForm,
)
from backup_app.web.downloads import download_response
from backup_app.web.errorhandlers import status_code
from backup_app.web.paging import requested_page

PER_PAGE = 50


def form_failed(exc: BackupError, template: str, **context):
    """Show the form again with the service's message."""
    flash(str(exc), "error")
    return render_template(template, **context), status_code(exc)


def database_names() -> list[str]:
    """Databases to filter by: the configured targets and every one the catalog has backups of."""
    return sorted(set(backed_up_databases()) | {t.name for t in wiring.all_targets()})


def backed_up_databases() -> list[str]:
    """Every database name in the catalog (see BACKED_UP_DATABASES)."""
    return list(db.session.scalars(BACKED_UP_DATABASES))


def hop_through_database_names():
    """The catalog's database names, read by hopping along the database index from one name
    to the next (one probe per name), where a DISTINCT would read every backup row."""
    names = select(func.min(Backup.database).label("name")).cte("names", recursive=True)
    following = select(func.min(Backup.database)).where(Backup.database > names.c.name).scalar_subquery()
    names = names.union_all(select(following).where(names.c.name.is_not(None)))
    return select(names.c.name).where(names.c.name.is_not(None))


BACKED_UP_DATABASES = hop_through_database_names()  # built once: building it cost more than running it


BACKUP_STATUSES = (RUNNING, COMPLETED, FAILED)


def backup_filters(*others: str) -> tuple[str | None, str | None]:
    """The `?database=` and `?status=` of a backup listing: 400 for any argument but these and
    `others` (a misspelt filter is not ignored) and for a status there is none of, 404 for a
    database that is neither a target nor in the catalog."""
    known = ("database", "status", *others)
    unknown = sorted(set(request.args) - set(known))
    if unknown:
        raise InvalidRequest(f"unknown filter {unknown[0]!r}; the filters are {', '.join(known)}")
    database, status = request.args.get("database") or None, request.args.get("status") or None
    if status is not None and status not in BACKUP_STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(BACKUP_STATUSES)}, not {status!r}")
    if database is not None and database not in {t.name for t in wiring.all_targets()} and db.session.scalar(
            select(Backup.id).where(Backup.database == database).limit(1)) is None:
        abort(404, description=f"no target and no backups named {database!r}")
    return database, status


@bp.get("/")
def index():
    """List backups, newest first, filtered by database and status, a page at a time."""
    database, status = backup_filters("page")
    form = FilterForm(request.args)
    form.database.choices = [SelectChoice("", "any database")] + [SelectChoice(name) for name in database_names()]
    query = backups_query(database, status).options(selectinload(Backup.verifications))
    page = requested_page(query, PER_PAGE)
    return render_template("backups/index.html", page=page, form=form, jobs=active_jobs(db.session, database),
                           filters={"database": database, "status": status})


def usage_context() -> dict:
    locations = wiring.copy_locations()
    return {"locations": locations, "usage": storage_usage(db.session, locations)}


@bp.get("/storage")
def storage():
    """Bytes and backups per target and per location."""
    return render_template("backups/storage.html", **usage_context())


@bp.get("/storage/table")
def storage_table():
    """The storage table alone: the list page loads it after itself (a sum over the whole catalog)."""
    return render_template("backups/_usage.html", **usage_context())


@bp.route("/backups/new", methods=["GET", "POST"])
def create():
    """Queue a backup of a configured database."""
    form = CreateBackupForm()
    form.database.choices = [SelectChoice(t.name) for t in wiring.all_targets()]
    if form.validate_on_submit():
        try:
            job = queue_create(db.session, wiring.dump_spec(form.database.data))
        except BackupError as exc:
            return form_failed(exc, "backups/create.html", form=form)
        flash(f"Backup of {job.database} queued (job {job.id}).", "success")
        return redirect(url_for("jobs.index", highlight=job.id))
    return render_template("backups/create.html", form=form)


@bp.route("/backups/import", methods=["GET", "POST"])
def import_dump():
    """Upload a dump made elsewhere: checked, then stored as a backup in every location (a job, run
    in this request)."""
    form = ImportForm()
    form.database.render_kw = {"list": "target-names", "autocomplete": "off"}
    targets = [t.name for t in wiring.all_targets()]
    if form.validate_on_submit():
        upload = form.file.data
        upload.stream.flush()  # on disk (see web/uploads.py): the import reads it by its path
        name = clip(upload.filename or "upload", 200)
        try:
            wiring.import_settings(form.database.data)
            backup = run_here(db.session, import_job(Path(upload.stream.name), form.database.data, name),
                              recover=False)
        except BackupError as exc:
            return form_failed(exc, "backups/import.html", form=form, targets=targets,
                               limit=current_app.config["IMPORT_MAX_BYTES"])
        flash(f"Imported {name} as backup {backup.id} of {backup.database}.", "success")
        return redirect(url_for("backups.detail", backup_id=backup.id))
    return render_template("backups/import.html", form=form, targets=targets,
                           limit=current_app.config["IMPORT_MAX_BYTES"])


@dataclass
class ObjectDetails:
    """One store's object of a backup: its content type, size and metadata, or why they cannot be shown."""

    location: str
    fields: dict | None = None
    error: str | None = None


def object_details(backup: Backup, store: Store) -> ObjectDetails:
    try:
        stat = store.stat(backup.filename)
    except StorageUnavailable as exc:
        return ObjectDetails(store.location, error=str(exc))
    if stat is None:
        return ObjectDetails(store.location, error="the object does not exist")
    fields = {"Content-Type": stat.content_type, "Size": stat.size, "ETag": stat.etag, "Last-Modified": stat.modified,
              **stat.metadata}
    return ObjectDetails(store.location, fields)


@bp.get("/backups/<backup_id>")
def detail(backup_id):
    """Every catalog field of a backup, its copies, its S3 object's metadata and its job log."""
    backup = get_backup(db.session, backup_id)
    objects = [object_details(backup, store) for store in wiring.s3_stores() if backup.copy(store.location)]
    return render_template("backups/detail.html", backup=backup, objects=objects, button=ButtonForm(),
                           jobs=jobs_of_backup(db.session, backup.id))


@bp.post("/backups/<backup_id>/verify")
def verify(backup_id):
    """Queue a restore-verify of the backup into a scratch database."""
    backup = get_backup(db.session, backup_id)
    try:
        job = queue_verify(db.session, backup.id)
    except BackupError as exc:
        flash(str(exc), "error")
        g.audit_error = str(exc)
        return redirect(url_for("backups.detail", backup_id=backup.id))
    flash(f"Verify of {backup.filename} queued (job {job.id}).", "success")
    return redirect(url_for("jobs.index", highlight=job.id))


@bp.get("/backups/<backup_id>/download")
def download(backup_id):
    """Stream the backup file (local copy, else S3)."""
    return download_response(backup_id)


def configured_target(backup: Backup) -> ConnInfo | None:
    """The backup's own database, if it is still configured."""
    try:
        return wiring.target_conn(backup.database)
    except BackupError:
        return None


def other_targets(backup: Backup) -> list[SelectChoice]:
    """The targets a backup can be restored into besides its own, each named with its database."""
    return [SelectChoice(t.name, f"{t.name} — database {t.dbname} on {t.host or 'localhost'}")
            for t in wiring.all_targets() if t.name != backup.database]


@bp.route("/backups/<backup_id>/restore", methods=["GET", "POST"])
def restore(backup_id):
    """Queue a restore, after the user typed the name of the database that will change."""
    backup = get_completed_backup(db.session, backup_id)
    form = RestoreForm()
    form.other_target.choices = other_targets(backup)
    configured = configured_target(backup)
    name = configured.dbname if configured else "the target database"
    keep_hours = current_app.config["KEEP_PREVIOUS_HOURS"]
    context = {"form": form, "backup": backup, "configured": configured,
               "beside": describe_restore(name, keep_hours=keep_hours), "in_place": describe_restore(name, in_place=True),
               "roles": check_roles(backup.file(), wiring.local_storage(), configured, wiring.pg_tools(),
                                    wiring.master_key())}
    if form.validate_on_submit():
        try:
            job = queue_restore(db.session, backup.id, form.confirm.data, in_place=form.in_place,
                                drop_previous=form.drop_previous.data, **form.destination(), **form.role_choice())
        except BackupError as exc:
            form.forget_password()
            return form_failed(exc, "backups/restore.html", **context)
        flash(f"Restore of {backup.filename} into {job.target} queued (job {job.id}).", "success")
        return redirect(url_for("jobs.index", highlight=job.id))
    form.forget_password()
    return render_template("backups/restore.html", **context)


def set_context(set_id: str, form: RestoreSetForm) -> dict:
    """What the set's page shows: its backups, the databases its run left out, its own server (when
    its target is still configured) and why it cannot be restored, if it cannot."""
    backups = find_set(db.session, set_id)
    target = backups[0].database
    try:
        own_server = wiring.target_conn(target).with_dbname("").display()
    except BackupError:
        own_server = None
    try:
        get_set(db.session, set_id)
        unrestorable = None
    except InvalidBackupState as exc:
        unrestorable = str(exc)
    return {"set_id": set_id, "backups": backups, "target": target, "skipped": left_out(db.session, set_id),
            "own_server": own_server, "unrestorable": unrestorable, "form": form}


@bp.get("/backups/sets/<set_id>")
def set_detail(set_id):
    """A backup set: the globals and each database's backup, and the form that restores it onto a server."""
    return render_template("backups/set.html", **set_context(set_id, RestoreSetForm()))


@bp.post("/backups/sets/<set_id>/restore")
def restore_set(set_id):
    """Queue a restore of the set onto a server, after the user typed that server."""
    form = RestoreSetForm()
    context = set_context(set_id, form)
    g.audit_subject = set_id
    if not form.validate_on_submit():
        form.forget_password()
        return render_template("backups/set.html", **context), 400
    try:
        job = queue_restore_set(db.session, set_id, form.confirm.data, (form.target_url.data or "").strip() or None,
                                drop_previous=form.drop_previous.data)
    except BackupError as exc:
        form.forget_password()
        return form_failed(exc, "backups/set.html", **context)
    flash(f"Restore of set {set_id} onto {job.target} queued (job {job.id}).", "success")
    return redirect(url_for("jobs.index", highlight=job.id))


@bp.route("/backups/<backup_id>/delete", methods=["GET", "POST"])
def delete(backup_id):
    """Delete a backup everywhere, after confirming."""
    backup = get_backup(db.session, backup_id)
    form = ButtonForm()
    if form.validate_on_submit():
        filename = backup.filename
        try:
            run_here(db.session, delete_job(db.session, backup.id), recover=False)
        except BackupError as exc:
            return form_failed(exc, "backups/delete.html", form=form, backup=backup)
        flash(f"Deleted {filename}.", "success")
        return redirect(url_for("backups.index"))
    return render_template("backups/delete.html", form=form, backup=backup)
