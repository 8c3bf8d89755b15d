"""`flask backup import FILE --database NAME`: a dump made elsewhere stored as a backup."""
from pathlib import Path

import click
from flask.cli import with_appcontext

from backup_app import wiring
from backup_app.cli.group import echo_json, progress_printer, run_job_here
from backup_app.errors import ConfigurationError
from backup_app.jobs.submit import import_job
from backup_app.schema import upgrade_catalog_if_needed


@click.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--database", "database", metavar="NAME", required=True,
              help="The target the backup belongs to (its codec and encryption apply), or a label of your own "
                   "(its restores then need --target-url).")
@click.option("--json", "as_json", is_flag=True, help="Print the backup as JSON.")
@with_appcontext
def import_command(file, database, as_json):
    """Check that FILE is a dump (custom, tar or plain SQL; gzip or zstd-compressed or not) and store
    it as a backup in every location, like one the app made (as a job, here and now)."""
    upgrade_catalog_if_needed()
    if not file.is_file():
        raise ConfigurationError(f"{file} is not a file that can be read")
    wiring.import_settings(database)  # an unusable label is refused before the job
    backup = run_job_here(import_job(file.absolute(), database), None, progress_printer("stored"))
    from backup_app.cli.backup import describe, warn_failed_copies

    warn_failed_copies(backup)
    if as_json:
        echo_json(backup.to_dict())
    else:
        click.echo(f"Imported {describe(backup)}")
