from flask_wtf import FlaskForm
from wtforms import BooleanField, RadioField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length, ValidationError

from backup_app.models import COMPLETED, FAILED, RUNNING


class CreateBackupForm(FlaskForm):
    database = SelectField("Database", validators=[DataRequired()])


class RestoreForm(FlaskForm):
    target = RadioField("Restore into", choices=[SelectChoice("configured", "its own database"),
                                                  SelectChoice("other", "another database")],
                        default="configured")
    target_url = StringField("Connection URL", validators=[Length(max=1024)],
                             description="postgresql://user:password@host:port/dbname")
    how = RadioField("How", choices=[
        SelectChoice("beside", "beside it, then swap: the current database is kept (or dropped, below)"),
        SelectChoice("in_place", "in place, in one transaction (pg_restore --clean): for a role that cannot "
                                 "create databases")], default="beside")
    drop_previous = BooleanField("Drop the previous database once the restored one has taken its place")
    confirm = StringField("Type the target database's name to confirm", validators=[DataRequired(), Length(max=255)])

    def validate_target_url(self, field):
        if self.target.data == "other" and not field.data:
            raise ValidationError("Give the connection URL of the database to restore into.")

    def validate_drop_previous(self, field):
        if field.data and self.how.data == "in_place":
            raise ValidationError("An in-place restore keeps no previous database to drop.")

    @property
    def in_place(self) -> bool:
        return self.how.data == "in_place"

    def chosen_url(self) -> str | None:
        return self.target_url.data if self.target.data == "other" else None


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
