import os

from flask import abort, current_app, g, jsonify, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from backup_app import wiring
from backup_app.api import bp
from backup_app.core.moments import parse_moment
from backup_app.errors import InvalidRequest, UnknownDatabase
from backup_app.extensions import db
from backup_app.jobs import pitr as pitr_jobs
from backup_app.jobs import records
from backup_app.jobs.submit import delete_job, queue, queue_create, queue_restore, queue_restore_set, run_here
from backup_app.models import Backup, Job, Target
from backup_app.services.backups import queries
from backup_app.services.backups.sets import find_set
from backup_app.services.overview import targets_with_health
from backup_app.services.pitr import setup as pitr
from backup_app.services.tokens import token_access
from backup_app.web import access
from backup_app.web.backups.routes import backup_filters
from backup_app.web.downloads import download_response

DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
MAX_STRING = 1024  # a URL, a path: as long as the catalog's longest column for them
MAX_NAME = 255  # a database name, as the catalog's columns hold it


@bp.before_request
def require_token():
    """Every API call needs `Authorization: Bearer <token>` (see `flask users token`): 401 without a
    valid one, 403 when the token's role is too low for the route."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    granted = token_access(db.session, token.strip()) if scheme.lower() == "bearer" and token else None
    if granted is None:
        response = jsonify(error="missing, invalid, expired or revoked API token (Authorization: Bearer <token>)")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response, 401
    g.api_user = granted.user
    if not access.allows(granted.role, request.endpoint):
        return access.refusal(granted.role)
    return None


def json_body() -> dict:
    """The request's JSON object ({} for an empty body)."""
    if not (request.content_length or request.get_data()):
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def optional_string(body: dict, key: str, max_length: int = MAX_STRING) -> str | None:
    """The body's string `key` (None when absent or empty); InvalidRequest unless a string of at
    most `max_length` characters."""
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"{key!r} must be a string")
    if value is not None and len(value) > max_length:
        raise InvalidRequest(f"{key!r} must be at most {max_length} characters")
    return value or None


def whole_number_arg(name: str, default: int) -> int:
    """The query argument `name` as an int (`default` when absent); InvalidRequest if it is not one."""
    value = request.args.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number, not {value!r}") from None


def job_accepted(job: Job):
    response = jsonify(job_id=job.id)
    response.headers["Location"] = url_for("api.get_job", job_id=job.id)
    return response, 202


@bp.post("/backups")
def create_backup():
    """Queue a backup of `database` (default: the configured target) → 202 {job_id}."""
    spec = wiring.dump_spec(optional_string(json_body(), "database"))
    g.audit_subject = spec.name
    return job_accepted(queue_create(db.session, spec))


@bp.get("/backups")
def list_backups():
    """Backups, newest first; `?database=` and `?status=` filter, `?limit=` (≤ 1000) and `?offset=` page
    (400 for another argument or a bad value, 404 for a database there is nothing of).

    The total that matches is in the X-Total-Count header.
    """
    limit, offset = whole_number_arg("limit", DEFAULT_LIMIT), whole_number_arg("offset", 0)
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise InvalidRequest(f"limit must be 1 to {MAX_LIMIT} and offset 0 or more")
    query = queries.backups_query(*backup_filters("limit", "offset"))
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    # Each backup's last verification is in its JSON: load them all in one query, not one per backup.
    # An offset past the end is an empty page (and never one too large for the database's integers).
    backups = db.session.scalars(query.options(selectinload(Backup.verifications)).limit(limit)
                                 .offset(min(offset, total)))
    response = jsonify([backup.to_dict() for backup in backups])
    response.headers["X-Total-Count"] = str(total)
    return response


@bp.get("/backups/<backup_id>")
def get_backup(backup_id):
    """One backup, shaped like `flask backup show --json`."""
    return jsonify(queries.get_backup(db.session, backup_id).to_dict())


@bp.get("/backups/<backup_id>/download")
def download_backup(backup_id):
    """The backup's bytes, streamed."""
    return download_response(backup_id)


