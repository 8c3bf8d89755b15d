"""`flask backup …`: the same services the pages and the API call.
"""
import sys
from pathlib import Path

import click
from flask import current_app

from backup_app import wiring
from backup_app.cli.backup_import import import_command
from backup_app.cli.group import ServiceGroup, confirm, echo_json, progress_printer, run_job_here, run_reported
from backup_app.core.formatting import human_size
from backup_app.core.sqltext import names
from backup_app.errors import ConfigurationError, VerificationFailed
from backup_app.extensions import db
from backup_app.jobs.pitr import pitr_readers
from backup_app.jobs.submit import (
    app_wide_job,
    create_job,
    delete_job,
    download_job,
    restore_job,
    restore_set_job,
    verify_job,
)
from backup_app.models import COPY_FAILED, PRUNE, SYNC
from backup_app.schema import upgrade_catalog_if_needed
from backup_app.services.backups.queries import get_backup, get_completed_backup, list_backups
from backup_app.services.backups.restore import describe_restore
from backup_app.services.backups.set_restore import get_set
from backup_app.services.prune import prune
from backup_app.services.rescan import rescan

backup_cli = ServiceGroup("backup", help="Create, list, restore, download and delete backups.")
backup_cli.add_command(import_command)


def warn_failed_copies(backup) -> None:
    for copy in backup.copies:
        if copy.status == COPY_FAILED:
            click.echo(f"Warning: {copy.location} copy failed: {copy.error}", err=True)


def describe(backup) -> str:
    copies = ", ".join(f"{c.location}: {c.status}" for c in backup.copies) or "no copies"
    return f"{backup.id}  {backup.filename}  {human_size(backup.size_bytes)}  {backup.status}  ({copies})"


@backup_cli.command("create")
@click.option("--database", "database", metavar="NAME", help="Target to back up (default: BACKUP_DATABASE_URL).")
@click.option("--json", "as_json", is_flag=True, help="Print the backup as JSON.")
def create_command(database, as_json):
    """Dump a database to the local folder and S3 at the same time (as a job, here and now)."""
    upgrade_catalog_if_needed()
    spec = wiring.dump_spec(database)
    click.get_current_context().meta["audit.subject"] = spec.name
    if spec.all_databases:
        run_reported(create_job(spec), lambda result: show_set(result, as_json), progress_printer("dumped"))
        return
    backup = run_job_here(create_job(spec), None, progress_printer("dumped"))
    warn_failed_copies(backup)
    if as_json:
        echo_json(backup.to_dict())
    else:
        click.echo(f"Created {describe(backup)}")


def show_set(result, as_json: bool) -> None:
    """A server target's backup set: each backup, then what was left out."""
    for backup in result.backups:
        warn_failed_copies(backup)
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(f"Backup set {result.set_id}:")
    for backup in result.backups:
        click.echo(f"  {backup.source_database or '(globals)'}  {describe(backup)}"
                   + (f"  error: {backup.error}" if backup.error else ""))
    for skipped in result.skipped:
        click.echo(f"  {skipped['database']}  not backed up: {skipped['reason']}")


@backup_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_command(as_json):
    """List backups, newest first."""
    upgrade_catalog_if_needed()
    backups = list_backups(db.session)
    if as_json:
        echo_json([b.to_dict() for b in backups])
        return
    if not backups:
        click.echo("No backups.")
    for backup in backups:
        click.echo(f"{backup.created_at:%Y-%m-%d %H:%M:%S}  {backup.database}  {describe(backup)}")


@backup_cli.command("show")
@click.argument("backup_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the backup as JSON.")
def show_command(backup_id, as_json):
    """Show one backup and where its copies are."""
    upgrade_catalog_if_needed()
    backup = get_backup(db.session, backup_id)
    if as_json:
        echo_json(backup.to_dict())
        return
    data = backup.to_dict()
    copies = data.pop("copies")
    data["size"] = human_size(backup.size_bytes)
    for key, value in data.items():
        click.echo(f"{key + ':':<16}{'' if value is None else value}")
    for copy in copies:
        extra = f" ({copy['error']})" if copy["error"] else ""
        click.echo(f"copy {copy['location'] + ':':<11}{copy['status']}  {copy['uri']}{extra}")


@backup_cli.command("restore")
@click.argument("backup_id", metavar="ID")
@click.option("--target-url", metavar="URL", help="Restore into this database instead of the backup's own.")
@click.option("--target-url-stdin", is_flag=True,
              help="Read --target-url from the first line of stdin (a password stays off the command line).")
@click.option("--as-database", metavar="NEW",
              help="Restore into a new database NEW on the target's own server (its stored credentials); "
                   "refused if NEW exists.")
@click.option("--in-place", is_flag=True,
              help="Replace the objects in the current database, in one transaction (pg_restore --clean), "
                   "instead of building a new one beside it: for a role that cannot create databases.")
@click.option("--drop-previous", is_flag=True,
              help="Drop the previous database once the restored one has taken its place "
                   "(default: keep it as <name>_before_restore_<time>).")
