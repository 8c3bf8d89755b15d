"""The backup service on fake adapters: the decisions, without servers."""
import hashlib

import pytest

from backup_app.adapters.postgres import ConnInfo
from backup_app.adapters.storage import LocalStorage
from backup_app.errors import BackupFileMissing, DumpFailed, InvalidBackupState
from backup_app.extensions import db
from backup_app.services import backups as service
from backup_app.services.targets import DumpSpec
from tests.unit.fakes import FakePg, FakeS3

TARGET = DumpSpec("shop", ConnInfo.from_url("postgresql://u:p@h/shop"))


@pytest.fixture
def session(make_app):
    with make_app().app_context():
        yield db.session


@pytest.fixture
def local(tmp_path):
    return LocalStorage(tmp_path / "backups")


def test_create_keeps_two_identical_copies(session, local):
    pg, s3 = FakePg(), FakeS3()

    backup = service.create_backup(session, TARGET, local, [s3], pg)

    assert backup.status == "completed"
    assert backup.sha256 == hashlib.sha256(pg.data).hexdigest()
    assert s3.objects[backup.filename] == pg.data == local.path(backup.filename).read_bytes()
    assert s3.metadata[backup.filename]["X-Backup-Sha256"] == backup.sha256
    assert s3.metadata[backup.filename]["X-Database"] == "shop"
    assert (backup.server_version, backup.client_version) == ("15.2", "15.4")
    assert s3.metadata[backup.filename]["X-Server-Version"] == "15.2"
    assert s3.metadata[backup.filename]["X-Client-Version"] == "15.4"
    assert {c.location: c.status for c in backup.copies} == {"local": "present", "s3": "present"}


def test_upload_cut_midway_marks_only_the_s3_copy_failed(session, local):
    s3 = FakeS3()
    s3.fail_upload_after = 100_000

    backup = service.create_backup(session, TARGET, local, [s3], FakePg())

    assert backup.status == "completed" and backup.storage_url is None
    assert backup.copy("s3").status == "failed"
    assert "connection reset" in backup.copy("s3").error
    assert backup.copy("local").status == "present"


def test_failed_dump_leaves_no_file_and_no_object(session, local):
    pg, s3 = FakePg(error="pg_dump: error: connection refused"), FakeS3()

    with pytest.raises(DumpFailed, match="connection refused"):
        service.create_backup(session, TARGET, local, [s3], pg)

    [row] = service.list_backups(session)
    assert row.status == "failed" and row.error == "pg_dump: error: connection refused"
    assert list(local.root.iterdir()) == [] and s3.objects == {}


def test_restore_prefers_the_intact_local_file_then_s3(session, local):
    pg, s3 = FakePg(), FakeS3()
    backup = service.create_backup(session, TARGET, local, [s3], pg)
    s3.objects[backup.filename] = b"tampered"

    service.restore_backup(session, backup.id, TARGET.conn, local, [s3], pg)
    assert pg.restored == [pg.data], "the intact local file is used, the S3 copy never read"

    local.path(backup.filename).write_bytes(b"rotten")
    with pytest.raises(BackupFileMissing, match="SHA-256"):
        service.restore_backup(session, backup.id, TARGET.conn, local, [s3], pg)
    assert backup.copy("local").status == "failed" and backup.copy("s3").status == "failed"
    assert local.path(backup.filename).read_bytes() == b"rotten", "not replaced by bad bytes"


def test_delete_keeps_everything_when_s3_is_down(session, local):
    s3 = FakeS3()
    backup = service.create_backup(session, TARGET, local, [s3], FakePg())
    s3.down = True

    with pytest.raises(service.StorageUnavailable):
        service.delete_backup(session, backup.id, local, [s3])

    assert service.get_backup(session, backup.id) is backup
    assert local.exists(backup.filename) and backup.filename in s3.objects


def test_delete_of_a_local_only_backup_works_while_s3_is_down(session, local):
    s3 = FakeS3()
    s3.down = True
    backup = service.create_backup(session, TARGET, local, [s3], FakePg())
    assert backup.copy("s3").status == "failed"

    service.delete_backup(session, backup.id, local, [s3])

    assert service.list_backups(session) == [] and not local.exists(backup.filename)


def test_failed_backup_cannot_be_restored(session, local):
    with pytest.raises(DumpFailed):
        service.create_backup(session, TARGET, local, [], FakePg(error="boom"))
    [row] = service.list_backups(session)

    with pytest.raises(InvalidBackupState, match="is failed, not completed"):
        service.restore_backup(session, row.id, TARGET.conn, local, [], FakePg())


def test_every_store_gets_the_stream_and_one_down_fails_only_its_copy(session, local):
    pg, first, second = FakePg(), FakeS3(), FakeS3("s3:offsite")
    second.down = True

    backup = service.create_backup(session, TARGET, local, [first, second], pg)

    assert {c.location: c.status for c in backup.copies} == {"local": "present", "s3": "present",
                                                             "s3:offsite": "failed"}
    assert "cannot reach S3" in backup.copy("s3:offsite").error
    assert first.objects[backup.filename] == pg.data and second.objects == {}
    assert backup.storage_url == first.uri(backup.filename)


def test_restore_reads_the_first_store_whose_copy_matches(session, local):
    pg, first, second = FakePg(), FakeS3(), FakeS3("s3:offsite")
    backup = service.create_backup(session, TARGET, local, [first, second], pg)
    local.path(backup.filename).unlink()
    first.objects[backup.filename] = b"tampered"

    service.restore_backup(session, backup.id, TARGET.conn, local, [first, second], pg)

    assert pg.restored == [pg.data]
    assert {c.location: c.status for c in backup.copies} == {"local": "present", "s3": "failed",
                                                             "s3:offsite": "present"}


def test_restore_reports_the_bytes_fed_to_pg_restore(session, local):
    pg, seen = FakePg(), []
    backup = service.create_backup(session, TARGET, local, [], pg)

    service.restore_backup(session, backup.id, TARGET.conn, local, [], pg, progress=seen.append)

    assert seen and seen[-1] == backup.size_bytes == len(pg.data)
