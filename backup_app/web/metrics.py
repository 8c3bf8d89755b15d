"""/metrics in Prometheus' text format, computed from the catalog at each scrape.

Nothing is counted in process memory: every gunicorn worker reads the same catalog, so any of
them answers the same. Off (404) unless METRICS_TOKEN is set; then only
`Authorization: Bearer <METRICS_TOKEN>` is answered.
"""
import hmac

from flask import Blueprint, Response, abort, current_app, jsonify, request

from backup_app.extensions import db
from backup_app.web.auth.guard import public

bp = Blueprint("metrics", __name__)


def authorized(token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@bp.get("/metrics")
@public  # not behind sign-in: behind METRICS_TOKEN instead
def metrics():
    """The catalog's metrics for Prometheus; 404 unless METRICS_TOKEN is set, 401 without it."""
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        abort(404)
    if not authorized(token):
        response = jsonify(error="missing or invalid metrics token (Authorization: Bearer <METRICS_TOKEN>)")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response, 401
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder

    from backup_app.web.metrics_collector import CatalogCollector, target_names

    registry = CollectorRegistry(auto_describe=False)
    registry.register(CatalogCollector(db.session, target_names(db.session)))
    encode, content_type = choose_encoder(request.headers.get("Accept"))  # text, or OpenMetrics if asked
    return Response(encode(registry), content_type=content_type)
