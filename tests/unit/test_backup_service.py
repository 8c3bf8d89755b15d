"""The backup service on fake adapters: the decisions, without servers."""
import hashlib

import pytest

from backup_app.adapters.local import LocalStorage
from backup_app.core.conninfo import ConnInfo
from backup_app.errors import BackupFileMissing, DumpFailed, InvalidBackupState, RestoreFailed, StorageUnavailable
from backup_app.extensions import db
from backup_app.services import events
from backup_app.services.backups.create import create_backup
from backup_app.services.backups.delete import delete_backup
from backup_app.services.backups.queries import get_backup, list_backups
from backup_app.services.backups.restore import RestoreOptions, restore_backup
from backup_app.services.targets import DumpSpec
from backup_app.services.verify import verify_backup
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

    backup = create_backup(session, TARGET, local, [s3], pg)

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

    backup = create_backup(session, TARGET, local, [s3], FakePg())

    assert backup.status == "completed" and backup.storage_url is None
    assert backup.copy("s3").status == "failed"
    assert "connection reset" in backup.copy("s3").error
    assert backup.copy("local").status == "present"


def test_failed_dump_leaves_no_file_and_no_object(session, local):
    pg, s3 = FakePg(error="pg_dump: error: connection refused"), FakeS3()

    with pytest.raises(DumpFailed, match="connection refused"):
        create_backup(session, TARGET, local, [s3], pg)

    [row] = list_backups(session)
    assert row.status == "failed" and row.error == "pg_dump: error: connection refused"
    assert list(local.root.iterdir()) == [] and s3.objects == {}


def test_restore_prefers_the_intact_local_file_then_s3(session, local):
    pg, s3 = FakePg(), FakeS3()
    backup = create_backup(session, TARGET, local, [s3], pg)
    s3.objects[backup.filename] = b"tampered"

    restore_backup(session, backup.id, TARGET.conn, local, [s3], pg)
    assert pg.restored == [pg.data], "the intact local file is used, the S3 copy never read"

    local.path(backup.filename).write_bytes(b"rotten")
    with pytest.raises(BackupFileMissing, match="SHA-256"):
        restore_backup(session, backup.id, TARGET.conn, local, [s3], pg)
    assert backup.copy("local").status == "failed" and backup.copy("s3").status == "failed"
    assert local.path(backup.filename).read_bytes() == b"rotten", "not replaced by bad bytes"


def test_delete_keeps_everything_when_s3_is_down(session, local):
    s3 = FakeS3()
    backup = create_backup(session, TARGET, local, [s3], FakePg())
    s3.down = True

    with pytest.raises(StorageUnavailable):
        delete_backup(session, backup.id, local, [s3])

    assert get_backup(session, backup.id) is backup
    assert local.exists(backup.filename) and backup.filename in s3.objects


def test_delete_of_a_local_only_backup_works_while_s3_is_down(session, local):
    s3 = FakeS3()
    s3.down = True
    backup = create_backup(session, TARGET, local, [s3], FakePg())
    assert backup.copy("s3").status == "failed"

    delete_backup(session, backup.id, local, [s3])

    assert list_backups(session) == [] and not local.exists(backup.filename)


def test_failed_backup_cannot_be_restored(session, local):
    with pytest.raises(DumpFailed):
        create_backup(session, TARGET, local, [], FakePg(error="boom"))
    [row] = list_backups(session)

    with pytest.raises(InvalidBackupState, match="is failed, not completed"):
        restore_backup(session, row.id, TARGET.conn, local, [], FakePg())


def test_every_store_gets_the_stream_and_one_down_fails_only_its_copy(session, local):
    pg, first, second = FakePg(), FakeS3(), FakeS3("s3:offsite")
    second.down = True

    backup = create_backup(session, TARGET, local, [first, second], pg)

    assert {c.location: c.status for c in backup.copies} == {"local": "present", "s3": "present",
                                                             "s3:offsite": "failed"}
    assert "cannot reach S3" in backup.copy("s3:offsite").error
    assert first.objects[backup.filename] == pg.data and second.objects == {}
    assert backup.storage_url == first.uri(backup.filename)


def test_restore_reads_the_first_store_whose_copy_matches(session, local):
    pg, first, second = FakePg(), FakeS3(), FakeS3("s3:offsite")
    backup = create_backup(session, TARGET, local, [first, second], pg)
    local.path(backup.filename).unlink()
    first.objects[backup.filename] = b"tampered"

    restore_backup(session, backup.id, TARGET.conn, local, [first, second], pg)

    assert pg.restored == [pg.data]
    assert {c.location: c.status for c in backup.copies} == {"local": "present", "s3": "failed",
                                                             "s3:offsite": "present"}


def test_restore_reports_the_bytes_fed_to_pg_restore(session, local):
    pg, seen = FakePg(), []
    backup = create_backup(session, TARGET, local, [], pg)

    restore_backup(session, backup.id, TARGET.conn, local, [], pg, progress=seen.append)

    assert seen and seen[-1] == backup.size_bytes == len(pg.data)


