"""`flask worker`: the background job worker and its scheduler, in the foreground."""
import logging

import click
from flask import current_app
from flask.cli import with_appcontext
from huey.consumer import Consumer

from backup_app import wiring
from backup_app.core.logs import configure_logging
from backup_app.errors import BackupError
from backup_app.extensions import db
from backup_app.jobs.queue import ServerShare, job_queue
from backup_app.jobs.receivers import ReceiverSupervisor
from backup_app.jobs.recovery import recover_interrupted_jobs
from backup_app.schema import upgrade_catalog_if_needed

log = logging.getLogger(__name__)


class TickingConsumer(Consumer):
    """Huey's consumer, running its periodic tasks every `tick_seconds` instead of every minute."""

    def __init__(self, huey, tick_seconds: int, **options):
        self.tick_seconds = tick_seconds  # before Consumer.__init__, which makes the scheduler
        super().__init__(huey, **options)

    def _create_scheduler(self):
        scheduler = super()._create_scheduler()
        scheduler.periodic_task_seconds = self.tick_seconds
        return scheduler


def run_worker(workers: int) -> None:
    """Recover what a dead worker left, then run jobs, the scheduler's ticks and the WAL receivers
    of the PITR targets until stopped."""
    for job in recover_interrupted_jobs(db.session, wiring.local_storage()):
        log.warning("job %s (%s of %s) marked interrupted", job.id, job.kind, job.database)
    db.session.remove()
    queue = job_queue()
    huey = queue.huey
    if huey.immediate:
        raise BackupError("HUEY_IMMEDIATE is set: jobs run inside the request, there is nothing to consume")
    queue.share = ServerShare(workers)
    # Poll an idle SQLite queue every second at most (Huey's default backs off to 10 s);
    # Redis blocks on the queue instead of polling.
    receivers = ReceiverSupervisor(current_app._get_current_object())
    receivers.start()
    try:
        TickingConsumer(huey, current_app.config["SCHEDULER_INTERVAL"], workers=workers, worker_type="thread",
                        periodic=True, max_delay=1.0).run()
    finally:
        receivers.stop()


@click.command("worker")
@click.option("--workers", default=2, show_default=True,
              help="Jobs run at the same time (still at most one per target database, and all but one "
                   "on one server).")
@with_appcontext
def worker_command(workers):
    """Run queued jobs, and queue scheduled backups, verifies, prunes and syncs, until stopped
    (Ctrl-C finishes the running jobs first)."""
    upgrade_catalog_if_needed()  # first: Alembic's logging setup replaces the root handlers
    configure_logging(current_app.config["LOG_FORMAT"], logging.INFO)
    try:
        run_worker(workers)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
