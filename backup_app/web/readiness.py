"""/readyz's checks: is each of the app's own parts up right now?

Each check is "ok", "fail", or "disabled" (s3 when MINIO_ENDPOINT is unset). Only the app's own
parts are checked (catalog, local folder, S3 stores, queue), never a target database: the endpoint
is open to anyone, so it neither names targets nor makes the app connect to them. The reason of a
failure goes to the log only (the dashboard, behind sign-in, shows it). The checks run at once,
and the answer waits CHECK_TIMEOUT seconds in all: a part that hangs is reported as failed
instead of holding the answer, and while its check still hangs it is not checked again.
"""
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from flask import Flask, current_app
from sqlalchemy import text

from backup_app import wiring
from backup_app.extensions import db
from backup_app.jobs.queue import job_queue

OK, FAIL, DISABLED = "ok", "fail", "disabled"
CHECK_TIMEOUT = 2  # seconds all the checks together may take (a load balancer's probe allows ~3)
# Shared by every request, so checks that hang tie up at most these threads; a part whose check
# still runs from an earlier request is not checked again (see `_running`), so one hung store
# holds one thread, however often /readyz is asked.
_checkers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")
_running: dict[tuple[int, str], Future] = {}  # by (the app's id, the part's name)
_running_lock = threading.Lock()
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    status: str
    reason: str | None = None


def probe(name: str, check: Callable[[], object]) -> Check:
    """OK when `check()` returns; FAIL, with the reason logged, when it raises."""
    try:
        check()
    except Exception as exc:  # whatever the failure, the part is not ready; the log says why
        log.warning("readiness check %s failed: %s", name, exc)
        return Check(FAIL, str(exc))
    return Check(OK)


def probe_in_app(app: Flask, name: str, check: Callable[[], object]) -> Check:
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
        **store_checks(),
        "queue": lambda: job_queue().huey.pending_count(),
    }


def store_checks() -> dict[str, Callable[[], object]]:
    """Each S3 store's check by location (`s3`, `s3:<name>`)."""
    return {store.location: store.check for store in wiring.s3_stores()}


def started(app: Flask, name: str, check: Callable[[], object]) -> Future:
    """The check of `name` still running from an earlier call, else a new one."""
    key = (id(app), name)
    with _running_lock:
        future = _running.get(key)
        if future is None or future.done():
            future = _running[key] = _checkers.submit(probe_in_app, app, name, check)
        return future


def run_checks(checks: dict[str, Callable[[], object]], timeout: float = CHECK_TIMEOUT) -> dict[str, Check]:
    """Each check's outcome; one not done within `timeout` seconds of the start is FAIL."""
    app = current_app._get_current_object()
    futures = {name: started(app, name, check) for name, check in checks.items()}
    wait(futures.values(), timeout=timeout)
    outcomes = {}
    for name, future in futures.items():
        if future.done():
            outcomes[name] = future.result()
        else:
            log.warning("readiness check %s failed: no answer within %g s", name, timeout)
            outcomes[name] = Check(FAIL, f"no answer within {timeout:g} s")
    return outcomes


def check_all(timeout: float = CHECK_TIMEOUT) -> dict[str, str]:
    """Every part's status by name (`s3` "disabled" when no MINIO_ENDPOINT store is configured)."""
    return {"s3": DISABLED, **{name: check.status for name, check in run_checks(checks_to_run(), timeout).items()}}


def ready(checks: dict[str, str]) -> bool:
    """Ready unless a configured part failed ("disabled" parts do not count)."""
    return FAIL not in checks.values()
