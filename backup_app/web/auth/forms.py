from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class CodeForm(FlaskForm):
    """A code from the authenticator app (or, at sign-in, a recovery code)."""

    code = StringField("Code", validators=[DataRequired(), Length(max=64)],
                       render_kw={"autocomplete": "one-time-code", "autocapitalize": "none", "spellcheck": "false"})


class DisableTwoFactorForm(FlaskForm):
    proof = PasswordField("Your password or a code from your app", validators=[DataRequired(), Length(max=1024)],
                          render_kw={"autocomplete": "current-password"})
