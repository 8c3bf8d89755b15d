import os
from datetime import datetime

from flask import current_app
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from backup_app.core.codecs import CODECS, FORMATS
from backup_app.core.conninfo import ConnInfo
from backup_app.core.moments import local_moment
from backup_app.errors import ConfigurationError
from backup_app.services.schedules import check_cron
from backup_app.services.targets import TargetSettings, check_timezone

SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
# Fields that describe where the database is; a target from BACKUP_DATABASE_URL has none of them.
CONNECTION_FIELDS = ("host", "port", "user", "password", "clear_password", "dbname", "sslmode")


def service_check(check):
    """A field validator from a service check that raises ConfigurationError."""
    def validate(_form, field):
        if field.data:
            try:
                check(field.data.strip())
            except ConfigurationError as exc:
                raise ValidationError(str(exc)) from None
    return validate


def retention_number(label: str, default: int, description: str = "") -> IntegerField:
    return IntegerField(label, validators=[InputRequired(), NumberRange(min=0, max=100_000)], default=default,
                        description=description)


class TargetForm(FlaskForm):
    """Add or edit a target. The views drop what does not apply: `name` when editing,
    `clear_password` when adding, the connection of BACKUP_DATABASE_URL's target."""

    name = StringField("Name", validators=[DataRequired(), Length(max=100)],
                       description="Letters, digits, '-', '_' or '.'; its backups carry this name.")
    host = StringField("Host", validators=[Length(max=255)], description="Empty: the local socket.")
    port = IntegerField("Port", validators=[Optional(), NumberRange(min=1, max=65535)])
    user = StringField("User", validators=[Length(max=255)])
    password = PasswordField("Password", validators=[Length(max=1024)],
                             description="Stored encrypted with APP_ENCRYPTION_KEY, never shown again.")
    clear_password = BooleanField("Forget the stored password")
    dbname = StringField("Database name", validators=[Length(max=255)],
                         description="With every database of the server: only where to connect first (empty: "
                                     "postgres).")
    all_databases = BooleanField(
        "Every database of the server (a server target)",
        description="Each run backs up every database the user may connect to (not templates) as one backup "
                    "set, plus the server's roles, memberships and database settings (pg_dumpall --globals-only). "
                    "Role passwords are in it only when the user may read them (a superuser); otherwise the "
                    "roles are backed up with --no-role-passwords and the set's globals backup says so.")
    exclude = StringField("Leave out these databases", validators=[Length(max=10_000)],
                          description="With every database of the server: names separated by commas.")
    sslmode = SelectField("SSL mode", choices=[SelectChoice("", "libpq's default")]
                          + [SelectChoice(mode) for mode in SSL_MODES], default="")
    schedule = StringField("Backup schedule (cron)", validators=[Length(max=120), service_check(check_cron)],
                           description="e.g. 0 3 * * * for 03:00 every day; empty: no scheduled backups.")
    verify_schedule = StringField(
        "Verify schedule (cron)", validators=[Length(max=120), service_check(check_cron)],
        description="Restores the newest backup into a scratch database, e.g. 0 5 * * 0 on Sundays.")
    timezone = StringField("Time zone", validators=[DataRequired(), Length(max=64), service_check(check_timezone)],
                           default="UTC", description="Of both schedules and of the GFS days, e.g. Europe/Berlin.")
    schedule_enabled = BooleanField("Schedules enabled", default=True)
    keep_days = retention_number("Keep backups younger than (days)", 30, "0 keeps nothing by age.")
    keep_last = retention_number("Always keep the newest (completed backups)", 3)
    gfs_daily = retention_number("GFS: keep the last daily backups", 0)
    gfs_weekly = retention_number("GFS: keep the last weekly backups", 0)
    gfs_monthly = retention_number("GFS: keep the last monthly backups", 0)
    format = SelectField("Format", choices=[SelectChoice(f) for f in FORMATS], default="custom",
                         description="custom: pg_restore's archive; plain: SQL text.")
    codec = SelectField("Compression", choices=[SelectChoice(c) for c in CODECS], default="gzip",
                        description="gzip: pg_dump's own; zstd: faster and smaller; plain: none.")
    encrypt = BooleanField("Encrypt backups at rest (APP_ENCRYPTION_KEY)")
    # Not `notify_urls`: the stored URLs may carry tokens, so the edit form never shows them back.
    notify = TextAreaField("Notification URLs", validators=[Length(max=10_000)],
                           description="Apprise URLs (e-mail, Slack, webhooks …), one per line, told about this "
                                       "target besides NOTIFY_URLS.")
    clear_notify = BooleanField("Forget the stored notification URLs")
    notify_on_success = BooleanField("Also tell about successful backups")
    # Edit only; a PasswordField, so the URL (it may hold a password) is never rendered back.
    verify_server = PasswordField(
        "Verification server", validators=[Length(max=2048)],
        description="postgresql://user:password@host:port/dbname of a server used only for verification's scratch "
                    "restores of this target's backups; empty: VERIFY_DATABASE_URL's server, else the target's own.")
    clear_verify_server = BooleanField("Forget the stored verification server")
    stale_after_hours = IntegerField("Alert when the newest good backup is older than (hours)",
                                     validators=[Optional(), NumberRange(min=1, max=100_000)],
                                     description="Empty: STALE_AFTER_HOURS.")

    def validate_dbname(self, field):
        if not (field.data or "").strip() and not self.all_databases.data:
            raise ValidationError("Give the database's name, or tick every database of the server.")

    def validate_exclude(self, field):
        if (field.data or "").strip() and not self.all_databases.data:
            raise ValidationError("Databases are left out of a server target only: tick every database of the "
                                  "server, or leave this empty.")

    def conn(self) -> ConnInfo:
        """The connection entered (its password None when the field was left empty); a server
        target without a database name connects to postgres."""
        params = (("sslmode", self.sslmode.data),) if self.sslmode.data else ()
        dbname = stripped(self.dbname) or ("postgres" if self.all_databases.data else None)
        return ConnInfo(dbname, stripped(self.host), self.port.data, stripped(self.user),
                        self.password.data or None, params)

    def settings(self, stored_notify_urls: str | None = None) -> TargetSettings:
        """The settings entered; notification URLs left empty keep `stored_notify_urls` unless
        "Forget" is ticked."""
        urls = tuple((self.notify.data or "").split())
        if not urls and not (self.clear_notify and self.clear_notify.data):
            urls = tuple((stored_notify_urls or "").split())
        return TargetSettings(
            schedule=stripped(self.schedule), timezone=stripped(self.timezone),
            keep_days=self.keep_days.data, keep_last=self.keep_last.data,
            gfs=(self.gfs_daily.data, self.gfs_weekly.data, self.gfs_monthly.data),
            format=self.format.data, codec=self.codec.data, encrypt=self.encrypt.data,
            verify_schedule=stripped(self.verify_schedule), schedule_enabled=self.schedule_enabled.data,
            notify_urls=urls, notify_on_success=self.notify_on_success.data,
            stale_after_hours=self.stale_after_hours.data, all_databases=self.all_databases.data,
            exclude=tuple(name.strip() for name in (self.exclude.data or "").split(",") if name.strip()))


