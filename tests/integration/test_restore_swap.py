"""Restores over a database with what production schemas have (partitions, inheritance, types,
views, triggers, row-level security, grants, large objects, non-ASCII names): built beside
the current database, checked, then swapped in, so the target holds exactly the backup and the
data it replaced is kept. On PostgreSQL 15 and 18, from the local file and from S3 alone."""
import json
from datetime import datetime, timezone

import psycopg
import pytest

from backup_app.extensions import db
from backup_app.jobs.scheduler import tick
from backup_app.models import Backup, PreviousDatabase, utcnow
from tests.conftest import both_servers, drop_with_leftovers, unique_name
from tests.helpers import create, error_line, invoke
from tests.prod_schema import create_production_schema, damage, dump_sections

pytestmark = pytest.mark.integration

PROPERTIES_SQL = """
SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype, datconnlimit,
       datallowconn, datacl::text, shobj_description(oid, 'pg_database'),
       (SELECT string_agg(coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '*') || ':' || s.setconfig::text, ' '
                          ORDER BY s.setrole)
        FROM pg_db_role_setting s WHERE s.setdatabase = d.oid)
FROM pg_database d WHERE datname = '{name}'
"""


def properties(cluster, name: str) -> str:
    """Owner, encoding, locale, limits, grants, comment and settings of a database, as one line."""
    return cluster.psql(PROPERTIES_SQL.format(name=name))


def databases_like(cluster, name: str) -> list[str]:
    return cluster.psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{name}\\_%' ORDER BY 1").split()


@pytest.fixture
def roles(pg_cluster):
    """A role that owns the production database and one it grants to (both dropped afterwards)."""
    owner, reader = unique_name("owner"), unique_name("reader")
    pg_cluster.psql(f'CREATE ROLE "{owner}" LOGIN CREATEDB PASSWORD \'owner-pw\'; CREATE ROLE "{reader}"')
    yield owner, reader
    pg_cluster.psql(f'DROP ROLE "{reader}"; DROP ROLE "{owner}"')


@pytest.fixture
def prod_db(pg_cluster, roles):
    """A database shaped like production ones, owned by a role, with settings, grants and a comment."""
    owner, reader = roles
    name = unique_name("prod")
    pg_cluster.psql(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    create_production_schema(pg_cluster, name, reader)
    pg_cluster.psql(f"""
        ALTER DATABASE "{name}" SET work_mem = '8MB';
        ALTER DATABASE "{name}" SET search_path = "$user", public, shop, "Straße";
        ALTER ROLE "{reader}" IN DATABASE "{name}" SET statement_timeout = '5s';
        REVOKE CONNECT, TEMPORARY ON DATABASE "{name}" FROM PUBLIC;
        GRANT CONNECT ON DATABASE "{name}" TO "{reader}";
        COMMENT ON DATABASE "{name}" IS 'the shop, in production';
        ALTER DATABASE "{name}" CONNECTION LIMIT 50;
    """)
    yield name
    drop_with_leftovers(pg_cluster, name)


@pytest.fixture
def prod_app(make_app, pg_cluster, prod_db, s3_settings):
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(prod_db), **s3_settings)
    invoke(app.test_cli_runner(), "storage", "init")
    return app


def restore_json(runner, backup_id: str, *options: str) -> dict:
    return json.loads(invoke(runner, "backup", "restore", backup_id, "--yes", "--json", *options).stdout)


def connected_session(pg_cluster, name: str) -> psycopg.Connection:
    """A session on the database holding a lock, as an application's would during a restore."""
    session = psycopg.connect(pg_cluster.url(name))
    session.execute("SELECT count(*) FROM shop.orders")  # a transaction left open, holding its lock
    return session


