"""Entry point: `flask` finds `app` here, gunicorn serves "app:app"."""
from backup_app import create_app
from backup_app.core.logs import configure_logging

app = create_app()
configure_logging(app.config["LOG_FORMAT"])