def stripped(field) -> str | None:
    """A text field's value without surrounding blanks; None when empty."""
    return (field.data or "").strip() or None


class PitrDisableForm(FlaskForm):
    drop_slot = BooleanField("Also drop the replication slot (the server stops keeping WAL for it)")


class BaseBackupForm(FlaskForm):
    incremental = BooleanField("Incremental: only what changed since the newest base backup (PostgreSQL 17+)")


def absolute_path(_form, field):
    if field.data and not os.path.isabs(field.data.strip()):
        raise ValidationError("Give an absolute path (on the machine the worker runs on).")


class PitrRestoreForm(FlaskForm):
    """Restore the target's server as it was at a moment (read on the clock of `timezone`), or
    as late as the archive reaches."""

    to = DateTimeLocalField("Restore to (date and time)", validators=[Optional()],
                            format=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"], render_kw={"step": "1"})
    timezone = StringField("Time zone", validators=[DataRequired(), Length(max=64), service_check(check_timezone)],
                           description="Of the date and time above, e.g. Europe/Berlin or UTC.")
    latest = BooleanField("Latest: as far as the archived WAL reaches")
    data_dir = StringField("Data directory", validators=[DataRequired(), Length(max=4096), absolute_path])
    port = IntegerField("Port", validators=[Optional(), NumberRange(min=1, max=65535)],
                        description="Where the restored server listens on 127.0.0.1; empty: a free port.")
    into_database = StringField("Put this database back into the target", validators=[Length(max=63)],
                                description="Optional: this database as it was then is dumped from the restored "
                                            "server and swapped in on the target's server (the current one is "
                                            "kept beside it); the restored server is then removed.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.data_dir.description = (f"A new or empty directory under {current_app.config['PITR_RESTORE_ROOT']} "
                                     "(PITR_RESTORE_ROOT) on the worker's machine; the restored server runs from it "
                                     "as PITR_OS_USER.")

    def validate_to(self, field):
        if field.data and self.latest.data:
            raise ValidationError("Give a date and time or tick latest, not both.")

    def validate(self, extra_validators=None) -> bool:
        """Also: a moment unless latest is ticked, and one the zone's clocks showed."""
        if not super().validate(extra_validators):
            return False
        if self.latest.data:
            return True
        if self.to.data is None:
            self.to.errors.append("Give the date and time to restore to, or tick latest.")
            return False
        try:
            self.moment()
        except ConfigurationError as exc:
            self.to.errors.append(str(exc))
            return False
        return True

    def moment(self) -> datetime | None:
        """The moment as an aware UTC datetime; None for latest."""
        return None if self.latest.data else local_moment(self.to.data, self.timezone.data.strip())
