"""A target on a port that accepts connections and never answers (issue 17, item 3): every client
program gives up after a connect timeout, a job whose programs move no bytes for
JOB_STALL_SECONDS fails with that reason and its program killed, and jobs hanging on one server
never hold every thread of a worker."""
import threading
from pathlib import Path

import pytest

from backup_app import wiring
from backup_app.adapters.pgtools import PgTools
from backup_app.adapters.processes import descendants
from backup_app.core.conninfo import ConnInfo
from backup_app.errors import DumpFailed
from backup_app.extensions import db
from backup_app.jobs.submit import queue_create
from backup_app.models import Job
from devtools.localservers import wait_until
from tests.helpers import Tarpit, add_target, error_line, invoke

pytestmark = pytest.mark.integration


@pytest.fixture
def tarpit():
    with Tarpit() as pit:
        yield pit


@pytest.fixture
def queuing_app(make_app, tmp_path, pg_cluster, source_db):
    """An app backing up `source_db`, queuing its jobs for the `start_worker` worker."""
    return make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), HUEY_IMMEDIATE=False,
                    HUEY_SQLITE_PATH=str(tmp_path / "huey.db"))


def queue_backup(app, name: str) -> str:
    with app.app_context():
        return queue_create(db.session, wiring.dump_spec(name)).id


def job_of(app, job_id: str) -> Job:
    with app.app_context():
        job = db.session.get(Job, job_id)
        db.session.expunge_all()
        return job


def programs_of(pid: int) -> list[str]:
    """The names of the processes below `pid`."""
    names = []
    for child in descendants([pid])[1:]:
        try:
            names.append(Path(f"/proc/{child}/comm").read_text().strip())
        except FileNotFoundError:
            pass
    return names


def test_every_client_gives_up_on_a_silent_server_after_the_connect_timeout(tarpit):
    conn = ConnInfo.from_url(tarpit.url("shop"))  # no connect_timeout of its own
    errors: dict[str, Exception] = {}

    def ask(client):
        try:
            client.server_version(conn)
        except DumpFailed as exc:
            errors[client.version] = exc

    threads = [threading.Thread(target=ask, args=(client,), daemon=True) for client in PgTools.discover().clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)  # a deadline: without a connect timeout psql would wait for ever

    assert not any(thread.is_alive() for thread in threads), "psql still waits for the silent server"
    assert len(errors) == len(threads) >= 2, "both clients (15 and 18) were asked"
    assert all("timeout expired" in str(exc) for exc in errors.values()), errors


def test_a_job_on_a_silent_server_fails_as_stalled_and_its_program_is_killed(queuing_app, start_worker, tarpit):
    add_target(queuing_app.test_cli_runner(), "silent", tarpit.url("shop"))
    worker = start_worker(2, JOB_STALL_SECONDS=2, JOB_HEARTBEAT_SECONDS=1)
    job_id = queue_backup(queuing_app, "silent")

    wait_until(lambda: not job_of(queuing_app, job_id).active, 60, "the end of the stalled job")
    job = job_of(queuing_app, job_id)
    assert job.status == "failed"
    assert job.error == (f"no progress for 2 s while dumping: the server at loopback:{tarpit.port} stopped "
                         "answering (psql moved no bytes and was stopped)")
    assert job.backup.status == "failed", "no backup stays running"
    wait_until(lambda: tarpit.connected() == 0, 10, "the silent server's clients to go")
    assert "psql" not in programs_of(worker.worker.pid)


def test_a_command_on_a_silent_server_fails_as_stalled(make_app, pg_cluster, source_db, tarpit):
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), JOB_STALL_SECONDS=2, JOB_HEARTBEAT_SECONDS=1)
    runner = app.test_cli_runner()
    add_target(runner, "silent", tarpit.url("shop"))

    result = invoke(runner, "backup", "create", "--database", "silent", ok=False)
    assert error_line(result) == (f"Error: no progress for 2 s while dumping: the server at loopback:{tarpit.port} "
                                  "stopped answering (psql moved no bytes and was stopped)")
    assert tarpit.connected() == 0


def test_jobs_hanging_on_one_server_leave_a_thread_for_another_target(queuing_app, start_worker, tarpit,
                                                                      pg_cluster, source_db):
    runner = queuing_app.test_cli_runner()
    for name in ("silent_a", "silent_b"):  # two targets on one silent port, waiting as long as it takes
        add_target(runner, name, tarpit.url(name, "connect_timeout=600"))
    start_worker(2, JOB_STALL_SECONDS=0, BACKUP_DATABASE_URL=pg_cluster.url(source_db))
    silent = [queue_backup(queuing_app, name) for name in ("silent_a", "silent_b")]
    good = queue_backup(queuing_app, source_db)

    try:
        wait_until(lambda: not job_of(queuing_app, good).active, 60, "the backup of the answering target")
        assert job_of(queuing_app, good).status == "completed", job_of(queuing_app, good).error
        assert sorted(job_of(queuing_app, job_id).status for job_id in silent) == ["queued", "running"], \
            "one thread for the silent server, the other one free"
    finally:
        tarpit.close()  # their psql sees the connection closed: the jobs end and the worker can stop
    wait_until(lambda: not any(job_of(queuing_app, job_id).active for job_id in silent), 60, "the silent jobs")
