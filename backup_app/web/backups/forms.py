from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, RadioField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length, ValidationError

from backup_app.core.conninfo import url_without_password
from backup_app.models import COMPLETED, FAILED, RUNNING


class ImportForm(FlaskForm):
    """A dump made elsewhere, and the target (or label) it is a backup of."""

    file = FileField("Dump file", validators=[FileRequired("Choose the dump file to import.")],
                     description="pg_dump's custom (-Fc) or tar (-Ft) archive, or a plain SQL script; gzip- or "
                                 "zstd-compressed or not.")
    database = StringField("Target or label", validators=[DataRequired(), Length(max=100)],
                           description="A target's name: the backup is one of its own (its codec, encryption and "
                                       "retention apply). Any other name is a label: restoring it then needs a "
                                       "connection URL.")


class CreateBackupForm(FlaskForm):
    database = SelectField("Database", validators=[DataRequired()])


class RestoreForm(FlaskForm):
    """Where a restore goes: its own database (the swap), a new one on its server (by name),
    another target (its stored credentials), or a server no target names (a URL, never shown back
    with its password); and the typed name of the database that will change."""

    target = RadioField("Restore into", choices=[
        SelectChoice("configured", "its own database (swap)"),
        SelectChoice("new", "a new database on the same server"),
        SelectChoice("target", "another target (its stored credentials are used)"),
        SelectChoice("other", "a server no target names (connection URL)")], default="configured")
    new_database = StringField("New database's name", validators=[Length(max=63)],
                               description="Made on the target's own server; refused if a database has that name.")
    other_target = SelectField("Target", validate_choice=False)
    target_url = StringField("Connection URL", validators=[Length(max=1024)],
                             description="postgresql://user:password@host:port/dbname — only for a server no target "
                                         "names; the password is never shown back (after an error, give it again)")
    how = RadioField("How", choices=[
        SelectChoice("beside", "beside it, then swap: the current database is kept (or dropped, below)"),
        SelectChoice("in_place", "in place, in one transaction (pg_restore --clean): for a role that cannot "
                                 "create databases")], default="beside")
    drop_previous = BooleanField("Drop the previous database once the restored one has taken its place")
    roles = RadioField("Roles the server lacks", choices=[
        SelectChoice("stop", "stop before anything is written, naming them"),
        SelectChoice("create", "create them from the newest globals backup of the backup's target"),
        SelectChoice("no_owner", "restore without owners and grants: every object owned by the restoring role "
                                 "(custom-format backups only)")], default="stop")
    confirm = StringField("Type the target database's name to confirm", validators=[DataRequired(), Length(max=255)],
                          description="The database that will change: its own, the new one, the other target's "
                                      "or the URL's.")

    def validate_new_database(self, field):
        if self.target.data == "new" and not field.data:
            raise ValidationError("Give the name of the new database.")

    def validate_other_target(self, field):
        if self.target.data == "target" and field.data not in {choice.value for choice in field.choices}:
            raise ValidationError("Choose the target to restore into.")

    def validate_target_url(self, field):
        if self.target.data == "other" and not field.data:
            raise ValidationError("Give the connection URL of the database to restore into.")

    def validate_drop_previous(self, field):
        if field.data and self.how.data == "in_place":
            raise ValidationError("An in-place restore keeps no previous database to drop.")

    def validate_confirm(self, field):
        if self.target.data == "configured" and self.new_database.data and field.data == self.new_database.data:
            raise ValidationError(f'You typed the new database\'s name, but "its own database" is selected: choose '
                                  f'"a new database on the same server" to restore into {field.data}.')

    @property
    def in_place(self) -> bool:
        return self.how.data == "in_place"

    def role_choice(self) -> dict:
        """queue_restore's arguments for the roles choice."""
        return {"create_roles": self.roles.data == "create", "no_owner": self.roles.data == "no_owner"}

    def destination(self) -> dict:
        """queue_restore's arguments for the chosen destination."""
        choice = self.target.data
        return {"target_url": self.target_url.data if choice == "other" else None,
                "into_target": self.other_target.data if choice == "target" else None,
                "as_database": self.new_database.data if choice == "new" else None}

    def forget_password(self) -> None:
        """Drop the URL's password before the form is shown again."""
        self.target_url.data = url_without_password(self.target_url.data or "")


class RestoreSetForm(FlaskForm):
    """Where a backup set goes (a server URL, never shown back with its password; empty: the set's
    own server) and the typed server that will change."""

    target_url = StringField("Server URL", validators=[Length(max=1024)],
                             description="postgresql://user:password@host:port/ — empty: the set's own server. The "
                                         "password is never shown back (after an error, give it again).")
    drop_previous = BooleanField("Drop each database a restored one replaces (default: keep it beside, renamed "
                                 "<name>_before_restore_<time>)")
    confirm = StringField("Type the server to confirm", validators=[DataRequired(), Length(max=1024)],
                          description="As postgresql://user@host:port/ (no password): the server whose roles and "
                                      "databases will change.")

    def forget_password(self) -> None:
        """Drop the URL's password before the form is shown again."""
        self.target_url.data = url_without_password(self.target_url.data or "")


class ButtonForm(FlaskForm):
    """Only the CSRF token: a button that posts (the page or the button is the confirmation)."""


STATUS_CHOICES = [SelectChoice("", "any status"), SelectChoice(RUNNING), SelectChoice(COMPLETED),
                  SelectChoice(FAILED)]


class FilterForm(FlaskForm):
    """The list's filters, read from the query string (a GET form: no CSRF token)."""

    class Meta:
        csrf = False

    database = SelectField("Database", default="")
    status = SelectField("Status", choices=STATUS_CHOICES, default="")
