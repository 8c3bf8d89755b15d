"""`flask users …`: users, their roles and their API tokens. The CLI runs on the app's own
machine with its catalog and keys, so it acts as an admin."""
import sys

import click

from backup_app.cli.group import ServiceGroup, confirm, echo_json
from backup_app.core.formatting import exact_time
from backup_app.extensions import db
from backup_app.models import ADMIN, ROLES
from backup_app.schema import upgrade_catalog_if_needed
from backup_app.services import tokens, two_factor
from backup_app.services import users as service
from backup_app.wiring import password_hash_method

users_cli = ServiceGroup("users", help="Users of the pages, their roles and their API tokens.")
ROLE = click.Choice(ROLES)
PASSWORD_STDIN = click.option("--password-stdin", is_flag=True,
                              help="Read the password from the first line of stdin.")
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@users_cli.result_callback()
def _done(*_args, **_kwargs):
    db.session.remove()


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)


@users_cli.command("create")
@click.argument("email")
@click.option("--role", type=ROLE, default=ADMIN, show_default=True, help="What the user may do.")
@PASSWORD_STDIN
def create_command(email, role, password_stdin):
    """Create a user who can sign in to the web pages."""
    upgrade_catalog_if_needed()
    user = service.create_user(db.session, email, read_password(password_stdin), password_hash_method(), role)
    click.echo(f"Created user {user.email} ({user.role})")


@users_cli.command("list")
@JSON
def list_command(as_json):
    """List the users with their roles and last sign-in."""
    upgrade_catalog_if_needed()
    users = service.list_users(db.session)
    if as_json:
        echo_json([user.to_dict() for user in users])
        return
    if not users:
        click.echo("No users yet: flask users create EMAIL")
    for user in users:
        state = "disabled" if user.disabled else "enabled"
        click.echo(f"{user.email}  {user.role}  {state}  last sign-in: {exact_time(user.last_sign_in_at)}")


@users_cli.command("set-role")
@click.argument("email")
@click.argument("role", type=ROLE, metavar="ROLE")
def set_role_command(email, role):
    """Give EMAIL the ROLE viewer, operator or admin."""
    upgrade_catalog_if_needed()
    user = service.set_role(db.session, email, role)
    click.echo(f"{user.email} is now {user.role}")


@users_cli.command("disable")
@click.argument("email")
def disable_command(email):
    """Disable EMAIL: their sessions and API tokens stop working at once."""
    upgrade_catalog_if_needed()
    service.disable_user(db.session, email)
    click.echo(f"Disabled {service.normalize_email(email)}")


@users_cli.command("enable")
@click.argument("email")
def enable_command(email):
    """Enable EMAIL again."""
    upgrade_catalog_if_needed()
    service.enable_user(db.session, email)
    click.echo(f"Enabled {service.normalize_email(email)}")


@users_cli.command("delete")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_command(email, yes):
    """Delete EMAIL and their API tokens."""
    upgrade_catalog_if_needed()
    user = service.get_user(db.session, email)
    confirm(f"Delete the user {user.email} and their API tokens?", yes)
    service.delete_user(db.session, user.email)
    click.echo(f"Deleted {user.email}")


@users_cli.command("reset-password")
@click.argument("email")
@PASSWORD_STDIN
def reset_password_command(email, password_stdin):
    """Give EMAIL a new password: a random one printed once, or the first line of stdin. Their
    sessions end."""
    upgrade_catalog_if_needed()
    given = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    password = service.reset_password(db.session, email, password_hash_method(), given)
    click.echo("Password changed" if given is not None else password)


@users_cli.command("reset-2fa")
@click.argument("email")
def reset_2fa_command(email):
    """Turn EMAIL's two-factor sign-in off (a lost phone and recovery codes); their sessions end."""
    upgrade_catalog_if_needed()
    user = two_factor.reset(db.session, email)
    click.echo(f"Two-factor sign-in of {user.email} is off; their sessions have ended. They sign in with their "
               "password and may set it up again on their account page.")


@users_cli.command("token")
@click.argument("email")
@click.option("--name", help="What the token is for (default: token).")
@click.option("--role", type=ROLE, help="A role below the user's (default: the user's, as it changes).")
@click.option("--expires-in-days", type=click.IntRange(0, 3650), help="Expire after this many days (default: never).")
@JSON
def token_command(email, name, role, expires_in_days, as_json):
    """Print a new API token for EMAIL (shown once; only its hash is kept)."""
    upgrade_catalog_if_needed()
    token, secret = tokens.create_token(db.session, email, name, role, expires_in_days)
    click.get_current_context().meta["audit.subject"] = tokens.token_subject(token)
    if as_json:
        echo_json({"id": token.id, "token": secret, "name": token.name, "role": token.role,
                   "expires_at": token.to_dict()["expires_at"]})
    else:
        click.echo(secret)


@users_cli.command("tokens")
@click.argument("email")
@JSON
def tokens_command(email, as_json):
    """List EMAIL's API tokens (never their secrets)."""
    upgrade_catalog_if_needed()
    listed = tokens.list_tokens(db.session, service.get_user(db.session, email))
    if as_json:
        echo_json([token.to_dict() for token in listed])
        return
    if not listed:
        click.echo("No API tokens")
    for token in listed:
        click.echo(f"{token.id}  {token.name}  role: {token.role or 'the user’s'} (acts as {token.acting_role})  "
                   f"expires: {exact_time(token.expires_at) if token.expires_at else 'never'}  "
                   f"last used: {exact_time(token.last_used_at) if token.last_used_at else 'never'}")


@users_cli.command("revoke-token")
@click.argument("token_id", type=int)
def revoke_token_command(token_id):
    """Revoke the API token ID (it stops working at once)."""
    upgrade_catalog_if_needed()
    token = tokens.revoke_token(db.session, token_id)
    click.get_current_context().meta["audit.subject"] = tokens.token_subject(token)
    click.echo(f"Revoked token {token.id} ({token.name}) of {token.user.email}")