def test_restore_over_an_existing_database_builds_beside_it_and_swaps(session, local):
    pg = FakePg()
    pg.server.databases["shop"] = [b"today's data"]
    backup = create_backup(session, TARGET, local, [], pg)

    restored = restore_backup(session, backup.id, TARGET.conn, local, [], pg)

    assert pg.server.databases["shop"] == [pg.data], "the target holds the backup"
    assert restored.previous_database.startswith("shop_before_restore_")
    assert pg.server.databases[restored.previous_database] == [b"today's data"], "nothing lost"
    assert set(pg.server.databases) == {"shop", restored.previous_database}, "no half-built database left"

    again = restore_backup(session, backup.id, TARGET.conn, local, [], pg, options=RestoreOptions(drop_previous=True))
    assert again.previous_database is None and pg.server.databases["shop"] == [pg.data]
    assert set(pg.server.databases) == {"shop", restored.previous_database}


def test_restore_into_a_missing_database_creates_it_without_a_swap(session, local):
    pg = FakePg(databases=())
    backup = create_backup(session, TARGET, local, [], pg)

    restored = restore_backup(session, backup.id, TARGET.conn, local, [], pg)

    assert restored.previous_database is None and restored.swap_seconds is None
    assert pg.server.databases == {"shop": [pg.data]} and pg.server.swaps == []


def test_a_failed_restore_leaves_the_current_database_and_drops_the_half_built_one(session, local):
    pg = FakePg()
    pg.server.databases["shop"] = [b"today's data"]
    backup = create_backup(session, TARGET, local, [], pg)
    pg.table_row_counts = lambda conn: {"public.orders": 1}
    backup.row_counts = {"public.orders": 3000}
    session.commit()

    with pytest.raises(RestoreFailed, match="public.orders: 3000 rows at backup time, 1 restored"):
        restore_backup(session, backup.id, TARGET.conn, local, [], pg)

    assert pg.server.databases == {"shop": [b"today's data"]} and pg.server.swaps == []


def test_a_role_that_cannot_swap_is_told_to_restore_in_place(session, local):
    pg = FakePg()
    pg.server.swap_problems = lambda name: ["the role app cannot create databases (it needs CREATEDB)"]
    backup = create_backup(session, TARGET, local, [], pg)

    with pytest.raises(RestoreFailed, match="cannot create databases .*Restore with --in-place"):
        restore_backup(session, backup.id, TARGET.conn, local, [], pg)
    assert pg.restored == [], "refused before anything was fetched or restored"

    restored = restore_backup(session, backup.id, TARGET.conn, local, [], pg, options=RestoreOptions(in_place=True))
    assert restored.previous_database is None and pg.server.databases == {"shop": [pg.data]}


def test_an_unexpected_error_before_the_stream_still_fails_the_backup(session, local):
    """Not only BackupErrors: whatever breaks between "running" and the stream ends the row."""
    pg = FakePg()

    def broken(conn):
        raise TypeError("connect() got multiple values for keyword argument 'connect_timeout'")
    pg.snapshot_counter = broken

    with pytest.raises(TypeError):
        create_backup(session, TARGET, local, [], pg)

    [row] = list_backups(session)
    assert row.status == "failed" and row.completed_at is not None
    assert row.error == ("internal error: TypeError: connect() got multiple values for keyword argument "
                         "'connect_timeout'")
    assert list(local.root.iterdir()) == []


def test_a_broken_subscriber_never_fails_a_backup(session, local):
    """A notification whose own lookup fails (a busy catalog, a bug) is logged, never raised."""
    def broken(backup, **_):
        raise RuntimeError("database is locked")
    events.backup_completed.connect(broken)
    try:
        backup = create_backup(session, TARGET, local, [], FakePg())
    finally:
        events.backup_completed.disconnect(broken)

    assert backup.status == "completed"


def test_a_verify_that_meets_an_os_error_ends_failed_not_running(session, local):
    """Not only BackupErrors: a connection reset while a copy is read still ends the verification."""
    class ResetStore(FakeS3):
        def open(self, filename):
            raise ConnectionResetError("connection reset by peer")

    store = ResetStore()
    backup = create_backup(session, TARGET, local, [store], FakePg())

    verification = verify_backup(session, backup.id, TARGET.conn, local, [store], FakePg())

    assert verification.status == "failed" and verification.finished_at is not None
    assert "verify stopped: ConnectionResetError: connection reset by peer" in verification.error


class DeadlockingPg(FakePg):
    """pg_restore whose parallel jobs deadlock on each other (as on partitioned indexes, now and then)."""

    def restore(self, conn, source, fmt, *, in_place=False, jobs=1, lock_timeout=60, progress=None, no_owner=False):
        if jobs > 1:
            source.read(100)
            self.server.databases[conn.dbname].append(b"half")
            raise RestoreFailed("pg_restore: error: could not execute query: ERROR:  deadlock detected")
        super().restore(conn, source, fmt, in_place=in_place, jobs=jobs)


@pytest.mark.parametrize("database", ["shop", "fresh"])
def test_a_parallel_restore_that_deadlocks_is_done_again_with_one_job(session, local, database):
    pg = DeadlockingPg()
    backup = create_backup(session, TARGET, local, [], pg)
    lines = []

    restore_backup(session, backup.id, TARGET.conn.with_dbname(database), local, [], pg,
                   options=RestoreOptions(jobs=2), report=lines.append)

    assert pg.server.databases[database] == [pg.data], "a database made again, the whole backup restored once"
    assert "pg_restore's 2 jobs deadlocked on each other; restoring again with one job" in lines