@both_servers
def test_restore_over_itself_gives_exactly_the_backup_and_keeps_the_previous_data(prod_app, pg_cluster, prod_db):
    runner = prod_app.test_cli_runner()
    backup = create(runner)
    expected = dump_sections(pg_cluster.bin_dir, pg_cluster.url(prod_db))
    revenue = pg_cluster.psql("SELECT md5(string_agg(r::text, ',')) FROM billing.revenue_by_month r", prod_db)
    shape = properties(pg_cluster, prod_db)
    damage(pg_cluster, prod_db)
    damaged = dump_sections(pg_cluster.bin_dir, pg_cluster.url(prod_db))
    session = connected_session(pg_cluster, prod_db)

    before = utcnow().replace(microsecond=0)
    result = restore_json(runner, backup["id"])

    previous = result["previous_database"]
    assert result == {"backup": backup["id"], "database": prod_db, "previous_database": previous}
    kept_at = datetime.strptime(previous.removeprefix(f"{prod_db}_before_restore_"), "%Y%m%dT%H%M%S")
    assert before <= kept_at.replace(tzinfo=timezone.utc) <= utcnow()
    assert dump_sections(pg_cluster.bin_dir, pg_cluster.url(prod_db)) == expected, "exactly the backup"
    assert pg_cluster.psql("SELECT md5(string_agg(r::text, ',')) FROM billing.revenue_by_month r", prod_db) == revenue
    assert properties(pg_cluster, prod_db) == shape, "same owner, encoding, locale, settings, grants, comment"
    assert dump_sections(pg_cluster.bin_dir, pg_cluster.url(previous)) == damaged, "the replaced data is kept"
    assert databases_like(pg_cluster, prod_db) == [previous], "nothing half-built is left"
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")  # its session was ended at the swap
    session.close()
    with prod_app.app_context():
        [kept] = db.session.query(PreviousDatabase).all()
        assert (kept.name, kept.database, kept.backup_id) == (previous, prod_db, backup["id"])


@both_servers
def test_restore_from_the_s3_copy_alone_and_drop_the_previous_one(prod_app, pg_cluster, prod_db, backup_dir):
    runner = prod_app.test_cli_runner()
    backup = create(runner)
    expected = dump_sections(pg_cluster.bin_dir, pg_cluster.url(prod_db))
    (backup_dir / backup["filename"]).unlink()
    damage(pg_cluster, prod_db)
    session = connected_session(pg_cluster, prod_db)

    result = restore_json(runner, backup["id"], "--drop-previous")

    assert result == {"backup": backup["id"], "database": prod_db, "previous_database": None}
    assert dump_sections(pg_cluster.bin_dir, pg_cluster.url(prod_db)) == expected
    assert databases_like(pg_cluster, prod_db) == [], "the previous database is dropped"
    session.close()


def test_in_place_fails_on_partitioned_tables_and_changes_nothing(prod_app, pg_cluster, prod_db):
    """Why restores build beside: `pg_restore --clean` cannot drop a partition's inherited key."""
    runner = prod_app.test_cli_runner()
    backup = create(runner)
    damage(pg_cluster, prod_db)
    damaged = dump_sections(pg_cluster.bin_dir, pg_cluster.url(prod_db))

    result = invoke(runner, "backup", "restore", backup["id"], "--yes", "--in-place", ok=False)

    assert "cannot drop inherited constraint" in error_line(result)
    assert dump_sections(pg_cluster.bin_dir, pg_cluster.url(prod_db)) == damaged


def test_in_place_restores_a_simple_schema(runner, pg_cluster, source_db):
    backup = create(runner)
    pg_cluster.psql("DELETE FROM orders WHERE id > 10", source_db)

    assert restore_json(runner, backup["id"], "--in-place") == {
        "backup": backup["id"], "database": source_db, "previous_database": None}
    assert pg_cluster.psql("SELECT count(*) FROM orders", source_db) == "3000"
    assert databases_like(pg_cluster, source_db) == []


def test_a_failed_restore_leaves_the_current_database_and_no_half_built_one(prod_app, pg_cluster, prod_db):
    runner = prod_app.test_cli_runner()
    backup = create(runner)
    with prod_app.app_context():  # as if a table had lost rows on the way
        row = db.session.get(Backup, backup["id"])
        row.row_counts = {**row.row_counts, "shop.customers": 999}
        db.session.commit()
    damage(pg_cluster, prod_db)
    damaged = dump_sections(pg_cluster.bin_dir, pg_cluster.url(prod_db))

    result = invoke(runner, "backup", "restore", backup["id"], "--yes", ok=False)

    assert error_line(result) == ("Error: the restored rows differ from the backup's: shop.customers: 999 rows "
                                  "at backup time, 200 restored")
    assert dump_sections(pg_cluster.bin_dir, pg_cluster.url(prod_db)) == damaged, "untouched"
    assert databases_like(pg_cluster, prod_db) == [], "the half-built database is dropped"


@pytest.fixture
def limited_owner(pg_cluster, source_db):
    """`source_db` owned by a role that may not create databases (dropped afterwards)."""
    role = unique_name("limited")
    pg_cluster.psql(f"CREATE ROLE {role} LOGIN PASSWORD 'limited-pw'; ALTER DATABASE {source_db} OWNER TO {role}")
    pg_cluster.psql(f"ALTER TABLE customers OWNER TO {role}; ALTER TABLE orders OWNER TO {role}", source_db)
    yield role
    pg_cluster.psql(f"DROP OWNED BY {role}", source_db)
    drop_with_leftovers(pg_cluster, source_db)
    pg_cluster.psql(f"DROP ROLE {role}")


