from flask_wtf import FlaskForm
from wtforms import BooleanField, TextAreaField
from wtforms.validators import Length


class NotificationsForm(FlaskForm):
    """The notification URLs for every target; never filled in with the stored ones (they may carry tokens)."""

    urls = TextAreaField("Notification URLs", validators=[Length(max=10_000)],
                         description="Apprise URLs (e-mail, Slack, webhooks …), one per line, told about every "
                                     "target. Leave empty to keep the stored ones.")
    clear = BooleanField("Forget the stored notification URLs")

    def entered(self) -> list[str]:
        return (self.urls.data or "").split()
