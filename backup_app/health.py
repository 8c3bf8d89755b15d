"""/healthz: the process answers (no sign-in, no checks of other systems)."""
from flask import Blueprint, jsonify

from .auth.guard import public

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@public
def healthz():
    """Liveness: 200 {"status": "ok"}."""
    return jsonify(status="ok")
