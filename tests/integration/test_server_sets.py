"""Server targets: every database of a server and its roles in one backup set, restored onto an
empty second server with owners, grants, settings and memberships as they were."""
import json

import pytest

from backup_app.extensions import db
from backup_app.models import Job
from devtools.localservers import DEBIAN_PG_BIN, PostgresCluster
from tests.helpers import error_line, invoke, listed, new_key
from tests.prod_schema import create_production_schema, dump_sections

pytestmark = pytest.mark.integration

SOURCE_SQL = """
CREATE ROLE app_owner LOGIN PASSWORD 'owner-secret';
CREATE ROLE reporting NOLOGIN;
CREATE ROLE analyst LOGIN PASSWORD 'analyst-secret' CONNECTION LIMIT 5;
GRANT reporting TO analyst;
CREATE DATABASE shop OWNER app_owner;
CREATE DATABASE crm;
CREATE DATABASE legacy;
CREATE DATABASE closed;
ALTER DATABASE closed ALLOW_CONNECTIONS false;
ALTER DATABASE crm SET work_mem = '8MB';
ALTER ROLE analyst IN DATABASE crm SET statement_timeout = '30s';
REVOKE CONNECT ON DATABASE crm FROM PUBLIC;
GRANT CONNECT ON DATABASE crm TO analyst;
"""
CRM_SQL = """
CREATE TABLE contacts (id int PRIMARY KEY, name text);
ALTER TABLE contacts OWNER TO app_owner;
INSERT INTO contacts SELECT g, 'contact ' || g FROM generate_series(1, 500) g;
GRANT SELECT ON contacts TO reporting;
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner GRANT SELECT ON TABLES TO reporting;
"""


@pytest.fixture(scope="module")
def source_server(tmp_path_factory):
    """A server of its own with three databases, roles with a membership, a database owned by a
    role that is not a superuser, tables owned by and granted to roles, and the rich schema."""
    cluster = PostgresCluster(tmp_path_factory.mktemp("source")).start()
    for statement in SOURCE_SQL.strip().split(";\n"):
        cluster.psql(statement)
    create_production_schema(cluster, "shop", "reporting")
    cluster.psql("ALTER SCHEMA shop OWNER TO app_owner; ALTER TABLE shop.customers OWNER TO app_owner", "shop")
    cluster.psql(CRM_SQL, "crm")
    yield cluster
    cluster.stop()


@pytest.fixture
def empty_server(tmp_path):
    cluster = PostgresCluster(tmp_path / "empty").start()
    yield cluster
    cluster.stop()


@pytest.fixture
def server_app(make_app, s3_settings, source_server):
    app = make_app(APP_ENCRYPTION_KEY=new_key(), RESTORE_ALLOWED_HOSTS="127.0.0.1", **s3_settings)
    runner = app.test_cli_runner()
    invoke(runner, "storage", "init")
    server_url = source_server.url("").rstrip("/") + "/"
    invoke(runner, "targets", "add", "srv", "--url", server_url, "--all-databases", "--exclude", "legacy")
    return app


def roles_of(cluster) -> str:
    return cluster.psql("SELECT string_agg(format('%s %s %s %s', rolname, rolcanlogin, rolconnlimit, "
                        "rolpassword IS NOT NULL), ', ' ORDER BY rolname) FROM pg_authid "
                        "WHERE rolname !~ '^pg_'")


def memberships_of(cluster) -> str:
    return cluster.psql("SELECT string_agg(r.rolname || '>' || m.rolname, ', ' ORDER BY 1) FROM pg_auth_members a "
                        "JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member "
                        "WHERE r.rolname !~ '^pg_'")


def database_settings_of(cluster) -> str:
    return cluster.psql("SELECT string_agg(format('%s %s %s %s', d.datname, pg_get_userbyid(d.datdba), "
                        "array(SELECT a::text FROM unnest(d.datacl) a ORDER BY 1), (SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setdatabase = d.oid "
                        "AND s.setrole = 0)), ', ' ORDER BY d.datname) FROM pg_database d "
                        "WHERE d.datname IN ('shop', 'crm')")


