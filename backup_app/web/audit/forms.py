from flask_wtf import FlaskForm
from wtforms import StringField


class AuditFilterForm(FlaskForm):
    """The audit page's filters, read from the query string (a GET form: no CSRF token)."""

    class Meta:
        csrf = False

    actor = StringField("Who")
    action = StringField("Action")
