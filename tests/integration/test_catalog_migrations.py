"""The catalog's migrations on SQLite and on PostgreSQL."""
import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from backup_app.extensions import db
from backup_app.services import backups as service
from tests.conftest import both_catalogs

pytestmark = pytest.mark.integration


@both_catalogs
def test_migrations_apply_revert_and_keep_older_rows(make_app):
    app = make_app()
    with app.app_context():
        downgrade(revision="0004-1")
        db.session.execute(text(
            "INSERT INTO backups (id, filename, database, format, status, created_at) "
            "VALUES ('old1', 'old.dump', 'shop', 'custom', 'completed', CURRENT_TIMESTAMP)"))
        db.session.commit()

        upgrade()
        [old] = service.list_backups(db.session)
        assert (old.codec, old.encrypted, old.server_version, old.client_version) == ("gzip", False, None, None)
        assert old.to_dict()["server_version"] is None
        db.session.remove()

        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        upgrade()
        assert {"backups", "backup_copies", "targets"} <= set(inspect(db.engine).get_table_names())
