"""`flask backup …` and `flask storage …`: the same services the pages and the API call."""
import json
import logging
import sys
import time
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup, ScriptInfo

from . import jobs, wiring
from .adapters.postgres import ConnInfo
from .errors import BackupError, ConfigurationError, SomeBackupsFailed, StorageUnavailable, VerificationFailed
from .extensions import db
from .formatting import human_size
from .models import COPY_FAILED, PRUNE, SYNC
from .services import backups as service
from .services.audit import record as record_audit
from .services.prune import prune
from .services.rescan import rescan
from .services.restore import describe_restore
from .services.usage import storage_usage

log = logging.getLogger(__name__)

# Commands that change something (or hand out a backup) are written to the audit log.
AUDITED_COMMANDS = {
    "backup": {"create", "restore", "download", "delete", "prune", "sync", "verify", "rescan"},
    "storage": {"init"},
    "targets": {"add", "remove"},
    "users": {"create", "token"},
    "notify": {"test"},
}


def audit_subject(ctx: click.Context, command: click.Command, name: str, args: list[str]) -> str:
    """What a command acts on, for the audit log: its ID, NAME or EMAIL argument, else its --database.

    A command may name it better itself, in `ctx.meta["audit.subject"]` (create: the target).
    """
    try:
        params = command.make_context(name, list(args), parent=ctx, resilient_parsing=True).params
    except click.ClickException:
        return ""
    return next((str(params[key]) for key in ("backup_id", "name", "email", "database") if params.get(key)), "")


class ServiceGroup(AppGroup):
    """A command group whose commands report BackupErrors as `Error: …` and are audited."""

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta["audit.command"] = (name, audit_subject(ctx, command, name, rest))
        return name, command, rest

    def invoke(self, ctx):
        try:
            result = super().invoke(ctx)
        except BackupError as exc:
            self._audit(ctx, str(exc))
            raise click.ClickException(str(exc)) from exc
        except click.ClickException as exc:
            self._audit(ctx, exc.format_message())
            raise
        self._audit(ctx, None)
        return result

    def _audit(self, ctx, error: str | None) -> None:
        """Append `cli` did `<command>` (`<command>-failed` with the error) to the audit log."""
        name, subject = ctx.meta.get("audit.command", (None, ""))
        if name not in AUDITED_COMMANDS.get(self.name, ()):
            return
        subject = ctx.meta.get("audit.subject") or subject
        app = ctx.ensure_object(ScriptInfo).load_app()
        with app.app_context():
            action = name if self.name == "backup" else f"{self.name}-{name}"
            try:
                upgrade_catalog_if_needed()  # `storage init` may be the first command ever run
                record_audit(db.session, "cli", action + ("-failed" if error else ""), subject,
                             detail=error)
            except Exception:  # noqa: BLE001 - never hide the command's own outcome
                db.session.rollback()
                log.exception("could not append to the audit log")


