"""Roles for single restores: a backup restored onto a server that lacks the roles its objects are
owned by or granted to stops before it writes anything, naming them; `--create-roles` makes them
from the newest globals backup of the target (read as data: a hostile one runs nothing), and
`--no-owner` restores without owners and grants."""
import pytest

from backup_app import wiring
from backup_app.adapters.pgtools import wheel_bin_dir
from backup_app.errors import MissingRoles
from backup_app.extensions import db
from backup_app.jobs.submit import create_job, run_here
from backup_app.models import Job
from backup_app.services.roles import create_roles
from devtools.localservers import DEBIAN_PG_BIN, PostgresCluster
from tests.helpers import error_line, invoke
from tests.prod_schema import dump_sections
from tests.web_helpers import add_user, api_token, submit

pytestmark = pytest.mark.integration

ROLES_SQL = '''
CREATE ROLE app_owner LOGIN PASSWORD 'owner-secret';
CREATE ROLE reporting NOLOGIN;
CREATE ROLE "Analyst ""Q""" LOGIN CONNECTION LIMIT 3;
CREATE ROLE unrelated NOLOGIN;
GRANT reporting TO "Analyst ""Q""";
ALTER ROLE "Analyst ""Q""" SET work_mem = '8MB';
COMMENT ON ROLE reporting IS 'read-only reports';
CREATE DATABASE shop OWNER app_owner;
'''
SHOP_SQL = '''
CREATE SCHEMA sales AUTHORIZATION app_owner;
CREATE TABLE sales.customers (id int PRIMARY KEY, name text);
ALTER TABLE sales.customers OWNER TO app_owner;
INSERT INTO sales.customers SELECT g, 'customer ' || g FROM generate_series(1, 200) g;
GRANT USAGE ON SCHEMA sales TO reporting;
GRANT SELECT ON sales.customers TO reporting;
GRANT SELECT (name) ON sales.customers TO "Analyst ""Q""";
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA sales GRANT SELECT ON TABLES TO reporting;
'''
NEEDED = ['"Analyst ""Q"""', "app_owner", "reporting"]


def bin_dir(version: int) -> str:
    return DEBIAN_PG_BIN if version == 15 else str(wheel_bin_dir())


@pytest.fixture(scope="module", params=[15, 18], ids=["pg15", "pg18"])
def source(request, tmp_path_factory):
    """A server with roles (LOGIN, NOLOGIN, a membership, a setting, a comment), and a database whose
    schema and table are owned by a role that is not a superuser, granted to two others, with a
    default privilege."""
    cluster = PostgresCluster(tmp_path_factory.mktemp(f"roles{request.param}"), bin_dir=bin_dir(request.param)).start()
    for statement in ROLES_SQL.strip().split(";\n"):
        cluster.psql(statement)
    cluster.psql(SHOP_SQL, "shop")
    yield cluster
    cluster.stop()


@pytest.fixture
def empty(source, tmp_path):
    """A second server of the same version with none of those roles."""
    cluster = PostgresCluster(tmp_path / "empty", bin_dir=str(source.bin_dir)).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def roles_app(make_app, s3_settings, source):
    app = make_app(BACKUP_DATABASE_URL=source.url("shop"), RESTORE_ALLOWED_HOSTS="127.0.0.1", **s3_settings)
    invoke(app.test_cli_runner(), "storage", "init")
    return app


def back_up(app, with_globals: bool = True) -> str:
    """A backup of the target (and, as a scheduled run makes it, of its server's globals); its id."""
    with app.app_context():
        job = create_job(wiring.dump_spec(None), scheduled=with_globals)
        return run_here(db.session, job).id


def state(cluster) -> tuple[str, str]:
    """The databases and roles of a server."""
    return (cluster.psql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database"),
            cluster.psql("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles"))


def memberships(cluster) -> str:
    return cluster.psql("SELECT string_agg(r.rolname || '>' || m.rolname, ', ' ORDER BY 1) FROM pg_auth_members a "
                        "JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member "
                        "WHERE r.rolname !~ '^pg_'")


def restore(app, backup_id, cluster, *options, ok=True):
    return invoke(app.test_cli_runner(), "backup", "restore", backup_id, "--target-url", cluster.url("shop"),
                  "--yes", *options, ok=ok)


def test_a_restore_onto_a_server_lacking_the_roles_stops_naming_them_and_creates_nothing(roles_app, empty):
    backup_id = back_up(roles_app)
    before = state(empty)

    result = restore(roles_app, backup_id, empty, ok=False)

    line = error_line(result)
    assert line.startswith(f"Error: the backup needs the roles {', '.join(NEEDED)} (its objects' owners, grantees, ")
    assert "--create-roles" in line and "--no-owner" in line
    assert state(empty) == before, "no database, no role, nothing half built"


