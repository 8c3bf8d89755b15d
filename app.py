"""Entry point: `flask` finds `app` here, gunicorn serves "app:app"."""
from backup_app import create_app

app = create_app()
