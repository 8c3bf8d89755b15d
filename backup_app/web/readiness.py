"""/readyz's checks: is each of the app's own parts up right now?

Each check is "ok", "fail", or "disabled" (s3 when MINIO_ENDPOINT is unset). Only the app's own
parts are checked (catalog, local folder, S3 stores, queue), never a target database: the endpoint
is open to anyone, so it neither names targets nor makes the app connect to them. The reason of a
failure goes to the log only. The checks run at once, each given CHECK_TIMEOUT seconds: a part
that hangs is reported as failed instead of holding the answer.
"""
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

from flask import Flask, current_app
from sqlalchemy import text

from backup_app import wiring
from backup_app.extensions import db
from backup_app.jobs.queue import job_queue

OK, FAIL, DISABLED = "ok", "fail", "disabled"
CHECK_TIMEOUT = 3  # seconds each check may take
# Shared by every request, so checks that hang tie up at most these threads: later checks wait
# for one, run out of time and fail, and no request adds threads of its own.
_checkers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")
log = logging.getLogger(__name__)


def probe(name: str, check: Callable[[], object]) -> str:
    """OK when `check()` returns; FAIL, with the reason logged, when it raises."""
    try:
        check()
    except Exception as exc:  # whatever the failure, the part is not ready; the log says why
        log.warning("readiness check %s failed: %s", name, exc)
        return FAIL
    return OK


def probe_in_app(app: Flask, name: str, check: Callable[[], object]) -> str:
    """`probe` on a checker thread, in an app context of its own (its own catalog session)."""
    with app.app_context():
        return probe(name, check)


def catalog_answers() -> None:
    db.session.execute(text("SELECT 1"))


def checks_to_run() -> dict[str, Callable[[], object]]:
    """Each part's check by name: catalog, local, every S3 store (`s3`, `s3:<name>`), queue."""
    return {
        "catalog": catalog_answers,
        "local": lambda: wiring.local_storage().check(),
        **{store.location: store.check for store in wiring.s3_stores()},
        "queue": lambda: job_queue().huey.pending_count(),
    }


def check_all(timeout: float = CHECK_TIMEOUT) -> dict[str, str]:
    """Every check's status; one not done within `timeout` seconds of the start is FAIL."""
    app = current_app._get_current_object()
    futures = {name: _checkers.submit(probe_in_app, app, name, check) for name, check in checks_to_run().items()}
    wait(futures.values(), timeout=timeout)
    checks = {"s3": DISABLED}
    for name, future in futures.items():
        if future.done():
            checks[name] = future.result()
        else:
            future.cancel()  # not started yet (every checker busy): it never will be
            log.warning("readiness check %s failed: no answer within %g s", name, timeout)
            checks[name] = FAIL
    return checks


def ready(checks: dict[str, str]) -> bool:
    """Ready unless a configured part failed ("disabled" parts do not count)."""
    return FAIL not in checks.values()
