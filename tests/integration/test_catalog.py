"""The catalog on SQLite and on PostgreSQL: migrations, and times whatever the session's zone."""
from datetime import datetime, timezone

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, select, text

from backup_app.extensions import db
from backup_app.models import Backup, Target, User
from backup_app.schema import init_migrate
from backup_app.services.backups.queries import list_backups
from backup_app.web.backups.routes import backed_up_databases
from tests.conftest import both_catalogs

pytestmark = pytest.mark.integration


@both_catalogs
def test_migrations_apply_revert_and_keep_older_rows(make_app):
    app = make_app()
    init_migrate(app)
    with app.app_context():
        downgrade(revision="0004-1")
        db.session.execute(text(
            "INSERT INTO backups (id, filename, database, format, status, created_at) "
            "VALUES ('old1', 'old.dump', 'shop', 'custom', 'completed', CURRENT_TIMESTAMP)"))
        db.session.commit()

        upgrade()
        [old] = list_backups(db.session)
        assert (old.codec, old.encrypted, old.server_version, old.client_version) == ("gzip", False, None, None)
        assert old.to_dict()["server_version"] is None
        db.session.remove()

        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        upgrade()
        assert {"backups", "backup_copies", "targets", "periodic_runs"} <= set(inspect(db.engine).get_table_names())


@both_catalogs
def test_users_made_before_roles_become_admins_and_their_tokens_follow_them(make_app):
    app = make_app()
    init_migrate(app)
    with app.app_context():
        downgrade(revision="0020")
        db.session.execute(text("INSERT INTO users (id, email, password_hash, created_at, session_version) "
                                "VALUES (7, 'old@example.com', 'x', CURRENT_TIMESTAMP, 0)"))
        db.session.execute(text("INSERT INTO api_tokens (user_id, token_hash, created_at) "
                                "VALUES (7, 'abc', CURRENT_TIMESTAMP)"))
        db.session.commit()
        upgrade()
        user = db.session.get(User, 7)
        assert (user.role, user.disabled, user.last_sign_in_at) == ("admin", False, None)
        [token] = user.tokens
        assert (token.name, token.role, token.expires_at, token.last_used_at) == ("token", None, None, None)


@pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)
def test_times_are_stored_as_the_instant_whatever_the_session_time_zone(make_app):
    moment = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    with make_app().app_context():
        assert db.session.execute(text("SHOW timezone")).scalar() == "America/New_York"
        db.session.add(Target(name="t", dbname="d", next_run_at=moment))
        db.session.commit()

        epoch = db.session.execute(text("SELECT extract(epoch FROM next_run_at) FROM targets")).scalar()
        db.session.expire_all()

        assert float(epoch) == moment.timestamp()
        assert db.session.scalar(select(Target)).next_run_at == moment


@both_catalogs
def test_the_list_filter_reads_every_database_name_of_the_catalog(make_app):
    with make_app().app_context():
        for number, database in enumerate(["shop", "crm", "shop", "Zeta", "crm-2", "crm"]):
            db.session.add(Backup(id=f"b{number}", filename=f"f{number}.dump", database=database, status="completed"))
        db.session.commit()

        assert sorted(backed_up_databases()) == ["Zeta", "crm", "crm-2", "shop"]
