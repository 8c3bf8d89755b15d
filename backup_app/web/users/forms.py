from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectChoice, SelectField
from wtforms.validators import DataRequired, Length, Optional

from backup_app.models import ROLES
from backup_app.services.users import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

ROLE_CHOICES = [SelectChoice(role) for role in ROLES]


class CreateUserForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    role = SelectField("Role", choices=ROLE_CHOICES, default="viewer",
                       description="viewer: reads the pages; operator: also makes, verifies and downloads backups; "
                                   "admin: everything (restores, deletes, targets, settings, users).")
    password = PasswordField("Password", validators=[Optional(), Length(MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH)],
                             description="Leave empty to have one made up and shown once.")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
