"""/healthz (the process answers) and /readyz (every part it needs is up); both open to anyone."""
from flask import Blueprint, jsonify

from backup_app.web import readiness
from backup_app.web.auth.guard import public

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@public
def healthz():
    """Liveness: 200 {"status": "ok"}, no checks of other systems."""
    return jsonify(status="ok")


@bp.get("/readyz")
@public
def readyz():
    """Readiness: {"status": "ok"|"fail", "checks": {name: "ok"|"fail"|"disabled"}}, 503 on a failure."""
    checks = readiness.check_all()
    ok = readiness.ready(checks)
    return jsonify(status="ok" if ok else "fail", checks=checks), 200 if ok else 503