def upgrade_catalog_if_needed() -> None:
    """Apply pending catalog migrations, so a fresh install works without `flask db upgrade`.

    Quietly: Alembic's progress lines would come before a command's own output (and its
    one `Error:` line); `flask db upgrade` still prints them.
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = current_app.extensions["migrate"].migrate.get_config()
    with db.engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    if current != set(ScriptDirectory.from_config(config).get_heads()):
        config.attributes["quiet"] = True  # migrations/env.py then leaves logging alone
        command.upgrade(config, "head")


backup_cli = ServiceGroup("backup", help="Create, list, restore, download and delete backups.")
storage_cli = ServiceGroup("storage", help="Manage the S3 bucket.")


@backup_cli.result_callback()
@storage_cli.result_callback()
def _done(*_args, **_kwargs):
    db.session.remove()


def echo_json(value) -> None:
    click.echo(json.dumps(value, indent=2))


def progress_printer(label: str):
    """A progress callback that rewrites one stderr line at most twice a second (TTY only)."""
    if not sys.stderr.isatty():
        return None
    last = [0.0]

    def report(nbytes: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5:
            last[0] = now
            click.echo(f"\r{label} {human_size(nbytes)}   ", nl=False, err=True)
    return report


def run_job_here(job, target_url=None, progress=None):
    """Run a job in this process, holding its slot like a worker's job; returns what it made
    (its error is the command's)."""
    try:
        return jobs.run_here(db.session, job, target_url, progress)
    finally:
        if progress:
            click.echo(err=True)  # end the progress line


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
    backup = run_job_here(jobs.create_job(spec), None, progress_printer("dumped"))
    warn_failed_copies(backup)
    if as_json:
        echo_json(backup.to_dict())
    else:
        click.echo(f"Created {describe(backup)}")


@backup_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_command(as_json):
    """List backups, newest first."""
    upgrade_catalog_if_needed()
    backups = service.list_backups(db.session)
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
    backup = service.get_backup(db.session, backup_id)
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
@click.option("--in-place", is_flag=True,
              help="Replace the objects in the current database, in one transaction (pg_restore --clean), "
                   "instead of building a new one beside it: for a role that cannot create databases.")
@click.option("--drop-previous", is_flag=True,
              help="Drop the previous database once the restored one has taken its place "
                   "(default: keep it as <name>_before_restore_<time>).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help='Print {"backup", "database", "previous_database"}.')
def restore_command(backup_id, target_url, in_place, drop_previous, yes, as_json):
    """Restore a backup (local file if intact, else an S3 copy) beside the database, then swap."""
    upgrade_catalog_if_needed()
    if in_place and drop_previous:
        raise ConfigurationError("--drop-previous has nothing to drop with --in-place (no previous database is kept)")
    backup = service.get_completed_backup(db.session, backup_id)
    conn = ConnInfo.from_url(target_url) if target_url else wiring.target_conn(backup.database)
    effect = describe_restore(conn.dbname, in_place=in_place, drop_previous=drop_previous,
                              keep_hours=current_app.config["KEEP_PREVIOUS_HOURS"])
    confirm(f"Restore {backup.filename} into {conn.display()}? {effect}", yes)
    job = jobs.restore_job(db.session, backup.id, conn.dbname, target_url, in_place=in_place,
                           drop_previous=drop_previous)
    restored = run_job_here(job, target_url, progress_printer("read"))
    if as_json:
        echo_json({"backup": restored.backup_id, "database": restored.database,
                   "previous_database": restored.previous_database})
        return
    click.echo(f"Restored backup {backup.id} into {conn.display()}")
    if restored.swap_seconds is not None:
        click.echo(f"Swapped in: {restored.database} was unavailable for {restored.swap_seconds:.3f} s "
                   f"({restored.sessions_ended} session(s) ended)")
    if restored.previous_database:
        click.echo(f"The previous database is kept as {restored.previous_database}")
    for warning in restored.warnings:
        click.echo(f"Warning: {warning}", err=True)


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
    backup, written = run_job_here(jobs.download_job(db.session, backup_id, output.absolute(), decode), None,
                                   progress_printer("fetched"))
    click.echo(f"Wrote {written} ({human_size(backup.size_bytes)}, sha256 {backup.sha256})")


@backup_cli.command("delete")
@click.argument("backup_id", metavar="ID")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_command(backup_id, yes):
    """Delete a backup from S3, the catalog and disk."""
    upgrade_catalog_if_needed()
    backup = service.get_backup(db.session, backup_id)
    confirm(f"Delete {backup.filename} from every location?", yes)
    run_job_here(jobs.delete_job(db.session, backup.id))
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
    run_reported(jobs.app_wide_job(SYNC, options={"fetch_local": fetch_local}),
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


def run_reported(job, show) -> None:
    """Run a prune or sync job and `show` its report, also when some backups failed (its error follows)."""
    try:
        report = run_job_here(job)
    except SomeBackupsFailed as exc:
        if exc.report is not None:
            show(exc.report)
        raise
    show(report)


@backup_cli.command("verify")
@click.argument("backup_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the backup, with this verification, as JSON.")
def verify_command(backup_id, as_json):
    """Check every copy's SHA-256 and restore the backup into a scratch database."""
    upgrade_catalog_if_needed()
    backup = service.get_completed_backup(db.session, backup_id)
    try:
        verification = run_job_here(jobs.verify_job(db.session, backup.id))
    except VerificationFailed:
        if as_json:
            echo_json(service.get_backup(db.session, backup.id).to_dict())
        raise click.ClickException(f"verification of {backup.id} failed: "
                                   f"{service.get_backup(db.session, backup.id).last_verification.error}") from None
    if as_json:
        echo_json(service.get_backup(db.session, backup.id).to_dict())
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


@storage_cli.command("usage")
@click.option("--json", "as_json", is_flag=True, help="Print bytes and backups per location as JSON.")
def storage_usage_command(as_json):
    """Bytes used per location and per target."""
    upgrade_catalog_if_needed()
    locations = wiring.copy_locations()
    usage = storage_usage(db.session, locations)
    if as_json:
        echo_json(usage)
        return
    for location in locations:
        click.echo(f"{location:<12}{human_size(usage[location]['bytes']):>12}  {usage[location]['backups']} backups")
    for database, places in sorted(usage["by_database"].items()):
        click.echo(f"  {database}: " + ", ".join(f"{loc} {human_size(v['bytes'])}" for loc, v in places.items()))


@storage_cli.command("init")
def storage_init_command():
    """Create each S3 store's bucket (private) if it is missing."""
    stores = wiring.s3_stores()
    if not stores:
        click.echo("MINIO_ENDPOINT is not set: the app runs local-only, there is no bucket to create.")
    errors = []
    for store in stores:
        try:
            created = store.ensure_bucket()
        except StorageUnavailable as exc:
            errors.append(f"{store.location}: {exc}")
            continue
        click.echo(f"{'Created' if created else 'Bucket exists:'} s3://{store.bucket} on {store.endpoint}")
    if errors:
        raise StorageUnavailable("; ".join(errors))


def confirm(question: str, yes: bool) -> None:
    """Ask unless `yes`; a refusal or no terminal is an error that changes nothing."""
    if yes:
        return
    try:
        agreed = click.confirm(question, default=False, err=True)
    except click.Abort:  # no answer (stdin closed): end the prompt's line first
        click.echo(err=True)
        agreed = False
    if not agreed:
        raise click.ClickException("cancelled; nothing changed (pass --yes to skip this question)")


@backup_cli.command("prune")
@click.option("--database", "database", metavar="NAME", help="Only this target (default: every target).")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {id, filename, database, reason}.")
def prune_command(database, dry_run, as_json):
    """Delete the backups each target's retention policy no longer keeps."""
    upgrade_catalog_if_needed()
    targets = [wiring.target(database)] if database else wiring.all_targets()

    def show(report) -> None:
        if as_json:
            echo_json(report.deleted)
            return
        verb = "Would delete" if dry_run else "Deleted"
        for item in report.deleted:
            click.echo(f"{verb} {item['id']}  {item['filename']}  ({item['reason']})")
        for item in report.kept_in_use:
            click.echo(f"Kept for now {item['id']}  {item['filename']}  (due, but a job is reading it)")
        if not report.deleted:
            click.echo("Nothing to prune.")

    if dry_run:  # reads only: no slot to hold
        show(prune(db.session, targets, wiring.local_storage(), wiring.s3_stores(), dry_run=True))
    else:
        run_reported(jobs.app_wide_job(PRUNE, database=targets[0].name if database else None), show)
