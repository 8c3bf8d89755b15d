"""`flask users …`: create users and API tokens."""
import sys

import click
from flask import current_app

from backup_app.cli.group import ServiceGroup
from backup_app.extensions import db
from backup_app.schema import upgrade_catalog_if_needed
from backup_app.services import users as service

users_cli = ServiceGroup("users", help="Create users and API tokens.")


@users_cli.result_callback()
def _done(*_args, **_kwargs):
    db.session.remove()


@users_cli.command("create")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
def create_command(email, password_stdin):
    """Create a user who can sign in to the web pages."""
    upgrade_catalog_if_needed()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    try:
        user = service.create_user(db.session, email, password, current_app.config["PASSWORD_HASH_METHOD"])
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created user {user.email}")


@users_cli.command("token")
@click.argument("email")
def token_command(email):
    """Print a new API token for EMAIL (shown once; only its hash is kept)."""
    upgrade_catalog_if_needed()
    click.echo(service.create_api_token(db.session, email))
