"""PITR across lease changes and restarts: a store slower than the lease, a worker paused while
another takes its receiver over (its spool drained, the hole shown and closed), and a worker
restarted while the window is watched (it never goes back)."""
import os
import re
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from backup_app import wiring
from backup_app.core.wal import SEGMENT_NAME
from backup_app.extensions import db
from backup_app.jobs.receivers import ReceiverSupervisor, spool_folder
from backup_app.models import WalFile
from backup_app.services.pitr import setup
from tests.helpers import SlowProxy, invoke
from tests.integration.pitr_support import (  # noqa: F401 - fixtures
    archiving,
    covered,
    insert_batch,
    pitr_app,
    pitr_cluster,
    restored,
    restored_rows,
    status,
    wait_for,
)
from tests.integration.test_notifications import Receiver as Hook


def switch(cluster) -> str:
    """Close the segment being written; its name."""
    return cluster.psql("SELECT pg_walfile_name(pg_switch_wal())")


def source_rows(cluster) -> dict[int, int]:
    """Rows per batch in the source now (the module's tests share its table)."""
    return restored_rows(cluster, cluster.port)


def worker_settings(pitr_app, s3_settings, **overrides) -> dict:
    """Another worker's settings on the test's catalog and bucket (the same folder and spool unless
    BACKUP_DIR says otherwise)."""
    config = pitr_app.config
    return {"BACKUP_DIR": config["BACKUP_DIR"], "APP_ENCRYPTION_KEY": config["APP_ENCRYPTION_KEY"],
            "WAL_PARTIAL_UPLOAD_SECONDS": 1, "PITR_LEASE_SECONDS": config["PITR_LEASE_SECONDS"],
            **s3_settings, **overrides}


def holder(runner) -> str | None:
    return status(runner)["holder"]


def archived_whole(app, segment: str) -> bool:
    with app.app_context():
        found = db.session.scalar(db.select(WalFile.id).where(WalFile.kind == "segment", WalFile.name == segment))
        db.session.remove()
        return found is not None


def hole_shown(runner) -> str | None:
    """The segment status names as missing from the archive, while it says `failing`."""
    shown = status(runner)
    found = re.search(r"WAL segment (\w+) is not archived while later WAL is", shown["error"] or "")
    return found[1] if found and shown["receiver"] == "failing" else None


def test_a_store_slower_than_the_lease_leaves_no_hole(pitr_app, make_app, pitr_cluster, s3_server, s3_settings,
                                                      tmp_path, data_root):
    runner = pitr_app.test_cli_runner()
    host, port = s3_server.endpoint.rsplit(":", 1)
    with SlowProxy((host, int(port))) as proxy:
        slow = make_app(**worker_settings(pitr_app, s3_settings, MINIO_ENDPOINT=proxy.endpoint))
        other = make_app(**worker_settings(pitr_app, s3_settings, BACKUP_DIR=str(tmp_path / "other-machine")))
        first, second = ReceiverSupervisor(slow), ReceiverSupervisor(other)
        try:
            archiving(runner, first)
            second.start()
            insert_batch(pitr_cluster, 1)
            proxy.delay = 6  # each answer of the store 6 s late: a segment takes longer than the 5 s lease
            segment = switch(pitr_cluster)
            local = Path(pitr_app.config["BACKUP_DIR"]) / "pitr"
            wait_for(lambda: list(local.glob(f"shop.*.{segment}.zst*")), what="its slow upload under way")
            insert_batch(pitr_cluster, 2)  # completes in the spool while the upload runs
            closed = switch(pitr_cluster)
            wait_for(lambda: archived_whole(slow, closed), timeout=180, what="the second segment archived")
            proxy.delay = 0
            insert_batch(pitr_cluster, 3)
            after = datetime.now(timezone.utc)
            wait_for(lambda: covered(runner, after), timeout=300, what="every batch archived")
            assert status(runner)["error"] is None
            with restored(runner, "--to", "latest", "--data-dir", str(data_root / "slow-store")) as out:
                assert restored_rows(pitr_cluster, out["port"]) == source_rows(pitr_cluster)
        finally:
            for supervisor in (first, second):
                if supervisor.is_alive():
                    supervisor.stop()


