"""The restore's own handling of files a backed-up server (or the restored server's user) controls:
no link in a base backup's tar, no link followed when the restore reads or rewrites a file in the
restored data directory, no shell character in the data directory's path."""
import io
import tarfile
from pathlib import Path

import pytest

from backup_app.adapters.physical import RestoredServer
from backup_app.errors import PitrError
from backup_app.services.pitr.restore import check_data_dir, drop_recovery_target, no_links, prepare_data_dir


def tar_with(member: tarfile.TarInfo, data: bytes = b"") -> io.BytesIO:
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    stream.seek(0)
    return stream


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_a_link_in_a_base_backup_is_refused_before_anything_is_written(tmp_path, kind):
    link = tarfile.TarInfo("base/escape")
    link.type, link.linkname = kind, "global/pg_control"
    with tarfile.open(fileobj=tar_with(link), mode="r|") as tar, \
            pytest.raises(tarfile.FilterError, match=r"holds a link \(base/escape\)"):
        tar.extractall(tmp_path, filter=no_links)
    assert list(tmp_path.iterdir()) == []


def test_a_plain_file_is_extracted():
    member = tarfile.TarInfo("PG_VERSION")
    with tarfile.open(fileobj=tar_with(member, b"15\n"), mode="r|") as tar:
        assert [no_links(m, "/tmp/x").name for m in tar] == ["PG_VERSION"]


def test_the_log_is_not_read_through_a_link(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("APP_ENCRYPTION_KEY=abc")
    server = RestoredServer.__new__(RestoredServer)
    server.log_file = tmp_path / "pitr-restore.log"
    server.log_file.symlink_to(secret)
    assert server.log() == ""
    server.log_file.unlink()
    server.log_file.write_text("LOG:  database system is ready")
    assert server.log() == "LOG:  database system is ready"


def test_dropping_the_target_replaces_a_link_instead_of_writing_through_it(tmp_path):
    outside = tmp_path / "outside"
    outside.write_text("untouched")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "postgresql.conf").write_text("port = 5\nrecovery_target_time = '2026-12-01 00:00:00+00'\n")
    (data_dir / "recovery.signal").symlink_to(outside)

    drop_recovery_target(data_dir)

    assert (data_dir / "postgresql.conf").read_text() == "port = 5\n"
    assert not (data_dir / "recovery.signal").is_symlink() and outside.read_text() == "untouched"


@pytest.mark.parametrize("name", ["x$(id)", "x`id`", "x;id", "x y", "x'y", 'x"y', "x\ny"])
def test_a_data_directory_with_shell_characters_is_refused(tmp_path, name):
    with pytest.raises(PitrError, match="may hold only letters, digits and"):
        check_data_dir(tmp_path / name)
    assert not (tmp_path / name).exists()


def test_a_plain_data_directory_passes(tmp_path):
    check_data_dir(Path(tmp_path) / "restored-1.2_x+y")


def test_folders_made_on_the_way_to_a_data_directory_can_be_passed_through(tmp_path):
    data_dir = prepare_data_dir(tmp_path / "restores" / "shop" / "pg")
    assert [oct(p.stat().st_mode & 0o777) for p in (tmp_path / "restores", tmp_path / "restores" / "shop",
                                                    data_dir)] == ["0o711", "0o711", "0o700"]