def test_a_server_target_backs_up_every_database_and_the_globals_as_one_set(server_app, source_server):
    runner = server_app.test_cli_runner()
    made = json.loads(invoke(runner, "backup", "create", "--database", "srv", "--json").stdout)

    backups = made["backups"]
    assert {b["set_id"] for b in backups} == {made["set_id"]}
    assert [b["format"] for b in backups].count("globals") == 1
    assert sorted(b["source_database"] for b in backups if b["format"] != "globals") == ["crm", "postgres", "shop"]
    assert all(b["status"] == "completed" and b["database"] == "srv" for b in backups)
    assert all({c["status"] for c in b["copies"]} == {"present"} for b in backups)
    assert made["skipped"] == [{"database": "closed",
                                "reason": "it does not allow connections (ALLOW_CONNECTIONS false)"}]
    assert {b["id"] for b in listed(runner)} == {b["id"] for b in backups}

    source_server.psql("CREATE DATABASE newer")
    try:
        again = json.loads(invoke(runner, "backup", "create", "--database", "srv", "--json").stdout)
        assert "newer" in {b["source_database"] for b in again["backups"]}, "a database made since is in the next set"
    finally:
        source_server.dropdb("newer")


def test_a_set_restored_onto_an_empty_server_gives_every_database_its_owners_grants_and_roles(
        server_app, source_server, empty_server):
    runner = server_app.test_cli_runner()
    made = json.loads(invoke(runner, "backup", "create", "--database", "srv", "--json").stdout)

    result = invoke(runner, "backup", "restore-set", made["set_id"], "--target-url", empty_server.url(""), "--yes",
                    "--json")
    summary = json.loads(result.stdout)
    assert {item["database"]: item["status"] for item in summary["databases"]} == {
        "crm": "restored", "postgres": "restored", "shop": "restored"}
    assert set(summary["roles"]["created"]) == {"app_owner", "reporting", "analyst"}
    assert "postgres" in summary["roles"]["existing"]

    assert roles_of(empty_server) == roles_of(source_server)
    assert memberships_of(empty_server) == memberships_of(source_server)
    assert database_settings_of(empty_server) == database_settings_of(source_server)
    for name in ("shop", "crm"):
        assert dump_sections(DEBIAN_PG_BIN, empty_server.url(name)) == \
            dump_sections(DEBIAN_PG_BIN, source_server.url(name)), name


def test_one_database_that_fails_does_not_stop_the_others(server_app, source_server, empty_server):
    runner = server_app.test_cli_runner()
    made = json.loads(invoke(runner, "backup", "create", "--database", "srv", "--json").stdout)
    empty_server.psql("CREATE DATABASE crm")
    empty_server.psql("ALTER DATABASE crm IS_TEMPLATE true")  # a template cannot be swapped out

    result = invoke(runner, "backup", "restore-set", made["set_id"], "--target-url", empty_server.url(""), "--yes",
                    ok=False)
    assert "crm: failed: " in result.stdout and "crm is a template database" in result.stdout
    assert "shop: restored" in result.stdout and "postgres: restored" in result.stdout
    assert error_line(result).startswith("Error: 1 of 3 databases of set ")
    assert empty_server.psql("SELECT count(*) FROM shop.customers", "shop") != "0"


def test_restore_set_refuses_an_unknown_set_and_a_host_no_target_names_and_queues_nothing(server_app):
    runner = server_app.test_cli_runner()
    unknown = invoke(runner, "backup", "restore-set", "nosuchset", "--yes", ok=False)
    assert error_line(unknown) == "Error: Backup set not found: nosuchset"

    made = json.loads(invoke(runner, "backup", "create", "--database", "srv", "--json").stdout)
    elsewhere = invoke(runner, "backup", "restore-set", made["set_id"], "--target-url",
                       "postgresql://postgres@db.example.com:5432/", "--yes", ok=False)
    assert error_line(elsewhere) == ("Error: cannot restore into db.example.com: a restore may only go to a host "
                                     "that a target names or RESTORE_ALLOWED_HOSTS lists")
    with server_app.app_context():
        assert [job for job in db.session.query(Job) if job.kind == "restore-set"] == []
