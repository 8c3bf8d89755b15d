import logging
from http import HTTPStatus

from flask import g, has_request_context, message_flashed, render_template, request
from flask_login import current_user
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge

from backup_app.extensions import db
from backup_app.models import FAILED, INTERRUPTED, Job
from backup_app.services import audit as service
from backup_app.services.events import job_queued
from backup_app.web.audit import bp
from backup_app.web.audit.forms import AuditFilterForm
from backup_app.web.paging import requested_page

log = logging.getLogger(__name__)
PER_PAGE = 100

# Endpoints whose requests are audited, with the action they perform. GETs count only for
# downloads and single sign-on's callback (a sign-in the provider sends back as a GET): showing a
# form changes nothing.
AUDITED_ENDPOINTS = {
    "auth.login": "sign-in",
    "auth.oidc_callback": "sign-in",
    "auth.logout": "sign-out",
    "auth.two_factor": "sign-in-2fa",
    "account.two_factor_confirm": "2fa-enable",
    "account.two_factor_recovery_codes": "2fa-recovery-codes",
    "account.two_factor_disable": "2fa-disable",
    "backups.create": "create",
    "backups.restore": "restore",
    "backups.restore_set": "restore-set",
    "backups.delete": "delete",
    "backups.download": "download",
    "backups.verify": "verify",
    "backups.import_dump": "import",
    "targets.add": "targets-add",
    "targets.edit": "targets-edit",
    "targets.remove": "targets-remove",
    "targets.run_now": "create",
    "targets.pitr_enable": "pitr-enable",
    "targets.pitr_disable": "pitr-disable",
    "targets.pitr_base_backup": "pitr-base-backup",
    "targets.pitr_verify": "pitr-verify",
    "targets.pitr_restore": "pitr-restore",
    "restores.drop": "restores-drop",
    "restores.stop": "restores-stop",
    "targets.notify_test": "notify-test",
    "settings.index": "settings-notify",
    "settings.notify_test": "notify-test",
    "users.create": "users-create",
    "users.set_role": "users-set-role",
    "users.disable": "users-disable",
    "users.enable": "users-enable",
    "users.delete": "users-delete",
    "users.reset_password": "users-reset-password",
    "users.reset_two_factor": "users-reset-2fa",
    "account.password": "account-password",
    "account.create_token": "users-token",
    "account.revoke_token": "users-revoke-token",
    "api.create_backup": "create",
    "api.restore_backup": "restore",
    "api.restore_set": "restore-set",
    "api.delete_backup": "delete",
    "api.download_backup": "download",
    "api.pitr_base_backup": "pitr-base-backup",
    "api.pitr_restore": "pitr-restore",
    "api.pitr_verify": "pitr-verify",
}
READS = {"download"}
GET_SIGN_INS = {"auth.oidc_callback"}
ANONYMOUS = "anonymous"


def request_subject() -> str:
    """What the request acts on: the backup, the target, else the database (named by the view,
    the form or the body); for a sign-in, the email it claims."""
    if g.get("audit_subject"):
        return g.audit_subject
    if request.view_args and "backup_id" in request.view_args:
        return request.view_args["backup_id"]
    for key in ("name", "email"):
        if request.view_args and key in request.view_args:
            return request.view_args[key]
    try:
        return subject_in_body()
    except RequestEntityTooLarge:  # refused unread: it names nothing
        return ""


def subject_in_body() -> str:
    if request.endpoint == "auth.login":
        return request.form.get("email", "")
    body = request.get_json(silent=True) if request.is_json else None
    if isinstance(body, dict) and isinstance(body.get("database"), str):
        return body["database"]
    return request.form.get("database") or request.form.get("name") or ""


def request_actor() -> str:
    """Who sent the request: the token's or the session's user (the view names the one it just
    signed out); anyone else is "anonymous", whatever email the form claims."""
    if g.get("audit_actor"):
        return g.audit_actor
    api_user = g.get("api_user")
    if api_user is not None:
        return f"{api_user.email} (API token)"
    if current_user.is_authenticated:
        return current_user.email
    return ANONYMOUS


@message_flashed.connect
def remember_error_message(_app, message, category) -> None:
    """An error flashed while a request is handled is why it was refused (or failed)."""
    if category == "error" and has_request_context():
        g.setdefault("audit_messages", []).append(str(message))


@job_queued.connect
def remember_job(job) -> None:
    """The job a request queued: its audit event names it, so the job's failure can be told there."""
    if has_request_context():
        g.audit_job_id = job.id


def request_outcome(response) -> str:
    """`ok`, `refused: <reason>` or `failed: <error>` (a 5xx; a job it queued that fails says so later)."""
    reason = (g.get("audit_error") or "; ".join(g.get("audit_messages", [])) or g.get("error_message")
              or json_error(response))
    status = response.status_code
    if status >= 500:
        return service.failed(reason or HTTPStatus(status).phrase)
    # A page's form did what it was for when it redirects; shown again (200) or refused, it did not,
    # unless its view says it did (one that shows a secret once answers 200, never redirects).
    page_form = request.method == "POST" and request.blueprint != "api" and not g.get("audit_done")
    if status >= 400 or reason or (page_form and not 300 <= status < 400):
        return service.refused(reason or (HTTPStatus(status).phrase if status >= 400 else "the form had errors"))
    return service.OK


def tell_if_job_failed(job_id: str) -> None:
    """Its job may have failed before its (now committed) event could be updated: read it anew."""
    job = db.session.execute(select(Job.status, Job.error).where(Job.id == job_id)).first()
    if job is not None and job.status in (FAILED, INTERRUPTED):
        service.job_failed(job_id, job.error or job.status)


def json_error(response) -> str | None:
    """The `{"error": …}` of an API answer that the view wrote itself (a missing token)."""
    body = response.get_json(silent=True) if response.is_json and response.status_code >= 400 else None
    return body.get("error") if isinstance(body, dict) else None


@bp.after_app_request
def record_request(response):
    """Append an audit event for each action a page or API request performed (or tried)."""
    action = AUDITED_ENDPOINTS.get(request.endpoint or "")
    audited_get = action in READS or request.endpoint in GET_SIGN_INS
    if action is None or (request.method == "GET" and not audited_get) or response.status_code == 404:
        return response
    try:
        outcome = request_outcome(response)
        action = g.get("audit_action", action)  # a view may say more exactly what was done
        if outcome != service.OK:
            action += service.FAILED_SUFFIX
        job_id = g.get("audit_job_id")
        service.record(db.session, request_actor(), action, request_subject(), address=request.remote_addr,
                       detail=outcome, job_id=job_id)
        if job_id and outcome == service.OK:
            tell_if_job_failed(job_id)
    except Exception:  # noqa: BLE001 - the response stands; the failure is logged loudly
        db.session.rollback()
        log.exception("could not append to the audit log")
    return response


@bp.get("/audit")
def index():
    """The audit log, newest first, filtered by actor and action."""
    form = AuditFilterForm(request.args)
    actor, action = form.actor.data or None, form.action.data or None
    page = requested_page(service.events_query(actor, action), PER_PAGE)
    return render_template("audit/index.html", page=page, form=form, actor=actor, action=action)
