"""The app's own `flask` command, run as a user runs it: a subprocess in the project folder."""
import os
import sys
from pathlib import Path

from flask import Flask

from backup_app import create_app

from .measure import Finished, run

PROJECT = Path(__file__).resolve().parent.parent
FLASK = str(Path(sys.executable).parent / "flask")


class AppCli:
    """Runs `flask …` with the benchmark's settings (catalog, folder, servers) in the environment."""

    def __init__(self, settings: dict[str, str]):
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("MINIO_", "BACKUP_", "CATALOG_", "PG"))}
        self.settings = settings
        self.env = {**base, "FLASK_APP": "app.py", **settings}

    def run(self, *args: str, stdin: str | None = None, **settings: str) -> Finished:
        """`flask ARGS`, with `settings` added to the environment for this call only."""
        return run([FLASK, *args], {**self.env, **settings}, cwd=PROJECT, stdin=stdin)


def app_in_process(settings: dict[str, str]) -> Flask:
    """The app inside this process, configured by the same settings as the `flask` commands."""
    return create_app({**settings, "SQLALCHEMY_DATABASE_URI": settings["CATALOG_DATABASE_URL"]})