def optional_flag(body: dict, key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise InvalidRequest(f"{key!r} must be true or false")
    return value


@bp.post("/backups/<backup_id>/restore")
def restore_backup(backup_id):
    """Queue a restore; `confirm` must name the database that changes: the target's own, `database`
    (a new one on the target's server) or `target_url`'s; `in_place`, `drop_previous`, `create_roles`
    and `no_owner` (booleans) as the CLI's flags → 202 {job_id}; 400 naming the roles the server lacks
    when that can be told before the job is queued."""
    body = json_body()
    in_place, drop_previous = optional_flag(body, "in_place"), optional_flag(body, "drop_previous")
    if in_place and drop_previous:
        raise InvalidRequest("drop_previous has nothing to drop with in_place (no previous database is kept)")
    job = queue_restore(db.session, backup_id, optional_string(body, "confirm", MAX_NAME) or "",
                        optional_string(body, "target_url"), in_place=in_place, drop_previous=drop_previous,
                        as_database=optional_string(body, "database", MAX_NAME),
                        create_roles=optional_flag(body, "create_roles"), no_owner=optional_flag(body, "no_owner"))
    return job_accepted(job)


@bp.delete("/backups/<backup_id>")
def delete_backup(backup_id):
    """Delete a backup from S3, the catalog and disk → 204."""
    run_here(db.session, delete_job(db.session, backup_id), recover=False)
    return "", 204


@bp.get("/sets/<set_id>")
def get_set(set_id):
    """A backup set: {set_id, database (its server target), backups (the globals first)}."""
    backups = find_set(db.session, set_id)
    return jsonify(set_id=set_id, database=backups[0].database, backups=[backup.to_dict() for backup in backups])


@bp.post("/sets/<set_id>/restore")
def restore_set(set_id):
    """Queue a restore of a backup set onto `target_url`'s server (default: its target's own);
    `confirm` must be that server as postgresql://user@host:port/; `drop_previous` (a boolean) as
    the CLI's flag → 202 {job_id}."""
    g.audit_subject = set_id
    body = json_body()
    job = queue_restore_set(db.session, set_id, optional_string(body, "confirm") or "",
                            optional_string(body, "target_url"), drop_previous=optional_flag(body, "drop_previous"))
    return job_accepted(job)


def named_target(name: str) -> Target:
    """The target the URL names: 404 when there is none (it is the resource, not a field)."""
    try:
        return wiring.target(name)
    except UnknownDatabase as exc:
        abort(404, description=str(exc))


def optional_port(body: dict) -> int | None:
    value = body.get("port")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535):
        raise InvalidRequest("'port' must be a whole number from 1 to 65535")
    return value


@bp.get("/targets")
def list_targets():
    """Every target, shaped like `flask targets list --json` (with its last attempt and last good backup)."""
    return jsonify(targets_with_health(db.session, wiring.all_targets(), current_app.config.get("STALE_AFTER_HOURS"),
                                       wiring.master_key()))


@bp.get("/targets/<name>/pitr")
def pitr_status(name):
    """The target's point-in-time recovery, shaped like `flask pitr status --json`."""
    target = named_target(name)
    return jsonify(pitr.status(db.session, target, wiring.target_conn(target.name)))


@bp.post("/targets/<name>/pitr/base-backups")
def pitr_base_backup(name):
    """Queue a base backup of the target's server (`incremental`: a boolean) → 202 {job_id}."""
    target = named_target(name)
    incremental = optional_flag(json_body(), "incremental")
    return job_accepted(queue(db.session, pitr_jobs.base_backup_job(target.name, incremental)))


@bp.post("/targets/<name>/pitr/restore")
def pitr_restore(name):
    """Queue a restore of the target's server as of `to` (ISO 8601 with its zone, or "latest") into
    `data_dir` (an absolute path under PITR_RESTORE_ROOT on the worker's machine), on `port`, optionally putting
    `into_database` back into the target → 202 {job_id}."""
    target = named_target(name)
    body = json_body()
    to = optional_string(body, "to")
    if to is None:
        raise InvalidRequest("'to' is required: an ISO 8601 time with its zone (2026-12-01T14:05:00Z) or \"latest\"")
    moment = parse_moment(to)
    data_dir = optional_string(body, "data_dir")
    if data_dir is None or not os.path.isabs(data_dir):
        raise InvalidRequest("'data_dir' is required: an absolute path on the machine the worker runs on")
    job = pitr_jobs.restore_job(target.name, moment, data_dir, optional_port(body),
                                optional_string(body, "into_database"), root=current_app.config["PITR_RESTORE_ROOT"])
    return job_accepted(queue(db.session, job))


@bp.post("/targets/<name>/pitr/verify")
def pitr_verify(name):
    """Queue a PITR drill (restore "latest" into a scratch directory, check, remove) → 202 {job_id}."""
    target = named_target(name)
    return job_accepted(queue(db.session, pitr_jobs.verify_job(target.name)))


@bp.get("/jobs/<job_id>")
def get_job(job_id):
    """A job's status, phase and bytes done."""
    return jsonify(records.get_job(db.session, job_id).to_dict())
