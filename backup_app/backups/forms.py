from flask_wtf import FlaskForm
from wtforms import RadioField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length, ValidationError

from ..models import COMPLETED, FAILED, RUNNING


class CreateBackupForm(FlaskForm):
    database = SelectField("Database", validators=[DataRequired()])


class RestoreForm(FlaskForm):
    target = RadioField("Restore into", choices=[SelectChoice("configured", "its own database"),
                                                  SelectChoice("other", "another database")],
                        default="configured")
    target_url = StringField("Connection URL", validators=[Length(max=1024)],
                             description="postgresql://user:password@host:port/dbname")
    confirm = StringField("Type the target database's name to confirm", validators=[DataRequired()])

    def validate_target_url(self, field):
        if self.target.data == "other" and not field.data:
            raise ValidationError("Give the connection URL of the database to restore into.")

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