@click.option("--create-roles", is_flag=True,
              help="Create the roles the backup needs that the server lacks (owners, grantees), from the newest "
                   "globals backup of the backup's target (none yet: from its server as it is now); without it such a "
                   "restore stops before it writes.")
@click.option("--no-owner", is_flag=True,
              help="Leave owners and grants out (pg_restore --no-owner --no-acl): the objects are owned by the "
                   "restoring role; for a server where roles cannot be created. Custom-format backups only.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help='Print {"backup", "database", "previous_database"}.')
def restore_command(backup_id, target_url, target_url_stdin, as_database, in_place, drop_previous, create_roles,
                    no_owner, yes, as_json):
    """Restore a backup (local file if intact, else an S3 copy) beside the database, then swap;
    or, with --as-database, into a new database."""
    upgrade_catalog_if_needed()
    if in_place and drop_previous:
        raise ConfigurationError("--drop-previous has nothing to drop with --in-place (no previous database is kept)")
    if target_url_stdin:
        target_url = url_from_stdin(target_url)
    backup = get_completed_backup(db.session, backup_id)
    conn = wiring.restore_conn(backup.database, target_url, as_database=as_database)
    effect = describe_restore(conn.dbname, in_place=in_place, drop_previous=drop_previous,
                              keep_hours=current_app.config["KEEP_PREVIOUS_HOURS"], new_database=bool(as_database))
    job = restore_job(db.session, backup.id, conn.dbname, target_url, in_place=in_place, drop_previous=drop_previous,
                      as_database=as_database, create_roles=create_roles,
                      no_owner=no_owner)  # refused before the question
    confirm(f"Restore {backup.filename} into {conn.display()}? {effect}", yes)
    restored = run_job_here(job, target_url, progress_printer("read"))
    if as_json:
        echo_json({"backup": restored.backup_id, "database": restored.database,
                   "previous_database": restored.previous_database})
        return
    click.echo(f"Restored backup {backup.id} into {conn.display()}")
    if restored.roles_created:
        click.echo(f"Roles created first: {names(restored.roles_created)}")
    if restored.swap_seconds is not None:
        click.echo(f"Swapped in: {restored.database} was unavailable for {restored.swap_seconds:.3f} s "
                   f"({restored.sessions_ended} session(s) ended)")
    if restored.previous_database:
        click.echo(f"The previous database is kept as {restored.previous_database}")
    for warning in restored.warnings:
        click.echo(f"Warning: {warning}", err=True)


@backup_cli.command("restore-set")
@click.argument("set_id", metavar="SET_ID")
@click.option("--target-url", metavar="URL",
              help="The server to restore onto, postgresql://user@host:port/ (default: the set's own server).")
@click.option("--target-url-stdin", is_flag=True, help="Read --target-url from the first line of stdin.")
@click.option("--drop-previous", is_flag=True,
              help="Drop each database a restored one replaced (default: keep it as <name>_before_restore_<time>).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print {set_id, server, roles, databases} as JSON.")
def restore_set_command(set_id, target_url, target_url_stdin, drop_previous, yes, as_json):
    """Restore a backup set onto a server: its roles (missing ones created), then every database
    (created when missing, built beside and swapped in when present)."""
    upgrade_catalog_if_needed()
    if target_url_stdin:
        target_url = url_from_stdin(target_url)
    backups = get_set(db.session, set_id)
    job = restore_set_job(db.session, set_id, target_url, drop_previous=drop_previous)
    names = ", ".join(b.source_database for b in backups if b.source_database)
    kept = "dropped" if drop_previous else "kept as <name>_before_restore_<time>"
    confirm(f"Restore set {set_id} onto {job.target}? Roles it lacks are created; the databases {names} are "
            f"restored, each one that exists there built beside it and swapped in (the current one {kept}).", yes)

    def show(outcome) -> None:
        if as_json:
            echo_json(outcome.to_dict())
            return
        for line in outcome.lines():
            click.echo(line)
    run_reported(job, show, progress_printer("read"), target_url)


def url_from_stdin(given: str | None) -> str:
    """The connection URL on stdin's first line (for --target-url-stdin)."""
    if given:
        raise ConfigurationError("give --target-url or --target-url-stdin, not both")
    url = sys.stdin.readline().strip()
    if not url:
        raise ConfigurationError("--target-url-stdin: stdin's first line is empty; "
                                 "give the URL there (postgresql://user:password@host:port/dbname)")
    return url


@backup_cli.command("download")
@click.argument("backup_id", metavar="ID")
@click.option("--output", "output", required=True, type=click.Path(path_type=Path),
              help="File (or folder) to write the backup to.")
@click.option("--decode", is_flag=True,
              help="Write pg_dump's own output (decrypted, decompressed) instead of the stored bytes.")
def download_command(backup_id, output, decode):
    """Write a backup file to PATH, fetching it from S3 when the local copy is gone."""
    upgrade_catalog_if_needed()
    if output.exists() and not output.is_dir():
        raise ConfigurationError(f"{output} already exists; not overwriting it")
    backup, written = run_job_here(download_job(db.session, backup_id, output.absolute(), decode), None,
                                   progress_printer("fetched"))
    click.echo(f"Wrote {written} ({human_size(backup.size_bytes)}, sha256 {backup.sha256})")


@backup_cli.command("delete")
@click.argument("backup_id", metavar="ID")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_command(backup_id, yes):
    """Delete a backup from S3, the catalog and disk."""
    upgrade_catalog_if_needed()
    backup = get_backup(db.session, backup_id)
    confirm(f"Delete {backup.filename} from every location?", yes)
    run_job_here(delete_job(db.session, backup.id))
    click.echo(f"Deleted backup {backup_id}")


@backup_cli.command("sync")
@click.option("--fetch-local", is_flag=True, default=None,
              help="Also fetch S3-only backups back to disk (default: SYNC_FETCH_LOCAL).")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of {id, filename, action, location, error}.")
def sync_command(fetch_local, as_json):
    """Upload every backup whose copy in an S3 store is missing or failed (and fetch S3-only ones back)."""
    upgrade_catalog_if_needed()
    if fetch_local is None:
        fetch_local = current_app.config.get("SYNC_FETCH_LOCAL", False)
    stores = wiring.s3_stores()
    run_reported(app_wide_job(SYNC, options={"fetch_local": fetch_local}),
                 lambda report: print_sync(report, as_json, stores))


def print_sync(report, as_json: bool, stores) -> None:
    if as_json:
        echo_json(report.actions)
        return
    for action in report.actions:
        click.echo(f"{action['action']:<9}{action['id']}  {action['filename']}  {action['location']}"
                   + (f"  ({action['error']})" if action["error"] else ""))
    if not stores:
        click.echo("MINIO_ENDPOINT is not set: local-only, nothing to sync.")
    elif not report.actions:
        click.echo("Every backup has its copies.")


@backup_cli.command("verify")
@click.argument("backup_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the backup, with this verification, as JSON.")
def verify_command(backup_id, as_json):
    """Check every copy's SHA-256 and restore the backup into a scratch database."""
    upgrade_catalog_if_needed()
    backup = get_completed_backup(db.session, backup_id)
    try:
        verification = run_job_here(verify_job(db.session, backup.id))
    except VerificationFailed:
        if as_json:
            echo_json(get_backup(db.session, backup.id).to_dict())
        raise click.ClickException(f"verification of {backup.id} failed: "
                                   f"{get_backup(db.session, backup.id).last_verification.error}") from None
    if as_json:
        echo_json(get_backup(db.session, backup.id).to_dict())
    else:
        click.echo(f"Verified {backup.id}: {verification.summary()}")


@backup_cli.command("rescan")
@click.option("--json", "as_json", is_flag=True, help="Print {added, recorded, skipped} as JSON.")
def rescan_command(as_json):
    """Rebuild catalog rows from the bucket's objects and the files in BACKUP_DIR."""
    upgrade_catalog_if_needed()
    report = rescan(db.session, wiring.local_storage(), wiring.s3_stores())
    if as_json:
        echo_json({"added": report.added, "recorded": report.recorded, "skipped": report.skipped})
        return
    for item in report.added:
        click.echo(f"added    {item['id']}  {item['filename']}")
    for item in report.recorded:
        click.echo(f"recorded {item['id']}  {item['location']} copy")
    for name in report.skipped:
        click.echo(f"skipped  {name} (not a backup of this app)")
    click.echo(f"{len(report.added)} backup(s) added, {len(report.recorded)} copy record(s) added.")


@backup_cli.command("prune")
@click.option("--database", "database", metavar="NAME", help="Only this target (default: every target).")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of {id, filename, database, reason} (PITR base backups and WAL segments "
                   "also have kind: base-backup or wal).")
def prune_command(database, dry_run, as_json):
    """Delete the backups, PITR base backups and WAL each target's retention policy no longer keeps."""
    upgrade_catalog_if_needed()
    targets = [wiring.target(database)] if database else wiring.all_targets()

    def show(report) -> None:
        if as_json:
            echo_json(report.deleted + report.pitr_deleted)
            return
        verb = "Would delete" if dry_run else "Deleted"
        for item in report.deleted:
            click.echo(f"{verb} {item['id']}  {item['filename']}  ({item['reason']})")
        for item in report.kept_in_use:
            click.echo(f"Kept for now {item['id']}  {item['filename']}  (due, but a job is reading it)")
        for line in report.pitr_lines(verb):
            click.echo(line)
        if not (report.deleted or report.pitr_deleted):
            click.echo("Nothing to prune.")

    if dry_run:  # reads only: no slot to hold
        show(prune(db.session, targets, wiring.local_storage(), wiring.s3_stores(), dry_run=True,
                   pitr_stores=wiring.pitr_stores(), pitr_readers=pitr_readers(db.session)))
    else:
        run_reported(app_wide_job(PRUNE, database=targets[0].name if database else None), show)
