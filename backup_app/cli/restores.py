"""`flask restores …`: what restores leave behind (kept databases, running PITR servers)."""
import click
from flask import current_app

from backup_app import wiring
from backup_app.cli.group import ServiceGroup, confirm, echo_json
from backup_app.core.formatting import human_size
from backup_app.extensions import db
from backup_app.schema import upgrade_catalog_if_needed
from backup_app.services import leftovers, previous

restores_cli = ServiceGroup("restores", help="What restores leave behind: kept databases, running PITR servers.")


@restores_cli.command("list")
@click.option("--json", "as_json", is_flag=True,
              help='Print [{"kind", "name", "target", "size_bytes", "created_at", "drop_at", "port", "data_dir"}].')
def list_command(as_json):
    """The databases swap restores kept and the servers point-in-time restores left running."""
    upgrade_catalog_if_needed()
    found = leftovers.list_leftovers(db.session, wiring.previous_conn)
    if as_json:
        echo_json([leftover.to_dict() for leftover in found])
        return
    for item in found:
        size = human_size(item.size_bytes) if item.size_bytes is not None else "size unknown"
        if item.kind == leftovers.PITR_SERVER:
            where = f"running on 127.0.0.1:{item.port} in {item.data_dir}"
        else:
            where = f"dropped after {item.drop_at:%Y-%m-%d %H:%M} UTC" if item.drop_at else "kept until dropped"
        click.echo(f"{item.kind:<18} {item.name}  ({item.target or 'no target'}, {size}) {where}")
    if not found:
        click.echo("Nothing left behind by restores.")


@restores_cli.command("drop")
@click.argument("name", metavar="NAME")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def drop_command(name, yes):
    """Drop a database a restore kept (`<name>_before_restore_<time>`) now."""
    upgrade_catalog_if_needed()
    confirm(f"Drop the database {name}, kept by a restore? What it holds is gone.", yes)
    kept = previous.drop_now(db.session, name, wiring.previous_conn, wiring.pg_tools())
    click.echo(f"Dropped {kept.name} (kept by a restore of {kept.database}) from {kept.server}")


@restores_cli.command("stop")
@click.argument("name", metavar="NAME")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def stop_command(name, yes):
    """Stop a server a point-in-time restore left running and remove its data directory."""
    upgrade_catalog_if_needed()
    confirm(f"Stop the restored server {name} and remove its data directory?", yes)
    stopped = leftovers.stop_server(db.session, name, wiring.pg_tools(), current_app.config["PITR_OS_USER"])
    click.echo(f"Stopped the server on 127.0.0.1:{stopped.port} and removed {stopped.data_dir}")
