"""The psql-aware scanner of plain SQL scripts: what it lets through, what it refuses."""
import io

import pytest

from backup_app.core.sqlscript import GuardedScript, ScriptScanner, UnsafeScript
from backup_app.errors import NotADump

DUMP = b"""--
-- PostgreSQL database dump
--

\\restrict k3yK3y

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 18.6

SET standard_conforming_strings = on;
CREATE FUNCTION public.f() RETURNS text LANGUAGE plpgsql AS $_$ BEGIN RETURN '\\! not run'; END $_$;
CREATE FUNCTION public.g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;
COMMENT ON TABLE public.a$b$ IS 'C:\\dir /* not a comment */';
/* a comment \\! with /* nested */ still a comment */
COPY public.t (id, note) FROM stdin;
1\t\\N
\\restrict looks-like-data
2\tx\\.y
\\.
SELECT "a""\\!b" FROM t; -- \\! in a comment
SELECT 1;\r
\\unrestrict k3yK3y

"""


def scan(data: bytes, size: int, **options) -> tuple[bytes, ScriptScanner]:
    scanner = ScriptScanner(**options)
    out = [scanner.feed(data[i:i + size]) for i in range(0, len(data), size)]
    return b"".join(out) + scanner.close(), scanner


@pytest.mark.parametrize("size", [1, 2, 5, 64, 1 << 20])
def test_a_pg_dump_script_passes_whole_in_any_chunks(size):
    out, scanner = scan(DUMP, size, strict=True)

    assert out == DUMP
    assert scanner.versions == {"from": "15.18", "by": "18.6"}
    assert scanner.statements == 7


@pytest.mark.parametrize("size", [1, 3, 1 << 20])
def test_pg_dumps_own_restrict_lines_are_left_out_for_psql_and_data_is_kept(size):
    out, _ = scan(DUMP, size, drop_own_restrict=True)

    assert b"k3yK3y" not in out
    assert b"\\restrict looks-like-data\n" in out, "a data line is data"
    assert out.replace(b"\n", b"") == DUMP.replace(b"\\restrict k3yK3y\n", b"").replace(
        b"\\unrestrict k3yK3y\n", b"").replace(b"\n", b"")


@pytest.mark.parametrize("script", [
    b"SELECT 1;\n\\! touch /tmp/x\n",
    b"SELECT 1; \\o /tmp/x\n",
    b"-- a comment ends at a carriage return\r\\! id\n",
    b"COPY t FROM stdin;\n1\n\\.\n\\copy t from program 'id'\n",
    b"COPY t FROM stdin; \\! id\n1\n\\.\n",
    b"SELECT '\\'' \\! id ';\n",
    b"\\restrict k\n\\unrestrict k\n\\connect other\n",
    b"\\restrict k \\! id\n",
    b"SELECT 1 \\gset\n",
    b"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; COPY t FROM stdin;\n\\! id\nEND;\n",
    b"COPY (SELECT 1 FROM stdin) TO stdout;\n\\i /etc/passwd\n",
])
def test_a_meta_command_is_refused(script):
    with pytest.raises(UnsafeScript):
        scan(script, 3, strict=True)
    with pytest.raises(UnsafeScript):
        scan(script, 1 << 20, drop_own_restrict=True)


@pytest.mark.parametrize("script, message", [
    (b"", "no SQL statement"),
    (b"<html><body>404</body></html>\n", "does not start an SQL command"),
    (b"SELECT 1;\nSELECT 'cut", "ends inside a quoted string"),
    (b"COPY t FROM stdin;\n1\n2\n", "ends inside a COPY data block"),
    (b"SELECT 1;\nCREATE TABLE t (a int", "ends in the middle of a statement"),
    (b"SELECT 1;\x00\n", "NUL byte"),
])
def test_strict_mode_wants_whole_sql(script, message):
    with pytest.raises(NotADump, match=message):
        scan(script, 4, strict=True)


def test_the_guarded_script_starts_restricted_with_a_key_of_its_own():
    read = GuardedScript(io.BytesIO(DUMP), "ourkey").read()

    assert read.startswith(b"\\restrict ourkey\n")
    assert b"k3yK3y" not in read
    assert GuardedScript(io.BytesIO(b"SELECT 1;\n"), None).read() == b"SELECT 1;\n"
