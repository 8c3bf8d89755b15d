"""`flask pitr …`: point-in-time recovery of a target — archive its WAL, take base backups,
restore its server to a moment, and prove on demand that it can be done."""
import click
from flask import current_app

from backup_app import wiring
from backup_app.cli.group import ServiceGroup, echo_json, progress_printer, run_job_here
from backup_app.core.moments import parse_moment
from backup_app.extensions import db
from backup_app.jobs import pitr as jobs
from backup_app.models import isoformat
from backup_app.schema import upgrade_catalog_if_needed
from backup_app.services.pitr import setup

pitr_cli = ServiceGroup("pitr", help="Point-in-time recovery: WAL archiving, base backups, restore to a moment.")


@pitr_cli.command("enable")
@click.argument("name")
@click.option("--new-cluster", is_flag=True,
              help="The server at the target's address is another cluster: archive it as a new lineage "
                   "(a base backup is taken now; the old lineage stays restorable).")
def enable_command(name, new_cluster):
    """Check the target's server, create its replication slot, and archive its WAL from now on."""
    upgrade_catalog_if_needed()
    target = wiring.target(name)
    for line in setup.enable(db.session, target, wiring.target_conn(target.name), wiring.pg_tools(), new_cluster):
        click.echo(line)
    click.echo(f"PITR is on for {target.name}" + (f", archiving the cluster {target.pitr_system_identifier}"
                                                   if new_cluster else ""))
    if new_cluster:
        backup = run_job_here(jobs.base_backup_job(name), progress=progress_printer("base backup"))
        click.echo(f"base backup {backup.id} of the new cluster completed: {backup.size_bytes} bytes")


@pitr_cli.command("disable")
@click.argument("name")
@click.option("--drop-slot", is_flag=True, help="Also drop the replication slot (the server stops keeping WAL).")
def disable_command(name, drop_slot):
    """Stop archiving the target's WAL (what is archived is kept)."""
    upgrade_catalog_if_needed()
    target = wiring.target(name)
    for line in setup.disable(db.session, target, wiring.target_conn(target.name), drop_slot):
        click.echo(line)


@pitr_cli.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status_command(name, as_json):
    """The receiver, the recoverable window and the base backups of a target."""
    upgrade_catalog_if_needed()
    target = wiring.target(name)
    state = setup.status(db.session, target, wiring.target_conn(target.name), current_app.config["PITR_LEASE_SECONDS"])
    if as_json:
        echo_json(state)
        return
    click.echo(f"{target.name}: PITR {'on' if state['enabled'] else 'off'}, receiver {state['receiver']}"
               + (f" ({state['error']})" if state["error"] else ""))
    click.echo(f"  last segment {state['last_segment'] or '-'} at {state['last_segment_at'] or '-'}, "
               f"{state['bytes_behind'] if state['bytes_behind'] is not None else '?'} bytes behind")
    click.echo(f"  cluster {state['system_identifier'] or '-'}, timeline {state['timeline'] or '-'}")
    click.echo(f"  recoverable from {state['recoverable_from'] or '-'} to {state['recoverable_to'] or '-'}")
    for other in state["lineages"]:
        if not other["current"]:
            click.echo(f"  earlier cluster {other['system_identifier'] or 'unknown'}: recoverable from "
                       f"{other['recoverable_from'] or '-'} to {other['recoverable_to'] or '-'}")
    if state["verified_at"]:
        click.echo(f"  drill: recoverable to {state['verified_to'] or '-'}, verified {state['verified_at']}"
                   + (f" — FAILED: {state['verify_error']}" if state["verify_error"] else ""))
    for base in state["base_backups"]:
        click.echo(f"  {base['id']}  {base['kind']:<11} {base['status']:<9} {base['started_at']}  "
                   f"{base['size_bytes'] or 0} bytes  {base['start_lsn'] or ''}–{base['end_lsn'] or ''}")


@pitr_cli.command("base-backup")
@click.argument("name")
@click.option("--incremental", is_flag=True, help="Only what changed since the newest base backup (PostgreSQL 17+).")
@click.option("--json", "as_json", is_flag=True, help="Print the base backup as JSON.")
def base_backup_command(name, incremental, as_json):
    """Take a base backup of the target's whole server into every store, in the foreground."""
    upgrade_catalog_if_needed()
    backup = run_job_here(jobs.base_backup_job(name, incremental), progress=progress_printer("base backup"))
    if as_json:
        echo_json(backup.to_dict())
    else:
        click.echo(f"{backup.kind} base backup {backup.id} of {name} completed: {backup.size_bytes} bytes, "
                   f"WAL {backup.start_lsn}–{backup.end_lsn}")


@pitr_cli.command("restore")
@click.argument("name")
@click.option("--to", "to", required=True, metavar="TIME|latest",
              help="ISO 8601 with a zone (2026-12-01T14:05:00Z), or latest.")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False), help="A new (or empty) directory.")
@click.option("--port", type=click.IntRange(1, 65535), help="Where the restored server listens (default: a free port).")
@click.option("--into-database", metavar="DB",
              help="Then put DB on the target's server back as it was (swap restore) and stop the restored server.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def restore_command(name, to, data_dir, port, into_database, as_json):
    """Restore the target's server as it was at TIME into DATA_DIR and leave it running on 127.0.0.1."""
    upgrade_catalog_if_needed()
    moment = parse_moment(to)
    job = jobs.restore_job(name, moment, data_dir, port, into_database)
    cluster = run_job_here(job)
    result = {**cluster.to_dict(), "into_database": into_database}
    if as_json:
        echo_json(result)
        return
    if into_database:
        click.echo(f"{into_database} is back as of {result['recovered_to']} (the restored server was removed)")
        return
    conn = wiring.target_conn(name)
    click.echo(f"Restored {name} as of {result['recovered_to']} (base backup {cluster.base_backup}) into "
               f"{cluster.data_dir}")
    click.echo(f"  connect: psql -h 127.0.0.1 -p {cluster.port} -U {conn.user or 'postgres'} {conn.dbname}")
    click.echo(f"  stop:    pg_ctl -D {cluster.data_dir} stop   (as the server's user)")


@pitr_cli.command("verify")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def verify_command(name, as_json):
    """Restore "latest" into a scratch directory, check the server answers, and remove it."""
    upgrade_catalog_if_needed()
    cluster = run_job_here(jobs.verify_job(name))
    target = wiring.target(name)
    result = {"target": name, "status": "passed", "recoverable_to": isoformat(cluster.recovered_to),
              "verified_at": isoformat(target.pitr_verified_at), "base_backup": cluster.base_backup}
    if as_json:
        echo_json(result)
    else:
        click.echo(f"{name}: recoverable to {result['recoverable_to']}, verified {result['verified_at']}")
