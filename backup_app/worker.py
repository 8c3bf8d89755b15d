"""`flask worker`: the background job worker, in the foreground."""
import logging

import click
from flask import current_app
from flask.cli import with_appcontext

from . import jobs
from .commands import upgrade_catalog_if_needed
from .errors import BackupError
from .logs import configure_logging


@click.command("worker")
@click.option("--workers", default=2, show_default=True,
              help="Jobs run at the same time (still at most one per target database).")
@with_appcontext
def worker_command(workers):
    """Run queued create and restore jobs until stopped (Ctrl-C finishes the running ones first)."""
    upgrade_catalog_if_needed()  # first: Alembic's logging setup replaces the root handlers
    configure_logging(current_app.config["LOG_FORMAT"], logging.INFO)
    try:
        jobs.run_worker(workers)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
