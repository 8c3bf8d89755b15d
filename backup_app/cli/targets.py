"""`flask targets …`: add, list, remove and test the databases to back up."""
import click
from flask import current_app

from backup_app import wiring
from backup_app.cli.group import ServiceGroup, confirm, echo_json
from backup_app.core.conninfo import ConnInfo
from backup_app.errors import ConfigurationError
from backup_app.extensions import db
from backup_app.schema import upgrade_catalog_if_needed
from backup_app.services import targets as service
from backup_app.services.overview import targets_with_health
from backup_app.services.pitr import setup as pitr_setup

targets_cli = ServiceGroup("targets", help="Manage the databases to back up.")


def parse_gfs(value: str | None) -> tuple[int, int, int]:
    if not value:
        return (0, 0, 0)
    try:
        daily, weekly, monthly = (int(part) for part in value.split(","))
    except ValueError:
        raise ConfigurationError(f"--gfs takes three numbers D,W,M (e.g. 7,4,12), not {value!r}") from None
    return daily, weekly, monthly


@targets_cli.command("add")
@click.argument("name")
@click.option("--url", required=True, help="postgresql://user:pass@host:port/dbname[?sslmode=…]")
@click.option("--schedule", metavar="CRON", help="When to back up, e.g. '0 3 * * *'.")
@click.option("--timezone", default="UTC", show_default=True, help="Time zone of the schedule.")
@click.option("--keep-days", type=int, default=30, show_default=True, help="Keep backups younger than N days.")
@click.option("--keep-last", type=int, default=3, show_default=True, help="Always keep the newest K good backups.")
@click.option("--gfs", metavar="D,W,M", help="Also keep the last D daily, W weekly, M monthly backups.")
@click.option("--codec", type=click.Choice(["gzip", "zstd", "plain"]), default="gzip", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["custom", "plain"]), default="custom", show_default=True)
@click.option("--encrypt/--no-encrypt", default=False, show_default=True,
              help="Encrypt backups at rest with APP_ENCRYPTION_KEY.")
@click.option("--verify-schedule", metavar="CRON",
              help="When to restore-verify the newest backup in a scratch database, e.g. '0 5 * * 0'.")
@click.option("--notify", "notify_urls", multiple=True, metavar="URL",
              help="An Apprise URL told about this target (repeatable), besides NOTIFY_URLS; it may only "
                   "name a host NOTIFY_ALLOWED_HOSTS lists, when set.")
@click.option("--notify-on-success", is_flag=True, help="Also tell about successful backups.")
@click.option("--stale-after-hours", type=int, help="Alert when the newest good backup is older than this.")
@click.option("--all-databases", is_flag=True,
              help="Back up every database of the server (and its roles) as one backup set per run; the URL "
                   "may name no database (postgresql://user@host:port/).")
@click.option("--exclude", metavar="DB,…", help="With --all-databases: databases to leave out.")
@click.option("--pitr/--no-pitr", default=False, show_default=True,
              help="Archive the server's WAL for point-in-time recovery (as `flask pitr enable`).")
@click.option("--base-schedule", metavar="CRON", help="When to take PITR base backups (default: weekly).")
@click.option("--pitr-verify-schedule", metavar="CRON", help="When to run the PITR drill (restore latest, check).")
def add_command(name, url, schedule, timezone, keep_days, keep_last, gfs, codec, fmt, encrypt, verify_schedule,
                notify_urls, notify_on_success, stale_after_hours, all_databases, exclude, pitr, base_schedule,
                pitr_verify_schedule):
    """Add a database to back up (its password is stored encrypted)."""
    upgrade_catalog_if_needed()
    settings = service.TargetSettings(
        schedule=schedule, timezone=timezone, keep_days=keep_days, keep_last=keep_last, gfs=parse_gfs(gfs),
        format=fmt, codec=codec, encrypt=encrypt, verify_schedule=verify_schedule, notify_urls=notify_urls,
        notify_on_success=notify_on_success, stale_after_hours=stale_after_hours, all_databases=all_databases,
        exclude=tuple(name.strip() for name in (exclude or "").split(",") if name.strip()))
    conn = ConnInfo.from_url(url, default_dbname="postgres" if all_databases else None)
    target = service.add_target(db.session, name, conn, settings, wiring.master_key(),
                                wiring.env_url(), wiring.notify_allowed_hosts())
    next_run = f", next run {target.next_run_at:%Y-%m-%d %H:%M} UTC" if target.next_run_at else ""
    next_verify = (f", next verify {target.verify_next_run_at:%Y-%m-%d %H:%M} UTC"
                   if target.verify_next_run_at else "")
    what = "every database" if target.all_databases else target.dbname
    click.echo(f"Added target {target.name} ({what} on {target.host or 'localhost'}){next_run}{next_verify}")
    if base_schedule or pitr_verify_schedule:
        pitr_setup.set_schedules(db.session, target, base_schedule, pitr_verify_schedule)
    if pitr:
        for line in pitr_setup.enable(db.session, target, wiring.target_conn(target.name), wiring.pg_tools()):
            click.echo(line)
        click.echo(f"PITR is on for {target.name}")


@targets_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_command(as_json):
    """List the databases to back up, each with its last attempt and its last good backup."""
    upgrade_catalog_if_needed()
    targets = wiring.all_targets()
    if as_json:
        echo_json(targets_with_health(db.session, targets, current_app.config.get("STALE_AFTER_HOURS"),
                                   wiring.master_key()))
        return
    if not targets:
        click.echo("No targets. Set BACKUP_DATABASE_URL or run `flask targets add`.")
    for t in targets:
        source = "BACKUP_DATABASE_URL" if t.from_env else f"{t.host or 'localhost'}:{t.port or 5432}/" + (
            "* (every database" + (f" but {', '.join(t.excluded)})" if t.excluded else ")") if t.all_databases
            else t.dbname)
        schedule = f"'{t.schedule}' {t.timezone}" if t.schedule else "no schedule"
        if t.verify_schedule:
            schedule += f", verify '{t.verify_schedule}'"
        if not t.schedule_enabled:
            schedule += " (paused)"
        click.echo(f"{t.name}  {source}  {schedule}  keep {t.keep_days}d/last {t.keep_last}  "
                   f"{t.format}/{t.codec}{'/encrypted' if t.encrypt else ''}")


@targets_cli.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def remove_command(name, yes):
    """Forget a database; its backups are kept."""
    upgrade_catalog_if_needed()
    wiring.target(name)
    confirm(f"Remove target {name}? Its backups stay.", yes)
    service.remove_target(db.session, name)
    click.echo(f"Removed target {name}")


@targets_cli.command("test")
@click.argument("name")
def test_command(name):
    """Connect to a database; print its server version and the pg_dump that would back it up."""
    upgrade_catalog_if_needed()
    click.echo(f"{name}: {service.check_connection(wiring.target_conn(name), wiring.pg_tools())}")


@targets_cli.command("verify-server")
@click.argument("name")
@click.argument("url", required=False)
@click.option("--clear", is_flag=True, help="Verify on VERIFY_DATABASE_URL's server again (else the target's own).")
def verify_server_command(name, url, clear):
    """Restore NAME's verifications into a scratch database on the server at URL, never on the target's."""
    upgrade_catalog_if_needed()
    if bool(url) == clear:
        raise click.UsageError("give either a URL or --clear")
    service.set_verify_server(db.session, name, url, wiring.master_key(), wiring.env_url())
    where = ConnInfo.from_url(url).display() if url else "VERIFY_DATABASE_URL's server, else its own"
    click.echo(f"{name}: verifications restore into {where}")
