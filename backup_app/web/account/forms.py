from flask_wtf import FlaskForm
from wtforms import IntegerField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange, Optional

from backup_app.models import ROLES
from backup_app.services.tokens import MAX_NAME
from backup_app.services.users import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)])
    new = PasswordField("New password", validators=[DataRequired(), Length(MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH)])
    repeat = PasswordField("New password again", validators=[DataRequired(), EqualTo("new", "The two differ.")])


class TokenForm(FlaskForm):
    """A new API token: its name, a role no higher than the user's, an expiry."""

    name = StringField("Name", validators=[DataRequired(), Length(max=MAX_NAME)],
                       description="What it is for, e.g. the script or machine that uses it.")
    role = SelectField("Role", description="Its role follows yours unless you pick a lower one.")
    expires_in_days = IntegerField("Expires in days", validators=[Optional(), NumberRange(1, 3650)],
                                   description="Empty: it never expires (revoke it when no longer needed).")

    def __init__(self, user_role: str, **kwargs):
        super().__init__(**kwargs)
        self.role.choices = [SelectChoice("", f"mine ({user_role}, as it changes)")] + \
            [SelectChoice(role) for role in ROLES[:ROLES.index(user_role) + 1]]
