"""`flask audit list`."""
import click

from backup_app.cli.group import ServiceGroup, echo_json
from backup_app.extensions import db
from backup_app.schema import upgrade_catalog_if_needed
from backup_app.services import audit as service

audit_cli = ServiceGroup("audit", help="Read the audit log.")


@audit_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {at, actor, action, subject, address}.")
@click.option("--actor", help="Only this actor (an email, or cli).")
@click.option("--action", help="Only this action (create, restore, delete, sign-in-failed, …).")
@click.option("--limit", type=int, default=None, help="At most this many events.")
def list_command(as_json, actor, action, limit):
    """Audit events, newest first."""
    upgrade_catalog_if_needed()
    events = service.list_events(db.session, actor, action, limit)
    if as_json:
        echo_json([e.to_dict() for e in events])
        return
    for e in events:
        click.echo(f"{e.at:%Y-%m-%d %H:%M:%S}  {e.actor:<28} {e.action:<16} {e.subject}"
                   + (f"  [{e.address}]" if e.address else "") + (f"  {e.detail}" if e.detail else ""))
    if not events:
        click.echo("No audit events.")
