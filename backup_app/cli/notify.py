"""`flask notify …`: send a test message, check for stale targets."""
import click

from backup_app import wiring
from backup_app.cli.group import ServiceGroup, echo_json
from backup_app.schema import upgrade_catalog_if_needed
from backup_app.services import notifications

notify_cli = ServiceGroup("notify", help="Notifications (Apprise).")


@notify_cli.command("test")
@click.option("--database", metavar="NAME", help="Use this target's URLs too (default: the default target).")
def test_command(database):
    """Send a test message to the configured notification URLs."""
    upgrade_catalog_if_needed()
    name = wiring.target(database).name
    notifications.send_test(notifications.urls_for(name), name)
    click.echo(f"Sent a test message about {name}.")


@notify_cli.command("stale")
@click.option("--json", "as_json", is_flag=True, help="Print the alerts as a JSON list.")
def stale_command(as_json):
    """Alert about targets without a recent successful backup (each episode once)."""
    upgrade_catalog_if_needed()
    alerts = notifications.alert_stale_targets()
    notifications.wait_for_pending()
    if as_json:
        echo_json(alerts)
        return
    for alert in alerts:
        click.echo(f"stale: {alert['database']} (last success {alert['last_success'] or 'never'}, "
                   f"limit {alert['limit_hours']} h)")
    if not alerts:
        click.echo("No target is newly stale.")
