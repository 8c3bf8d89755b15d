"""A restore never claims a moment it did not reach: a WAL segment lost from every store, or
replaced there by another valid segment that the catalog agrees with, on PostgreSQL 15 and 18."""
import hashlib
import io
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from backup_app import wiring
from backup_app.extensions import db
from backup_app.jobs.receivers import ReceiverSupervisor
from backup_app.models import SEGMENT, WalFile
from backup_app.services.pitr import archive
from tests.helpers import error_line, invoke
from tests.integration.pitr_support import (  # noqa: F401 - fixtures
    app_archiving,
    archiving,
    insert_batch,
    pitr18_cluster,
    pitr_cluster,
    restored,
    restored_rows,
    status,
    wait_for,
)
from tests.integration.test_notifications import Receiver as Notifications


@pytest.fixture(params=["15", "18"])
def server(request):
    return request.getfixturevalue("pitr_cluster" if request.param == "15" else "pitr18_cluster")


@pytest.fixture
def notifications():
    receiver = Notifications()
    yield receiver
    receiver.close()


@pytest.fixture
def app(make_app, server, s3_settings, notifications):
    return app_archiving(make_app, server, s3_settings, NOTIFY_URLS=notifications.url)


@pytest.fixture
def supervisor(app):
    supervisor = ReceiverSupervisor(app)
    yield supervisor
    if supervisor.is_alive():
        supervisor.stop()


def three_segments(app, server, supervisor, first_batch: int) -> tuple[list[datetime], list[str]]:
    """A base backup, then three batches each alone in a segment of its own, all archived and the
    receivers stopped: the moment after each batch (sampled by the receiver before its segment was
    closed) and the names of the three segments."""
    archiving(app.test_cli_runner(), supervisor)
    moments, names = [], []
    for batch in range(first_batch, first_batch + 3):
        insert_batch(server, batch)
        moments.append(datetime.now(timezone.utc))
        names.append(server.psql("SELECT pg_walfile_name(pg_current_wal_insert_lsn())"))
        wait_for(lambda: supervisor.receivers["shop"].samples[-1][0] > moments[-1],
                 what="a sample of the server's WAL position after the batch")
        server.psql("SELECT pg_switch_wal()")
    assert len(set(names)) == 3
    wait_for(lambda: names[-1] in archived_segments(app), what="the last batch's segment archived")
    supervisor.stop()
    return moments, names


def archived_segments(app) -> list[str]:
    with app.app_context():
        return db.session.scalars(select(WalFile.name).where(WalFile.kind == SEGMENT)).all()


def delete_everywhere(app, name: str) -> None:
    """Delete segment `name` from every store; its catalog row stays as it was."""
    with app.app_context():
        row = db.session.scalar(select(WalFile).where(WalFile.name == name, WalFile.kind == SEGMENT))
        for store in wiring.pitr_stores():
            store.delete(row.filename)


def replace_everywhere(app, name: str, by: str) -> None:
    """Put segment `by`'s stored bytes in place of segment `name`'s in every store, and its SHA-256
    into `name`'s catalog row: a valid segment, but not the one recovery needs there."""
    with app.app_context():
        rows = {row.name: row for row in db.session.scalars(select(WalFile).where(WalFile.kind == SEGMENT))}
        stores = wiring.pitr_stores()
        data = archive.fetch_stored(rows[by], stores)
        for store in stores:
            store.delete(rows[name].filename)
            store.put(rows[name].filename, io.BytesIO(data), {}, archive.CONTENT_TYPE)
        rows[name].sha256, rows[name].size_bytes = hashlib.sha256(data).hexdigest(), len(data)
        db.session.commit()


def restores_before_the_hole(runner, server, moment: datetime, batches: list[int], data_dir) -> None:
    with restored(runner, "--to", moment.isoformat(), "--data-dir", str(data_dir), bin_dir=server.bin_dir) as out:
        assert out["recovered_to"] == moment.isoformat().replace("+00:00", "Z")
        rows = restored_rows(server, out["port"])
        assert rows.get(batches[0]) == 100 and batches[1] not in rows and batches[2] not in rows


def drill_fails_naming(runner, hole: str, notifications) -> str:
    """The drill's `Error:` line, which names `hole`, also kept on the target and notified."""
    line = error_line(invoke(runner, "pitr", "verify", "shop", ok=False))
    assert line.startswith(f"Error: WAL file {hole} could not be read: ")
    assert status(runner)["verify_error"] == line.removeprefix("Error: ")
    assert "PITR drill of shop FAILED" in notifications.titles()
    assert any(hole in message["message"] for message in notifications.messages)
    return line


def test_a_segment_replaced_by_another_ends_restores_before_it(app, server, supervisor, notifications, data_root):
    runner = app.test_cli_runner()
    (before, inside, _after), (_first, hole, next_one) = three_segments(app, server, supervisor, 41)
    replace_everywhere(app, hole, by=next_one)

    restores_before_the_hole(runner, server, before, [41, 42, 43], data_root / "before")

    failed = invoke(runner, "pitr", "restore", "shop", "--to", inside.isoformat(),
                    "--data-dir", str(data_root / "inside"), ok=False)
    line = error_line(failed)
    assert line.startswith(f"Error: WAL file {hole} could not be read: recovery to ")
    assert "but replay ended at" in line and "the archive lists it and its copy was fetched intact" in line
    assert "(the server: unexpected pageaddr" in line
    assert not (data_root / "inside").exists()

    line = drill_fails_naming(runner, hole, notifications)
    assert "recovery to the latest moment needs the WAL up to" in line


def test_a_segment_lost_from_every_store_ends_restores_before_it(app, server, supervisor, notifications, data_root):
    runner = app.test_cli_runner()
    (before, inside, _after), (_first, hole, _next) = three_segments(app, server, supervisor, 51)
    delete_everywhere(app, hole)

    # The lost segment is the one fetched after the moment's own (the commit that ends recovery
    # could be there): recovery goes without it, as it reached the moment's position.
    restores_before_the_hole(runner, server, before, [51, 52, 53], data_root / "before")

    failed = invoke(runner, "pitr", "restore", "shop", "--to", inside.isoformat(),
                    "--data-dir", str(data_root / "inside"), ok=False)
    line = error_line(failed)
    assert line.startswith(f"Error: WAL file {hole} could not be read: recovery to ")
    assert "needs it, and the archive lists it, but no intact copy of WAL file" in line
    assert not (data_root / "inside").exists()

    drill_fails_naming(runner, hole, notifications)
