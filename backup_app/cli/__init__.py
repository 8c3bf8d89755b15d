"""The `flask` commands, one module per command group, each loaded only when it is run: a
command imports what it needs, and `flask backup list` none of what `flask worker` does."""
import importlib

import click
from flask import Flask, current_app

# name: (the command, or a function that returns it, as module:attribute; its line in `flask --help`)
COMMANDS = {
    "backup": ("backup_app.cli.backup:backup_cli", "Create, list, restore, download and delete backups."),
    "storage": ("backup_app.cli.storage:storage_cli", "Create the S3 buckets; what the backups take where."),
    "targets": ("backup_app.cli.targets:targets_cli", "Manage the databases to back up."),
    "users": ("backup_app.cli.users:users_cli", "Users of the pages and their API tokens."),
    "audit": ("backup_app.cli.audit:audit_cli", "The audit log."),
    "notify": ("backup_app.cli.notify:notify_cli", "Test the notification URLs; alert about stale targets."),
    "pitr": ("backup_app.cli.pitr:pitr_cli", "Point-in-time recovery: WAL archiving, base backups, restore to a moment."),
    "restores": ("backup_app.cli.restores:restores_cli", "What restores leave behind: kept databases, PITR servers."),
    "worker": ("backup_app.jobs.worker:worker_command", "Run queued jobs and the scheduler, in the foreground."),
    "db": ("backup_app.cli:db_group", "Migrate the catalog (Flask-Migrate's commands)."),
}


class LazyCommand(click.Command):
    """Stands for a command in `flask --help`; running it loads the real one and hands over."""

    def __init__(self, name: str, target: str, short_help: str):
        super().__init__(name, short_help=short_help, help=short_help, add_help_option=False)
        self.target = target

    def load(self) -> click.Command:
        module, _, attribute = self.target.partition(":")
        found = getattr(importlib.import_module(module), attribute)
        return found if isinstance(found, click.Command) else found()

    def make_context(self, info_name, args, parent=None, **extra):
        return self.load().make_context(info_name, args, parent=parent, **extra)


def register_commands(app: Flask) -> None:
    for name, (target, short_help) in COMMANDS.items():
        app.cli.add_command(LazyCommand(name, target, short_help))


def db_group() -> click.Group:
    """Flask-Migrate's `flask db` group, bound to the running app first."""
    from flask_migrate.cli import db

    from backup_app.schema import init_migrate

    init_migrate(current_app._get_current_object())
    return db