def test_a_paused_worker_stores_its_spool_after_the_takeover_and_the_hole_shows_meanwhile(
        pitr_app, pitr_cluster, start_worker, s3_server, s3_settings, tmp_path, data_root):
    runner = pitr_app.test_cli_runner()
    host, port = s3_server.endpoint.rsplit(":", 1)
    hook = Hook()
    with SlowProxy((host, int(port))) as proxy:
        invoke(runner, "pitr", "enable", "shop")
        first = start_worker(**worker_settings(pitr_app, s3_settings, MINIO_ENDPOINT=proxy.endpoint))
        wait_for(lambda: status(runner)["receiver"] == "streaming", what="the first worker streaming")
        first_holder = holder(runner)
        insert_batch(pitr_cluster, 1)
        invoke(runner, "pitr", "base-backup", "shop")

        os.kill(first.worker.pid, signal.SIGSTOP)  # its pg_receivewal streams on, nothing is stored
        try:
            insert_batch(pitr_cluster, 2)
            closed = [switch(pitr_cluster)]
            insert_batch(pitr_cluster, 3)
            closed.append(switch(pitr_cluster))
            insert_batch(pitr_cluster, 4)
            lineage = pitr_cluster.psql("SELECT system_identifier FROM pg_control_system()")
            spool = spool_folder(pitr_app.config["BACKUP_DIR"], "shop", lineage)
            wait_for(lambda: all((spool / name).exists() for name in closed), what="the segments spooled")
            spooled = sorted(path.name for path in spool.iterdir() if SEGMENT_NAME.fullmatch(path.name))
            proxy.hold()  # its store answers nothing until released
            start_worker(**worker_settings(pitr_app, s3_settings, BACKUP_DIR=str(tmp_path / "other-machine"),
                                           NOTIFY_URLS=hook.url))
            wait_for(lambda: holder(runner) not in (None, first_holder), what="the lease taken over")
        finally:
            os.kill(first.worker.pid, signal.SIGCONT)

        # The new holder resumes after the newest archived segment: while the server still has the
        # WAL after it, it stores the spooled segments itself (no hole); otherwise the hole is shown.
        missing = wait_for(lambda: hole_shown(runner) or all(archived_whole(pitr_app, name) for name in spooled),
                           what="the hole shown or the spooled segments stored by the new holder")
        if missing is not True:
            assert missing in spooled  # what the paused worker's spool holds
            wait_for(lambda: any(m["title"] == "WAL archive of shop has a hole" and missing in m["message"]
                                 for m in hook.messages), what="the hole notified")

        proxy.release()
        wait_for(lambda: status(runner)["error"] is None, timeout=180, what="the hole closed")
        wait_for(lambda: not any((spool / name).exists() for name in spooled), what="the spool drained")
        insert_batch(pitr_cluster, 5)
        after = datetime.now(timezone.utc)
        wait_for(lambda: covered(runner, after), what="the WAL after the takeover archived")
        with restored(runner, "--to", "latest", "--data-dir", str(data_root / "after-pause")) as out:
            assert restored_rows(pitr_cluster, out["port"]) == source_rows(pitr_cluster)
    hook.close()


def test_the_window_never_goes_back_while_a_worker_restarts(pitr_app, pitr_cluster, start_worker, s3_settings):
    runner = pitr_app.test_cli_runner()
    invoke(runner, "pitr", "enable", "shop")
    settings = worker_settings(pitr_app, s3_settings)
    del settings["WAL_PARTIAL_UPLOAD_SECONDS"]  # the default
    worker = start_worker(**settings)
    wait_for(lambda: status(runner)["receiver"] == "streaming", what="streaming")
    invoke(runner, "pitr", "base-backup", "shop")
    first = insert_batch(pitr_cluster, 1)
    wait_for(lambda: covered(runner, first), what="the first batch archived")

    seen: list[str | None] = []
    watching = threading.Event()
    watching.set()

    def watch() -> None:  # what `pitr status` says, every second
        with pitr_app.app_context():
            while watching.is_set():
                seen.append(setup.status(db.session, wiring.target("shop"), None)["recoverable_to"])
                db.session.remove()
                time.sleep(1)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        worker.worker.terminate()
        worker.worker.wait(timeout=60)
        insert_batch(pitr_cluster, 2)  # written while no receiver runs: a segment fills up meanwhile
        switch(pitr_cluster)
        insert_batch(pitr_cluster, 3)
        start_worker(**settings)
        after = insert_batch(pitr_cluster, 4)
        wait_for(lambda: covered(runner, after), what="the WAL after the restart archived")
    finally:
        watching.clear()
        watcher.join()
    moments = [datetime.fromisoformat(to.replace("Z", "+00:00")) if to else None for to in seen]
    assert None not in moments, seen
    assert moments == sorted(moments), seen

