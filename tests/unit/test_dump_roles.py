"""Reading roles from dump SQL without running it: quoted identifiers, strings, dollar quotes,
comments, meta-commands and COPY data as PostgreSQL and psql read them."""
from backup_app.core.dumproles import GRANT, OWNER, POLICY, USER_MAPPING, required, roles_needed
from backup_app.core.globals_sql import Membership, parse_globals
from backup_app.core.sqltext import IDENT, STRING, WORD, MetaCommand, split_text, statements


def test_statements_understand_quotes_comments_and_dollar_quotes():
    text = ('CREATE TABLE "a;b" (x text DEFAULT \'it\'\'s; fine\');\n'
            "/* one; /* nested; */ still; */ SELECT $fn$ a; b $fn$, E'\\'; x';\n"
            '-- SELECT 2;\nSELECT "multi\nline";')
    found = list(split_text(text))
    assert len(found) == 3
    assert found[0][2].kind == IDENT and found[0][2].value == "a;b"
    assert [t.value for t in found[0] if t.kind == STRING] == ["it's; fine"]
    assert [(t.kind, t.value) for t in found[1]] == [(WORD, "select"), (STRING, " a; b "), ("op", ","),
                                                      (STRING, "'; x")]
    assert found[2][1].value == "multi\nline"


def test_meta_commands_and_copy_data_are_set_apart():
    lines = [b"\\restrict abc\n", b"COPY public.t (a) FROM stdin;\n", b"GRANT x TO y;\n", b"\\.\n",
             b"SELECT 1; \\! touch /tmp/x\n"]
    found = list(statements(lines))
    assert found[0] == MetaCommand("\\restrict abc")
    assert found[1][0].value == "copy"
    assert found[2][0].value == "select"
    assert found[3] == MetaCommand("\\! touch /tmp/x")
    assert len(found) == 4, "the COPY data line is not a statement"


SCHEMA = '''
ALTER TABLE public.t OWNER TO app_owner;
ALTER FUNCTION public."f;x"(a integer, "TO" text) OWNER TO "Weird ""One""";
GRANT SELECT ON TABLE public.t TO reporting;
GRANT SELECT(a), UPDATE(a) ON TABLE public.t TO "Analyst", GROUP staff WITH GRANT OPTION;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT ALL ON SCHEMA s TO CURRENT_USER;
GRANT SELECT ON TABLE public.pg_thing TO pg_read_all_data;
ALTER DEFAULT PRIVILEGES FOR ROLE creator IN SCHEMA s REVOKE ALL ON TABLES FROM gone;
SET SESSION AUTHORIZATION grantor;
CREATE POLICY p ON public.t TO policy_role USING ((owner = CURRENT_USER));
CREATE USER MAPPING FOR mapped SERVER srv OPTIONS (user 'TO x');
COMMENT ON TABLE public.t IS 'ALTER TABLE t OWNER TO in_a_string';
CREATE FUNCTION f() RETURNS void AS $$ GRANT x TO in_a_body; $$ LANGUAGE sql;
'''


def test_roles_needed_come_from_owners_grants_policies_and_user_mappings():
    assert roles_needed(split_text(SCHEMA)) == {
        "app_owner": {OWNER}, 'Weird "One"': {OWNER}, "reporting": {GRANT}, "Analyst": {GRANT}, "staff": {GRANT},
        "creator": {GRANT}, "gone": {GRANT}, "grantor": {OWNER}, "policy_role": {POLICY}, "mapped": {USER_MAPPING}}


def test_no_owner_needs_only_the_roles_of_policies_and_user_mappings():
    needed = roles_needed(split_text(SCHEMA))
    assert required(needed, no_owner=True) == {"policy_role", "mapped"}
    assert "app_owner" in required(needed)


def test_globals_are_read_as_values():
    found = parse_globals('''
CREATE ROLE "We ""ird";
ALTER ROLE "We ""ird" WITH NOSUPERUSER LOGIN CONNECTION LIMIT 5 PASSWORD 'SCRAM-SHA-256$x' VALID UNTIL 'infinity';
ALTER ROLE "We ""ird" SET search_path TO '$user', 'public';
COMMENT ON ROLE "We ""ird" IS 'it''s';
GRANT readers TO "We ""ird" WITH ADMIN OPTION, INHERIT FALSE GRANTED BY postgres;
CREATE TABLESPACE ts OWNER x LOCATION '/x';
CREATE ROLE pg_fake;
ALTER ROLE ALL SET work_mem = '1MB';
''')
    role = found.roles['We "ird']
    assert role.options == [("NOSUPERUSER", None), ("LOGIN", None), ("CONNECTION LIMIT", 5),
                            ("PASSWORD", "SCRAM-SHA-256$x"), ("VALID UNTIL", "infinity")]
    assert role.settings == [("search_path", ["$user", "public"])]
    assert role.comment == "it's"
    assert found.memberships == [Membership("readers", 'We "ird', (("admin", True), ("inherit", False)))]
    assert list(found.roles) == ['We "ird']
    assert found.ignored == ["CREATE TABLESPACE …: not run (not a role statement)",
                             "CREATE ROLE …: not run (a built-in role)",
                             "ALTER ROLE …: not run (expected a role's name)"]
