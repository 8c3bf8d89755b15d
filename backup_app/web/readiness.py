"""/readyz's checks: is each part the app needs up right now?

Each check is "ok", "fail", or "disabled" (s3 when MINIO_ENDPOINT is unset). The reason of a
failure goes to the log only: the endpoint is open to anyone, so it says nothing but statuses.
Every check is bounded by a short timeout; the target databases are tried all at once.
"""
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text

from backup_app import wiring
from backup_app.adapters.postgres import ping
from backup_app.core.conninfo import ConnInfo
from backup_app.errors import BackupError
from backup_app.extensions import db
from backup_app.jobs.queue import job_queue
from backup_app.models import Target
from backup_app.services import targets as target_service

OK, FAIL, DISABLED = "ok", "fail", "disabled"
TARGET_TIMEOUT = 2  # seconds to connect to a target database (libpq's smallest useful value)
MAX_PARALLEL = 8
log = logging.getLogger(__name__)


def probe(name: str, check: Callable[[], object]) -> str:
    """OK when `check()` returns; FAIL, with the reason logged, when it raises."""
    try:
        check()
    except Exception as exc:  # whatever the failure, the part is not ready; the log says why
        log.warning("readiness check %s failed: %s", name, exc)
        return FAIL
    return OK


def check_catalog() -> str:
    status = probe("catalog", lambda: db.session.execute(text("SELECT 1")))
    if status == FAIL:
        db.session.rollback()
    return status


def check_stores() -> dict[str, str]:
    """`s3` (MINIO_*'s store; disabled when unset) and `s3:<name>` for each of S3_STORES."""
    checks = {store.location: probe(store.location, store.check) for store in wiring.s3_stores()}
    return {"s3": DISABLED, **checks}


def configured_targets(catalog_ok: bool) -> list[Target]:
    """The catalog's targets and BACKUP_DATABASE_URL's (read from the setting, nothing written)."""
    targets = target_service.list_targets(db.session, wiring.env_url()) if catalog_ok else []
    env_url = wiring.env_url()
    if env_url:
        name = ConnInfo.from_url(env_url).dbname
        if name not in {target.name for target in targets}:
            targets.append(Target(name=name, dbname=name, from_env=True))
    return targets


def reach(name: str, conn: ConnInfo) -> str:
    return probe(f"target {name}", lambda: ping(conn, TARGET_TIMEOUT))


def check_targets(targets: list[Target]) -> dict[str, str]:
    """`target:<name>` → whether that database accepts a connection."""
    statuses, conns = {}, {}
    for target in targets:
        try:
            conns[target.name] = target_service.target_conn(target, wiring.env_url(), wiring.master_key())
        except BackupError as exc:  # e.g. a stored password but no APP_ENCRYPTION_KEY
            log.warning("readiness check target %s failed: %s", target.name, exc)
            statuses[f"target:{target.name}"] = FAIL
    if conns:
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(conns))) as pool:
            results = pool.map(reach, conns.keys(), conns.values())
            statuses.update({f"target:{name}": status for name, status in zip(conns, results)})
    return dict(sorted(statuses.items()))


def check_all() -> dict[str, str]:
    """Every check: catalog, local, s3 (and each other store), queue, then one per target database."""
    checks = {
        "catalog": check_catalog(),
        "local": probe("local", lambda: wiring.local_storage().check()),
        **check_stores(),
        "queue": probe("queue", lambda: job_queue().huey.pending_count()),
    }
    checks.update(check_targets(configured_targets(checks["catalog"] == OK)))
    return checks


def ready(checks: dict[str, str]) -> bool:
    """Ready unless a configured part failed ("disabled" parts do not count)."""
    return FAIL not in checks.values()
