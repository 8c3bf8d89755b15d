"""What every command group shares: BackupErrors as one `Error:` line, the audit log of the
commands that act, the catalog's upgrade, confirmations, JSON and progress output, and
running a job in the command's own process.
"""

import json
import logging
import sys
import time

import click
from flask.cli import AppGroup, ScriptInfo

from backup_app.core.formatting import human_size
from backup_app.errors import BackupError, JobConflict, SomeBackupsFailed
from backup_app.extensions import db
from backup_app.jobs.submit import run_here
from backup_app.schema import upgrade_catalog_if_needed
from backup_app.services.audit import FAILED_SUFFIX, OK, failed, refused
from backup_app.services.audit import record as record_audit
from backup_app.web.errorhandlers import status_code

log = logging.getLogger(__name__)


# Commands that change something (or hand out a backup) are written to the audit log.
AUDITED_COMMANDS = {
    "backup": {"create", "import", "restore", "restore-set", "download", "delete", "prune", "sync", "verify",
               "rescan"},
    "storage": {"init"},
    "targets": {"add", "remove", "verify-server"},
    "users": {"create", "set-role", "disable", "enable", "delete", "reset-password", "token", "revoke-token",
              "reset-2fa"},
    "notify": {"test"},
    "pitr": {"enable", "disable", "base-backup", "restore", "verify"},
    "restores": {"drop", "stop"},
}


def audit_subject(ctx: click.Context, command: click.Command, name: str, args: list[str]) -> str:
    """What a command acts on, for the audit log: its ID, NAME or EMAIL argument, else its --database.

    A command may name it better itself, in `ctx.meta["audit.subject"]` (create: the target).
    """
    try:
        params = command.make_context(name, list(args), parent=ctx, resilient_parsing=True).params
    except click.ClickException:
        return ""
    return next((str(params[key]) for key in ("backup_id", "set_id", "name", "email", "token_id", "database") if params.get(key)),
                "")


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
            ran = ctx.meta.get("audit.ran") and not isinstance(exc, JobConflict)  # a conflict: it never started
            outcome = failed if ran or status_code(exc) >= 500 else refused
            self._audit(ctx, outcome(str(exc)))
            raise click.ClickException(str(exc)) from exc
        except click.ClickException as exc:  # bad usage, a question answered no
            self._audit(ctx, refused(exc.format_message()))
            raise
        self._audit(ctx, OK)
        return result

    def _audit(self, ctx, outcome: str) -> None:
        """Append `cli` did `<command>` (`<command>-failed` unless its outcome is ok) to the audit log."""
        name, subject = ctx.meta.get("audit.command", (None, ""))
        if name not in AUDITED_COMMANDS.get(self.name, ()):
            return
        subject = ctx.meta.get("audit.subject") or subject
        app = ctx.ensure_object(ScriptInfo).load_app()
        with app.app_context():
            action = name if self.name == "backup" else f"{self.name}-{name}"
            try:
                upgrade_catalog_if_needed()  # `storage init` may be the first command ever run
                record_audit(db.session, "cli", action + ("" if outcome == OK else FAILED_SUFFIX), subject,
                             detail=outcome)
            except Exception:  # noqa: BLE001 - never hide the command's own outcome
                db.session.rollback()
                log.exception("could not append to the audit log")


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
    (its error is the command's: it ran, so it failed, whatever the error's kind)."""
    click.get_current_context().meta["audit.ran"] = True
    try:
        return run_here(db.session, job, target_url, progress)
    finally:
        if progress:
            click.echo(err=True)  # end the progress line


def run_reported(job, show, progress=None, target_url=None) -> None:
    """Run a prune, sync or set job and `show` its report, also when some backups failed (its error follows)."""
    try:
        report = run_job_here(job, target_url, progress)
    except SomeBackupsFailed as exc:
        if exc.report is not None:
            show(exc.report)
        raise
    show(report)


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
