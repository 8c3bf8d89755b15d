"""Who may do what: the role each route needs, in one table for the pages and the API.

viewer reads the catalog, jobs and status (never the data: no download); operator also makes,
verifies and downloads backups; admin does everything else (restore, delete, targets, settings,
users). A route missing from the table needs admin, and the security tests fail until it is added.
"""
from flask import g, jsonify, render_template, request
from flask_login import current_user

from backup_app.models import ADMIN, OPERATOR, ROLES, VIEWER
from backup_app.web.errorhandlers import wants_json

ROLE_NEEDED = {
    # Pages
    "auth.logout": VIEWER,
    "account.index": VIEWER,
    "account.password": VIEWER,
    "account.tokens_index": VIEWER,
    "account.create_token": VIEWER,
    "account.revoke_token": VIEWER,
    "account.two_factor": VIEWER,
    "account.two_factor_begin": VIEWER,
    "account.two_factor_confirm": VIEWER,
    "account.two_factor_recovery_codes": VIEWER,
    "account.two_factor_disable": VIEWER,
    "dashboard.index": VIEWER,
    "backups.index": VIEWER,
    "backups.detail": VIEWER,
    "backups.set_detail": VIEWER,
    "backups.storage": VIEWER,
    "backups.storage_table": VIEWER,
    "jobs.index": VIEWER,
    "jobs.row": VIEWER,
    "targets.index": VIEWER,
    "targets.retention": VIEWER,
    "targets.pitr_page": VIEWER,
    "restores.index": VIEWER,
    "audit.index": VIEWER,
    "backups.create": OPERATOR,
    "backups.import_dump": OPERATOR,
    "backups.verify": OPERATOR,
    "backups.download": OPERATOR,
    "targets.run_now": OPERATOR,
    "targets.test": OPERATOR,
    "targets.pitr_base_backup": OPERATOR,
    "targets.pitr_verify": OPERATOR,
    "backups.restore": ADMIN,
    "backups.restore_set": ADMIN,
    "backups.delete": ADMIN,
    "restores.drop": ADMIN,
    "restores.stop": ADMIN,
    "targets.add": ADMIN,
    "targets.edit": ADMIN,
    "targets.remove": ADMIN,
    "targets.pitr_enable": ADMIN,
    "targets.pitr_disable": ADMIN,
    "targets.pitr_new_cluster": ADMIN,
    "targets.pitr_restore": ADMIN,
    "settings.index": ADMIN,
    "settings.notify_test": ADMIN,
    "targets.notify_test": ADMIN,
    "users.index": ADMIN,
    "users.create": ADMIN,
    "users.set_role": ADMIN,
    "users.disable": ADMIN,
    "users.enable": ADMIN,
    "users.delete": ADMIN,
    "users.reset_password": ADMIN,
    "users.reset_two_factor": ADMIN,
    # API
    "api.list_backups": VIEWER,
    "api.get_backup": VIEWER,
    "api.get_set": VIEWER,
    "api.get_job": VIEWER,
    "api.list_targets": VIEWER,
    "api.pitr_status": VIEWER,
    "api.create_backup": OPERATOR,
    "api.download_backup": OPERATOR,
    "api.pitr_base_backup": OPERATOR,
    "api.pitr_verify": OPERATOR,
    "api.restore_backup": ADMIN,
    "api.restore_set": ADMIN,
    "api.delete_backup": ADMIN,
    "api.pitr_restore": ADMIN,
}


def rank(role: str | None) -> int:
    """A role's place, lowest first; -1 for none or an unknown one."""
    return ROLES.index(role) if role in ROLES else -1


def role_needed(endpoint: str) -> str:
    return ROLE_NEEDED.get(endpoint, ADMIN)


def allows(role: str | None, endpoint: str) -> bool:
    """Whether `role` may use the route `endpoint`."""
    return rank(role) >= rank(role_needed(endpoint))


def can(endpoint: str) -> bool:
    """For the templates: whether the signed-in user may use `endpoint` (buttons they may not use are not shown)."""
    return current_user.is_authenticated and allows(current_user.role, endpoint)


def refusal(role: str | None):
    """The 403 for a request whose `role` is too low for its route (JSON for the API and JSON clients)."""
    needed = role_needed(request.endpoint)
    message = f"this needs the {needed} role; you are {article(role)} {role}" if role else f"this needs the {needed} role"
    g.audit_error = message
    if wants_json():
        return jsonify(error=message), 403
    return render_template("errors/error.html", code=403, title="Not allowed", message=message[:1].upper() +
                           message[1:] + ". Ask an admin if you need it."), 403


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def init_app(app) -> None:
    app.jinja_env.globals.update(can=can)

