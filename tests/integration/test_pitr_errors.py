"""The point-in-time restore's error paths against a PostgreSQL 15 cluster of this module's own and the
real stores: replay that ends before the moment, a server that goes past it, damage that only
pg_verifybackup sees, no intact copy of a base backup or of a WAL file, a server not ready for
archiving, an incremental on 15 and a port in use. Each says what went wrong and leaves nothing:
no data directory (or an emptied one that was given empty), no server on the port, the archive's
catalog rows as they were."""
import hashlib
import io
import json
import re
import shutil
import tarfile
from datetime import datetime
from pathlib import Path

import pytest

from backup_app import wiring
from backup_app.adapters.ports import port_in_use
from backup_app.core import codecs
from backup_app.core.wal import TARGET_NOT_REACHED, segment_of_lsn
from backup_app.errors import PitrError
from backup_app.extensions import db
from backup_app.models import BaseBackup, WalFile, isoformat
from backup_app.services.pitr.restore import RestoreRequest, drop_recovery_target, restore_to_moment
from devtools.localservers import PostgresCluster, reserve_port
from tests.helpers import add_target, error_line, invoke
from tests.integration.pitr_support import (  # noqa: F401 - fixtures
    archiving,
    covered,
    insert_batch,
    pitr_app,
    pitr_cluster,
    receivers,
    restored,
    restored_rows,
    status,
    wait_for,
)


@pytest.fixture
def fresh_cluster(tmp_path):
    """A PostgreSQL 15 cluster of the test's own, to reconfigure and restart."""
    cluster = PostgresCluster(tmp_path / "fresh").start()
    yield cluster
    cluster.stop()


def archived(runner, cluster, batch: int) -> datetime:
    """Insert a batch and wait until the archive holds it; the moment just after its commit."""
    moment = insert_batch(cluster, batch)
    wait_for(lambda: covered(runner, moment), what=f"batch {batch} archived")
    return moment


def catalog_rows(app) -> tuple[list, list]:
    """The base backups and the archived WAL files as the catalog has them."""
    with app.app_context():
        bases = [b.to_dict() for b in db.session.scalars(db.select(BaseBackup).order_by(BaseBackup.started_at))]
        wal = [(w.name, w.kind, w.filename, w.sha256, w.copies)
               for w in db.session.scalars(db.select(WalFile).order_by(WalFile.name, WalFile.kind))]
        db.session.commit()
    return bases, wal


def refused_restore(runner, data_dir: Path, port: int, to: str = "latest") -> str:
    """Run `flask pitr restore shop` that must fail; its `Error:` line."""
    return error_line(invoke(runner, "pitr", "restore", "shop", "--to", to, "--data-dir", str(data_dir),
                             "--port", str(port), ok=False))


def assert_left_nothing(app, before, data_dir: Path, port: int, given_empty: bool = False) -> None:
    assert (list(data_dir.iterdir()) == []) if given_empty else not data_dir.exists()
    assert not port_in_use(port), "no restored server listens"
    assert catalog_rows(app) == before


def with_damaged_file(backup: BaseBackup, member: str) -> bytes:
    """`backup`'s stored bytes made again (in an app context) with 8 bytes in the middle of `member`
    inverted, the tar's structure and the codec kept: a copy that decodes and extracts, its content
    not what pg_basebackup sent."""
    key = wiring.master_key() if backup.encrypted else None
    decoded = io.BytesIO()
    with wiring.pitr_stores()[0].open(backup.filename) as stored:
        shutil.copyfileobj(codecs.decode(stored, "custom", "zstd", key), decoded)
    with tarfile.open(fileobj=io.BytesIO(decoded.getvalue())) as tar:
        info = tar.getmember(member)
    content = bytearray(decoded.getvalue())
    start = info.offset_data + info.size // 2
    content[start:start + 8] = bytes(byte ^ 0xFF for byte in content[start:start + 8])
    encoded = io.BytesIO()
    shutil.copyfileobj(codecs.encode(io.BytesIO(bytes(content)), "zstd", key), encoded)
    return encoded.getvalue()


def put(store, filename: str, data: bytes) -> None:
    store.put(filename, io.BytesIO(data), {}, "application/octet-stream")