def test_create_roles_makes_the_missing_ones_from_the_globals_and_restores_owners_and_grants(
        roles_app, source, empty):
    backup_id = back_up(roles_app)

    result = restore(roles_app, backup_id, empty, "--create-roles")

    assert 'Roles created first: "Analyst ""Q""", app_owner, reporting' in result.stdout
    assert dump_sections(source.bin_dir, empty.url("shop")) == dump_sections(source.bin_dir, source.url("shop"))
    assert memberships(empty) == memberships(source) == 'reporting>Analyst "Q"'
    assert empty.psql("SELECT rolcanlogin, rolconnlimit, rolconfig FROM pg_roles WHERE rolname = 'Analyst \"Q\"'") == \
        "t|3|{work_mem=8MB}"
    assert empty.psql("SELECT rolcanlogin, shobj_description(oid, 'pg_authid') FROM pg_roles "
                      "WHERE rolname = 'reporting'") == "f|read-only reports"
    assert empty.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'unrelated'") == "0", "only the roles needed"
    assert empty.psql("SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = 'app_owner'") == "t"


def test_create_roles_without_a_globals_backup_reads_them_from_the_targets_server_now(
        roles_app, make_app, s3_settings, source, empty):
    backup_id = back_up(roles_app, with_globals=False)

    restore(roles_app, backup_id, empty, "--create-roles")
    assert memberships(empty) == memberships(source)
    with roles_app.app_context():
        [job] = [job for job in db.session.query(Job) if job.kind == "restore"]
        assert "no globals backup of shop yet: the roles are read from its server as they are now" in job.log


def test_create_roles_with_neither_a_globals_backup_nor_the_target_says_so_and_creates_nothing(
        roles_app, make_app, s3_settings, empty):
    backup_id = back_up(roles_app, with_globals=False)
    without_target = make_app(RESTORE_ALLOWED_HOSTS="127.0.0.1", **s3_settings)  # the same catalog and folder
    before = state(empty)

    result = restore(without_target, backup_id, empty, "--create-roles", ok=False)

    assert error_line(result).startswith("Error: no globals backup of shop yet to create the roles from, and its "
                                         "server is not known")
    assert "--no-owner" in error_line(result)
    assert state(empty) == before


def test_no_owner_restores_owned_by_the_restoring_role_without_grants(roles_app, source, empty):
    backup_id = back_up(roles_app, with_globals=False)
    before_roles = state(empty)[1]

    restore(roles_app, backup_id, empty, "--no-owner")

    assert empty.psql("SELECT count(*) FROM sales.customers", "shop") == "200"
    assert empty.psql("SELECT tableowner FROM pg_tables WHERE tablename = 'customers'", "shop") == "postgres"
    assert empty.psql("SELECT relacl IS NULL FROM pg_class WHERE relname = 'customers'", "shop") == "t"
    assert state(empty)[1] == before_roles, "no role made"

    # Into the database that now exists: built beside it and swapped in, its shape given (owner, grants).
    empty.psql("GRANT CONNECT ON DATABASE shop TO PUBLIC; COMMENT ON DATABASE shop IS 'kept'")
    result = restore(roles_app, backup_id, empty, "--no-owner", "--drop-previous")
    assert "Swapped in" in result.stdout
    assert empty.psql("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'shop'") == "kept"
    assert empty.psql("SELECT count(*) FROM sales.customers", "shop") == "200"


def test_api_refuses_missing_roles_before_queueing_and_takes_the_two_choices(roles_app, empty):
    backup_id = back_up(roles_app)
    add_user(roles_app)
    headers = {"Authorization": f"Bearer {api_token(roles_app)}"}
    api, url = roles_app.test_client(), f"/api/backups/{backup_id}/restore"
    body = {"confirm": "shop", "target_url": empty.url("shop")}
    before = state(empty)

    refused = api.post(url, headers=headers, json=body)

    assert refused.status_code == 400
    assert refused.json["error"].startswith(f"the backup needs the roles {', '.join(NEEDED)}")
    assert "--create-roles" in refused.json["error"]
    with roles_app.app_context():
        assert db.session.query(Job).filter_by(kind="restore").count() == 0, "no job queued"
    assert state(empty) == before
    for choice in ("create_roles", "no_owner"):
        assert api.post(url, headers=headers, json={**body, choice: "yes"}).status_code == 400
    accepted = api.post(url, headers=headers, json={**body, "create_roles": True})
    assert accepted.status_code == 202, accepted.json


