import pytest

from backup_app.adapters.local import LocalStorage
from backup_app.core.conninfo import ConnInfo
from backup_app.errors import BackupError, ConfigurationError


def test_conninfo_from_url_goes_to_libpq_environment():
    conn = ConnInfo.from_url("postgresql://app%40x:p%2Fss@db.example:6543/shop?sslmode=require")

    assert conn.env() == {"PGDATABASE": "shop", "PGHOST": "db.example", "PGPORT": "6543",
                          "PGUSER": "app@x", "PGPASSWORD": "p/ss", "PGSSLMODE": "require",
                          "PGREQUIREAUTH": "scram-sha-256,none", "PGCONNECT_TIMEOUT": "10"}
    assert conn.display() == "postgresql://app@x@db.example:6543/shop"
    assert "p/ss" not in repr(conn)


def test_a_client_program_waits_10_s_for_a_server_unless_the_url_says_otherwise():
    assert ConnInfo.from_url("postgresql://db.example/shop").env()["PGCONNECT_TIMEOUT"] == "10"
    assert ConnInfo.from_url("postgresql://db.example/shop?connect_timeout=3").env()["PGCONNECT_TIMEOUT"] == "3"


@pytest.mark.parametrize("url, message", [
    ("mysql://a@b/c", "must start with postgresql://"),
    ("postgresql://a@b/", "names no database"),
    ("postgresql://a@b:99999/c", "bad port"),
    ("postgresql://a@b/c?evil=1", "unsupported parameters: evil"),
])
def test_conninfo_rejects_bad_urls(url, message):
    with pytest.raises(ConfigurationError, match=message):
        ConnInfo.from_url(url)


@pytest.mark.parametrize("name", ["../etc/passwd", "/etc/passwd", "a/../../b", "..", ".hidden",
                                  "x\x00y", "", "a" * 300, "dir/file"])
def test_local_storage_never_leaves_its_folder(tmp_path, name):
    local = LocalStorage(tmp_path / "backups")
    with pytest.raises(BackupError, match="invalid backup file name"):
        local.path(name)


def test_partials_of_a_file_are_removed(tmp_path):
    local = LocalStorage(tmp_path)
    local.open_partial("a.dump")._file.close()
    local.open_partial("a.dump")._file.close()
    local.open_partial("b.dump")._file.close()
    (tmp_path / "a.dump").write_bytes(b"x")

    assert local.remove_partial("a.dump") is True
    assert local.remove_partial("a.dump") is False
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("b.dump.")) == ["a.dump"]


def test_two_writers_of_one_file_never_share_a_partial(tmp_path):
    """Two fetches of the same backup (a restore and a download) each write a file of their own:
    neither truncates the other, and each reads back exactly what it wrote."""
    local = LocalStorage(tmp_path)
    first, second = local.open_partial("a.dump"), local.open_partial("a.dump")
    first.write(b"first " * 1000)
    second.write(b"second")
    first.write(b"end")

    assert first.path != second.path
    with first.commit_open() as committed:
        second_committed = second.commit_open()
        assert committed.read() == b"first " * 1000 + b"end", "the bytes written, though replaced since"
    assert second_committed.read() == b"second"
    second_committed.close()
    assert (tmp_path / "a.dump").read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["a.dump"]
