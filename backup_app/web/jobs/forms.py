from flask_wtf import FlaskForm
from wtforms import SelectChoice, SelectField

from backup_app.jobs.pitr import BASE_BACKUP, PITR_RESTORE, PITR_VERIFY
from backup_app.models import (
    COMPLETED,
    CREATE,
    DELETE,
    DOWNLOAD,
    FAILED,
    IMPORT,
    INTERRUPTED,
    PRUNE,
    QUEUED,
    RESTORE,
    RESTORE_SET,
    RUNNING,
    SYNC,
    VERIFY,
)

KINDS = (CREATE, RESTORE, RESTORE_SET, VERIFY, PRUNE, SYNC, DELETE, DOWNLOAD, IMPORT, BASE_BACKUP, PITR_RESTORE,
         PITR_VERIFY)
STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, INTERRUPTED)


class JobFilterForm(FlaskForm):
    """The jobs page's filters, read from the query string (a GET form: no CSRF token)."""

    class Meta:
        csrf = False

    kind = SelectField("Kind", choices=[SelectChoice("", "any kind")] + [SelectChoice(k) for k in KINDS], default="")
    status = SelectField("Status", choices=[SelectChoice("", "any status")] + [SelectChoice(s) for s in STATUSES],
                         default="")
    target = SelectField("Target", default="")

    def problems(self) -> list[str]:
        """Each filter given a value it does not offer, said with the values it does."""
        offered = {"kind": f": choose one of {', '.join(KINDS)}", "status": f": choose one of {', '.join(STATUSES)}"}
        return [f"unknown {field.name} {field.data!r}{offered.get(field.name, '')}" for field in self if field.errors]