HOSTILE_GLOBALS = r"""
SET session_preload_libraries = 'evil';
CREATE ROLE hostile;
ALTER ROLE hostile WITH NOSUPERUSER LOGIN;
ALTER ROLE hostile SET session_preload_libraries TO 'evil';
ALTER ROLE hostile SET local_preload_libraries TO 'evil';
ALTER ROLE hostile SET log_statement TO 'none';
ALTER ROLE hostile SET search_path TO 'app', 'public';
\! touch {marker}
CREATE ROLE "quoted"" ; DROP DATABASE victim; --
name" /* CREATE ROLE smuggled SUPERUSER; */ NOLOGIN;
-- CREATE ROLE in_a_comment;
CREATE ROLE also_hostile; DROP DATABASE victim;
COPY (SELECT 1) TO PROGRAM 'touch {marker}';
ALTER SYSTEM SET shared_preload_libraries = 'evil';
GRANT hostile TO also_hostile;
COMMENT ON ROLE hostile IS $$it's /* not */ a comment$$;
"""


def test_a_hostile_globals_dump_creates_nothing_dangerous_and_runs_nothing_here(empty, tmp_path):
    marker = tmp_path / "ran"
    empty.psql("CREATE DATABASE victim")
    before_system = empty.psql("SELECT count(*) FROM pg_file_settings WHERE sourcefile LIKE '%auto.conf'")

    report = create_roles(wiring_conn(empty), HOSTILE_GLOBALS.replace("{marker}", str(marker)), None)

    assert report.created == ["hostile", 'quoted" ; DROP DATABASE victim; --\nname', "also_hostile"]
    assert not marker.exists(), "no meta-command, no program ran"
    assert empty.psql("SELECT count(*) FROM pg_database WHERE datname = 'victim'") == "1"
    assert empty.psql("SELECT count(*) FROM pg_roles WHERE rolname IN ('smuggled', 'in_a_comment')") == "0"
    assert empty.psql("SELECT rolconfig FROM pg_roles WHERE rolname = 'hostile'") == '{"search_path=app, public"}'
    assert empty.psql("SELECT count(*) FROM pg_file_settings WHERE sourcefile LIKE '%auto.conf'") == before_system
    assert empty.psql("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = 'hostile'") == \
        "it's /* not */ a comment"
    assert memberships(empty) == "hostile>also_hostile"
    skipped = "\n".join(report.skipped)
    for said in ("a psql meta-command (\\!): not run", "the setting session_preload_libraries of the role hostile: "
                 "it loads code", "the setting local_preload_libraries of the role hostile: it loads code",
                 "the setting log_statement of the role hostile: only a superuser may set it (superuser context)",
                 "DROP DATABASE …: not run", "COPY …: not run", "ALTER SYSTEM …: not run"):
        assert said in skipped


def test_create_roles_refuses_a_role_the_globals_do_not_have_and_creates_nothing(empty):
    before = state(empty)
    with pytest.raises(MissingRoles, match="the globals backup has no role ghost"):
        create_roles(wiring_conn(empty), "CREATE ROLE present;", {"present", "ghost"})
    assert state(empty) == before


def target_name(app) -> str:
    with app.app_context():
        return wiring.dump_spec(None).name


def wiring_conn(cluster):
    from backup_app.core.conninfo import ConnInfo
    return ConnInfo.from_url(cluster.url("postgres"))


def test_the_restore_page_shows_the_roles_the_backup_needs_and_takes_the_choice(roles_app, empty):
    backup_id = back_up(roles_app)
    client, url = signed_in(roles_app), f"/backups/{backup_id}/restore"

    page = client.get(url).get_data(as_text=True)
    assert 'the roles <strong>&#34;Analyst &#34;&#34;Q&#34;&#34;&#34;, app_owner, reporting</strong>' in page
    assert "(its own server) has them all" in page
    assert "owners and grants are lost" in page

    form = {"target": "other", "target_url": empty.url("shop"), "how": "beside",
            "confirm": "shop"}
    before = state(empty)
    refused = submit(client, url, {**form, "roles": "stop"}).get_data(as_text=True)
    assert "the backup needs the roles &#34;Analyst" in refused and "--create-roles" in refused
    assert state(empty) == before
    queued = submit(client, url, {**form, "roles": "create"})
    assert queued.status_code == 302
    with roles_app.app_context():
        [job] = db.session.query(Job).filter_by(kind="restore").all()
        assert job.options["create_roles"] is True and job.options["no_owner"] is False


def signed_in(app):
    from tests.web_helpers import sign_in
    add_user(app)
    client = app.test_client()
    assert sign_in(client).status_code == 302
    return client

