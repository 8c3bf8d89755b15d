"""Entry point: `flask` finds `app` here, gunicorn serves "app:app"."""
from backup_app import create_app, warn_if_loose
from backup_app.core.logs import configure_logging

app = create_app()
configure_logging(app.config["LOG_FORMAT"])
warn_if_loose(app)
