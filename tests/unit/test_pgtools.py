"""Finding PostgreSQL clients and choosing the one each dump and restore runs."""
import os

import pytest

from backup_app.adapters.pgtools import PgTools, find_clients, wheel_bin_dir
from backup_app.adapters.postgres import PgClient
from backup_app.core.conninfo import ConnInfo
from backup_app.errors import ConfigurationError, VersionMismatch

DEBIAN_15 = "/usr/lib/postgresql/15/bin"
CONN = ConnInfo.from_url("postgresql://u@h/shop")


class ServerAt(PgTools):
    """PgTools facing a server of a fixed version, without connecting to it."""

    def __init__(self, server: str, *versions: str):
        super().__init__([PgClient(f"/pg/{v}/bin", v) for v in versions])
        self.server = server

    def server_version(self, conn):
        return self.server


@pytest.mark.parametrize("server, versions, chosen", [
    ("15.18", ["15.18", "18.6"], "15.18"),            # the client matching the server
    ("12.22", ["13.1", "15.18", "18.6"], "13.1"),      # else the oldest newer one
    ("18.6", ["15.18", "18.1", "18.6"], "18.6"),       # the newest release of that major
    ("16.4", ["15.18", "18.6"], "18.6"),
])
def test_dump_runs_the_oldest_client_at_least_as_new_as_the_server(server, versions, chosen):
    found_server, client = ServerAt(server, *versions).for_dump(CONN)

    assert (found_server, client.version) == (server, chosen)


def test_server_newer_than_every_client_names_both():
    with pytest.raises(VersionMismatch) as error:
        ServerAt("18.6", "14.2", "15.18").for_dump(CONN)

    assert str(error.value) == (
        "the server runs PostgreSQL 18.6, newer than every pg_dump found (14.2 in /pg/14.2/bin, "
        "15.18 in /pg/15.18/bin): install postgresql-client-18 or point PG_BIN_DIR at pg_dump 18 or newer")


@pytest.mark.parametrize("server, dump_version, versions, chosen", [
    ("18.6", "15.18", ["15.18", "18.6"], "18.6"),    # upgrade: the target server's own client
    ("15.18", "15.18", ["15.18", "18.6"], "15.18"),  # never a client newer than the server
    ("17.2", "15.18", ["15.18", "18.6"], "15.18"),
    ("15.18", None, ["15.18", "18.6"], "15.18"),     # a row from before versions were recorded
])
def test_restore_runs_the_newest_client_between_the_dump_and_the_server(server, dump_version, versions,
                                                                        chosen):
    assert ServerAt(server, *versions).for_restore(CONN, dump_version).version == chosen


@pytest.mark.parametrize("server, dump_version, versions, message", [
    ("15.18", "18.6", ["15.18", "18.6"],
     "this backup was made by pg_dump 18.6 and cannot be restored into the older PostgreSQL 15.18: "
     "restore it into PostgreSQL 18 or newer"),
    ("18.6", "18.6", ["15.18"],
     "restoring into PostgreSQL 18.6 needs pg_restore 18 (the backup was made by pg_dump 18.6); "
     "found 15.18 in /pg/15.18/bin: install postgresql-client-18 or point PG_BIN_DIR at it"),
    ("16.4", "15.18", ["17.1", "18.6"],
     "restoring into PostgreSQL 16.4 needs pg_restore 15 to 16 (the backup was made by pg_dump 15.18); "
     "found 17.1 in /pg/17.1/bin, 18.6 in /pg/18.6/bin: install postgresql-client-16 or point PG_BIN_DIR at it"),
    ("14.1", None, ["15.18"],
     "restoring into PostgreSQL 14.1 needs pg_restore 14 or older; "
     "found 15.18 in /pg/15.18/bin: install postgresql-client-14 or point PG_BIN_DIR at it"),
])
def test_restore_without_a_fitting_client_says_what_is_needed(server, dump_version, versions, message):
    with pytest.raises(VersionMismatch) as error:
        ServerAt(server, *versions).for_restore(CONN, dump_version)

    assert str(error.value) == message


def test_pg_bin_dir_replaces_the_search_and_takes_several_folders(tmp_path):
    linked = tmp_path / "same-as-debian"
    linked.symlink_to(DEBIAN_15)
    folders = os.pathsep.join([str(wheel_bin_dir()), DEBIAN_15, str(linked)])

    clients = find_clients(folders)

    assert [(c.bin_dir, c.major) for c in clients] == [(str(wheel_bin_dir()), 18), (DEBIAN_15, 15)]
    assert [c.major for c in PgTools(clients).clients] == [15, 18], "sorted oldest first"


def test_search_finds_debian_and_the_wheel_but_not_debians_wrapper():
    found = {c.bin_dir: c.major for c in find_clients()}

    assert found[DEBIAN_15] == 15 and found[str(wheel_bin_dir())] == 18
    assert "/usr/bin" not in found, "/usr/bin/pg_dump is Debian's pg_wrapper"


@pytest.mark.parametrize("make_folder", [lambda p: str(p), lambda p: "/usr/bin"], ids=["empty", "pg_wrapper"])
def test_no_client_in_pg_bin_dir_is_a_clear_error(tmp_path, make_folder):
    folder = make_folder(tmp_path)

    with pytest.raises(ConfigurationError) as error:
        find_clients(folder)

    assert str(error.value) == (f"no PostgreSQL client (pg_dump, pg_restore, psql) found in PG_BIN_DIR "
                                f"({folder}); install postgresql-client")


def test_a_pg_dump_that_does_not_say_its_version_is_named(tmp_path):
    for name in ("pg_dump", "pg_restore", "psql"):
        program = tmp_path / name
        program.write_text("#!/bin/sh\necho 'not a PostgreSQL program'\n")
        program.chmod(0o755)

    with pytest.raises(ConfigurationError) as error:
        find_clients(str(tmp_path))

    assert str(error.value) == f"cannot tell the version of {tmp_path / 'pg_dump'}: not a PostgreSQL program"
