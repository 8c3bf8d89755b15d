from flask import render_template

from ..extensions import db
from ..services import backups as service
from . import bp


@bp.get("/")
def index():
    """List every backup, newest first."""
    return render_template("backups/index.html", backups=service.list_backups(db.session))