def test_a_role_without_createdb_is_told_to_restore_in_place(make_app, pg_cluster, source_db, limited_owner):
    app = make_app(BACKUP_DATABASE_URL=f"postgresql://{limited_owner}:limited-pw@127.0.0.1:{pg_cluster.port}/{source_db}")
    runner = app.test_cli_runner()
    backup = create(runner)
    pg_cluster.psql("DELETE FROM orders WHERE id > 10", source_db)

    refused = invoke(runner, "backup", "restore", backup["id"], "--yes", ok=False)

    assert error_line(refused) == (
        f"Error: cannot restore beside {source_db} and swap: the role {limited_owner} cannot create databases "
        "(it needs CREATEDB). Restore with --in-place instead (replaces the objects in place, in one transaction)")
    assert pg_cluster.psql("SELECT count(*) FROM orders", source_db) == "10", "nothing changed"
    invoke(runner, "backup", "restore", backup["id"], "--yes", "--in-place")
    assert pg_cluster.psql("SELECT count(*) FROM orders", source_db) == "3000"


def test_sessions_the_role_may_not_end_are_named_before_anything_runs(make_app, pg_cluster, source_db,
                                                                      limited_owner):
    pg_cluster.psql(f"ALTER ROLE {limited_owner} CREATEDB")
    app = make_app(BACKUP_DATABASE_URL=f"postgresql://{limited_owner}:limited-pw@127.0.0.1:{pg_cluster.port}/{source_db}")
    runner = app.test_cli_runner()
    backup = create(runner)
    superuser_session = psycopg.connect(pg_cluster.url(source_db))
    try:
        refused = invoke(runner, "backup", "restore", backup["id"], "--yes", ok=False)
    finally:
        superuser_session.close()

    assert error_line(refused) == (
        f"Error: cannot restore beside {source_db} and swap: the role {limited_owner} is not allowed to end the "
        f"sessions of postgres on {source_db} (it needs pg_signal_backend, and no role but a superuser may end a "
        "superuser's). Restore with --in-place instead (replaces the objects in place, in one transaction)")
    assert databases_like(pg_cluster, source_db) == []
    result = restore_json(runner, backup["id"])  # with no such session left, the owner may swap
    assert result["previous_database"].startswith(f"{source_db}_before_restore_")


def test_the_worker_drops_kept_databases_after_keep_previous_hours(make_app, pg_cluster, source_db):
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), KEEP_PREVIOUS_HOURS=24)
    runner = app.test_cli_runner()
    backup = create(runner)
    previous = restore_json(runner, backup["id"])["previous_database"]
    with app.app_context():
        kept = db.session.query(PreviousDatabase).one()
        assert (kept.drop_after - kept.kept_at).total_seconds() == 24 * 3600

        assert not any("dropped" in line for line in tick(db.session)), "not yet"
        assert databases_like(pg_cluster, source_db) == [previous]
        kept.drop_after = utcnow()
        db.session.commit()
        lines = tick(db.session)

        assert f"dropped {previous} (kept by a restore of {source_db} since" in "\n".join(lines)
        assert databases_like(pg_cluster, source_db) == []
        assert db.session.get(PreviousDatabase, kept.id).dropped_at is not None


def test_settings_that_would_stop_pg_restore_come_after_it(runner, pg_cluster, source_db):
    """A read-only default and a tiny statement timeout are the database's own business: the new
    database gets them once restored and checked, not while pg_restore and the row count run."""
    backup = create(runner)
    pg_cluster.psql(f"ALTER DATABASE {source_db} SET default_transaction_read_only = on; "
                    f"ALTER DATABASE {source_db} SET statement_timeout = '1ms'")
    shape = properties(pg_cluster, source_db)

    restore_json(runner, backup["id"])

    assert properties(pg_cluster, source_db) == shape
    pg_cluster.psql(f"ALTER DATABASE {source_db} RESET ALL")
    assert pg_cluster.psql("SELECT count(*) FROM orders", source_db) == "3000"


def test_restore_into_a_database_that_does_not_exist_creates_it(runner, pg_cluster, source_db):
    backup = create(runner)
    new = source_db + "_copy"

    result = restore_json(runner, backup["id"], "--target-url", pg_cluster.url(new))

    assert result == {"backup": backup["id"], "database": new, "previous_database": None}
    assert pg_cluster.psql("SELECT count(*) FROM orders", new) == "3000"