def test_a_moment_after_the_last_commit_is_replayed_to_the_end(pitr_app, pitr_cluster, receivers, data_root):
    runner = pitr_app.test_cli_runner()
    pitr_cluster.psql("ALTER SYSTEM SET autovacuum = off")  # an ANALYZE would commit after the moment
    pitr_cluster.psql("SELECT pg_reload_conf()")
    archiving(runner, receivers)
    moment = archived(runner, pitr_cluster, 1)  # nothing commits after it
    expected = restored_rows(pitr_cluster, pitr_cluster.port)

    with restored(runner, "--to", moment.isoformat(), "--data-dir", str(data_root / "to-the-end")) as out:
        assert restored_rows(pitr_cluster, out["port"]) == expected
        assert out["recovered_to"] == isoformat(moment)
        assert datetime.fromisoformat(out["last_transaction_at"]) <= moment
        log = (Path(out["data_dir"]) / "log" / "pitr-restore.log").read_text()
        assert TARGET_NOT_REACHED in log, "the first start stopped there; the second finished the replay"


def test_recovery_that_goes_past_the_moment_is_stopped_and_removed(pitr_app, pitr_cluster, receivers, data_root):
    """Not reachable from outside: PostgreSQL stops before the first commit after its target. A
    server that did not (its target lost as it starts) shows that the restore's own check of the
    log catches it."""
    runner = pitr_app.test_cli_runner()
    archiving(runner, receivers)
    moment = insert_batch(pitr_cluster, 1)
    archived(runner, pitr_cluster, 2)  # committed after the moment
    receivers.stop()
    before = catalog_rows(pitr_app)
    data_dir, port = data_root / "went-past", reserve_port()

    def lose_the_target(phase: str, total: int | None) -> None:
        if phase == "recovering":  # the configuration is written; the server starts next
            drop_recovery_target(data_dir)

    with pitr_app.app_context(), pytest.raises(PitrError) as refused:
        request = RestoreRequest("shop", moment, data_dir, port, pitr_app.config["PITR_OS_USER"])
        restore_to_moment(db.session, request, wiring.pitr_stores(), wiring.pg_tools(),
                          wiring.master_key(), phase=lose_the_target)

    went_past = re.fullmatch(rf"recovery went past {re.escape(isoformat(moment))} \(last transaction at (\S+)\): "
                             r"the restored server was stopped and its files deleted", str(refused.value))
    assert went_past, str(refused.value)
    assert datetime.fromisoformat(went_past[1]) > moment
    assert_left_nothing(pitr_app, before, data_dir, port)


def test_files_that_do_not_match_the_manifest_are_refused(pitr_app, pitr_cluster, receivers, data_root):
    runner = pitr_app.test_cli_runner()
    insert_batch(pitr_cluster, 1)  # rows in the table's file when the base backup copies it
    base = archiving(runner, receivers)
    archived(runner, pitr_cluster, 2)
    receivers.stop()
    table_file = pitr_cluster.psql("SELECT pg_relation_filepath('orders')", "shop")
    with pitr_app.app_context():  # damage done before the SHA-256 was taken: every copy, the hash recorded
        backup = db.session.get(BaseBackup, base["id"])
        damaged = with_damaged_file(backup, table_file)
        for store in wiring.pitr_stores():
            put(store, backup.filename, damaged)
        backup.sha256, backup.size_bytes = hashlib.sha256(damaged).hexdigest(), len(damaged)
        db.session.commit()
    before = catalog_rows(pitr_app)
    data_dir, port = data_root / "damaged", reserve_port()
    data_dir.mkdir()  # given empty: emptied again, kept

    assert refused_restore(runner, data_dir, port) == (
        "Error: pg_verifybackup found the restored files damaged: pg_verifybackup: error: checksum mismatch for "
        f'file "{table_file}"')
    assert_left_nothing(pitr_app, before, data_dir, port, given_empty=True)


def test_no_intact_copy_of_the_base_backup_names_each_copys_problem(pitr_app, pitr_cluster, receivers, data_root):
    runner = pitr_app.test_cli_runner()
    base = archiving(runner, receivers)
    archived(runner, pitr_cluster, 1)
    receivers.stop()
    with pitr_app.app_context():  # the local copy changed since it was hashed, the S3 copy gone
        local, s3 = wiring.pitr_stores()
        backup = db.session.get(BaseBackup, base["id"])
        put(local, backup.filename, with_damaged_file(backup, "global/pg_control"))
        s3.delete(backup.filename)
        s3_uri = s3.uri(backup.filename)
    before = catalog_rows(pitr_app)
    data_dir, port = data_root / "no-copy", reserve_port()

    assert refused_restore(runner, data_dir, port) == (
        f"Error: no intact copy of base backup {base['id']}: local: SHA-256 mismatch; s3: {s3_uri} does not exist")
    assert_left_nothing(pitr_app, before, data_dir, port)


