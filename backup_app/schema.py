"""The catalog's schema: a cheap check of its revision against the migrations' head, and the
upgrade through Flask-Migrate, which loads Alembic (about 0.3 s) only when it is needed."""
import re
from pathlib import Path

from flask import Flask, current_app
from sqlalchemy.exc import DBAPIError

from backup_app.extensions import db

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
REVISION_LINE = re.compile(r"""^(revision|down_revision)\s*=\s*["']?(\w+)["']?""", re.M)


def head_revision() -> str:
    """The newest migration's revision, read from the scripts' text (no Alembic)."""
    revisions, parents = set(), set()
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = dict(REVISION_LINE.findall(script.read_text()))
        revisions.add(found["revision"])
        parents.add(found.get("down_revision"))
    [head] = revisions - parents
    return head


def current_revision() -> str | None:
    """The catalog's revision (None for an empty catalog), in one query."""
    with db.engine.connect() as connection:
        try:
            return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        except DBAPIError:  # no alembic_version table: nothing migrated yet
            return None


def init_migrate(app: Flask) -> None:
    """Bind Flask-Migrate to the app (for `flask db …` and upgrades), once."""
    if "migrate" not in app.extensions:
        from flask_migrate import Migrate

        Migrate(app, db, directory=str(MIGRATIONS_DIR))


def upgrade_catalog_if_needed() -> None:
    """Apply pending migrations, so a fresh install works without `flask db upgrade`.

    One query when the catalog is current, as it is but once per release. Quietly:
    Alembic's progress lines would come before a command's own output (and its one `Error:`
    line); `flask db upgrade` still prints them.
    """
    if current_revision() == head_revision():
        return
    from alembic import command

    init_migrate(current_app)
    config = current_app.extensions["migrate"].migrate.get_config()
    config.attributes["quiet"] = True  # migrations/env.py then leaves logging alone
    command.upgrade(config, "head")