def test_a_wal_file_missing_from_every_store_is_named(pitr_app, pitr_cluster, receivers, data_root):
    runner = pitr_app.test_cli_runner()
    base = archiving(runner, receivers)
    archived(runner, pitr_cluster, 1)
    receivers.stop()
    first = segment_of_lsn(base["timeline"], base["start_lsn"])
    with pitr_app.app_context():
        local, s3 = wiring.pitr_stores()
        row = db.session.scalar(db.select(WalFile).where(WalFile.name == first, WalFile.kind == "segment"))
        for store in (local, s3):
            store.delete(row.filename)
        missing = {"local": local.uri(row.filename), "s3": s3.uri(row.filename)}
    before = catalog_rows(pitr_app)
    data_dir, port = data_root / "no-wal", reserve_port()

    assert refused_restore(runner, data_dir, port) == (
        f"Error: WAL file {first} could not be read: recovery to the latest moment needs it, and the archive lists "
        f"it, but no intact copy of WAL file {first} of shop: local: {missing['local']} does not exist; "
        f"s3: {missing['s3']} does not exist")
    assert_left_nothing(pitr_app, before, data_dir, port)


def test_a_port_in_use_is_refused_before_anything_is_made(pitr_app, pitr_cluster, data_root):
    runner = pitr_app.test_cli_runner()
    invoke(runner, "pitr", "enable", "shop")
    before = catalog_rows(pitr_app)
    data_dir = data_root / "on-a-busy-port"

    assert refused_restore(runner, data_dir, pitr_cluster.port) == (
        f"Error: port {pitr_cluster.port} is in use on 127.0.0.1: give another --port")
    assert not data_dir.exists()
    assert catalog_rows(pitr_app) == before
    assert pitr_cluster.psql("SELECT count(*) FROM orders", "shop").isdigit(), "the server there untouched"


def test_an_incremental_on_15_is_refused_and_stores_nothing(pitr_app, pitr_cluster):
    runner = pitr_app.test_cli_runner()
    invoke(runner, "pitr", "enable", "shop")
    full = json.loads(invoke(runner, "pitr", "base-backup", "shop", "--json").stdout)
    before = catalog_rows(pitr_app)

    result = invoke(runner, "pitr", "base-backup", "shop", "--incremental", ok=False)

    version = pitr_cluster.psql("SHOW server_version")
    assert error_line(result) == (f"Error: an incremental base backup needs PostgreSQL 17+ with summarize_wal = on "
                                  f"(the server runs {version}, summarize_wal is off)")
    assert catalog_rows(pitr_app) == before
    assert [b["id"] for b in status(runner)["base_backups"]] == [full["id"]]
    with pitr_app.app_context():
        for store in wiring.pitr_stores():
            assert [name for name, _size in store.list() if ".base." in name] == [Path(full["copies"][0]["uri"]).name]


def test_a_server_not_ready_for_archiving_says_what_to_change(pitr_app, fresh_cluster):
    for setting, value in (("wal_level", "minimal"), ("max_wal_senders", "0"), ("max_replication_slots", "0")):
        fresh_cluster.psql(f"ALTER SYSTEM SET {setting} = {value}")
    fresh_cluster.stop()
    fresh_cluster.start()
    runner = pitr_app.test_cli_runner()
    add_target(runner, "fresh", fresh_cluster.url())

    result = invoke(runner, "pitr", "enable", "fresh", ok=False)

    assert error_line(result) == (
        "Error: fresh's server is not ready for WAL archiving: wal_level is minimal: set wal_level = replica in "
        "postgresql.conf and restart; max_wal_senders is 0: set it to 2 or more (one for the WAL stream, one for "
        "base backups) and restart; max_replication_slots is 0: set it to 1 or more and restart")
    assert status(runner, "fresh")["enabled"] is False


def test_replication_refused_by_pg_hba_says_what_to_add_and_leaves_no_slot(pitr_app, fresh_cluster):
    hba = fresh_cluster.data_dir / "pg_hba.conf"
    hba.write_text("".join(line for line in hba.read_text().splitlines(keepends=True) if "replication" not in line))
    fresh_cluster.psql("SELECT pg_reload_conf()")
    runner = pitr_app.test_cli_runner()
    add_target(runner, "fresh", fresh_cluster.url())

    result = invoke(runner, "pitr", "enable", "fresh", ok=False)

    assert error_line(result) == (
        "Error: the server refuses replication connections from this machine: pg_receivewal: error: connection to "
        f'server at "127.0.0.1", port {fresh_cluster.port} failed: FATAL:  no pg_hba.conf entry for replication '
        'connection from host "127.0.0.1", user "postgres", no encryption. Add a line like `host replication '
        "postgres <this machine's address>/32 scram-sha-256` to pg_hba.conf and reload the server")
    assert status(runner, "fresh")["enabled"] is False
    assert fresh_cluster.psql("SELECT count(*) FROM pg_replication_slots") == "0", "no slot keeps WAL for nothing"
