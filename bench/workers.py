"""Case 9: throughput of `flask worker` processes sharing a Redis queue, one worker beside three.

A fleet of small databases (copies of one, made from a template) is registered as targets;
each run starts N `flask worker --workers 1` processes, waits until every one is consuming,
queues one backup job per target through the app's own `jobs.queue_create`, and times from
the first job queued until the last one has finished. The workers are stopped after each run.
"""
import signal
import subprocess
import time
from pathlib import Path

from sqlalchemy import select

from backup_app import wiring
from backup_app.extensions import db
from backup_app.jobs.submit import queue_create
from backup_app.models import COMPLETED, FAILED, Job
from devtools.localservers import wait_until

from . import dataset
from .appcli import FLASK, PROJECT, AppCli, app_in_process
from .lab import Lab
from .measure import BenchError, Sample

FLEET = 10
FLEET_TEMPLATE = "fleet_template"
WORKER_COUNTS = (1, 3)
JOBS_TIMEOUT = 300  # seconds for one run's backups
READY_LINE = "Huey consumer started"


def make_fleet(lab: Lab, scale: int, size: int = FLEET) -> list[str]:
    """`size` small databases (pgbench at `scale` plus the wide table), copied from one template."""
    dataset.build(lab.cluster, FLEET_TEMPLATE, scale)
    names = [f"fleet_{n:02d}" for n in range(1, size + 1)]
    for name in names:
        lab.cluster.psql(f'CREATE DATABASE "{name}" TEMPLATE "{FLEET_TEMPLATE}"')
    return names


class WorkerCases:
    """Backups of the fleet through Redis, by 1 and by 3 worker processes."""

    def __init__(self, lab: Lab, settings: dict[str, str], fleet: list[str]):
        self.lab, self.fleet = lab, fleet
        # No scheduled prune or sync may join the measured jobs.
        settings = {**settings, "PRUNE_SCHEDULE": "", "SYNC_SCHEDULE": ""}
        self.cli = AppCli(settings)
        self.cli.run("db", "upgrade")
        for name in fleet:
            self.cli.run("targets", "add", name, "--url", lab.cluster.url(name))
        self.app = app_in_process(settings)
        self.runs = 0

    def measure(self, workers: int) -> Sample:
        """One run: start `workers` processes, back up the whole fleet, stop them."""
        self.runs += 1
        processes = []
        try:
            for number in range(workers):
                log = self.lab.workdir / f"worker-{self.runs}-{number}.log"
                processes.append(self.start_worker(log))
                wait_until_consuming(processes[-1], log)
            seconds = self.back_up_fleet()
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(30)
        return Sample(seconds, steps={"backups_per_minute": len(self.fleet) * 60 / seconds})

    def start_worker(self, log: Path) -> subprocess.Popen:
        """`flask worker --workers 1`, its output in `log`."""
        with open(log, "wb") as out:
            return subprocess.Popen([FLASK, "worker", "--workers", "1"], env=self.cli.env, cwd=PROJECT,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def back_up_fleet(self) -> float:
        """Queue a backup of every target; the seconds until the last one finished."""
        with self.app.app_context():
            start = time.perf_counter()
            ids = [queue_create(db.session, wiring.dump_spec(name)).id for name in self.fleet]
            deadline = start + JOBS_TIMEOUT
            while True:
                rows = db.session.execute(select(Job.status, Job.error).where(Job.id.in_(ids))).all()
                db.session.rollback()  # the next look sees the workers' commits
                if all(status in (COMPLETED, FAILED) for status, _ in rows):
                    break
                if time.perf_counter() > deadline:
                    raise BenchError(f"the fleet's backups did not finish within {JOBS_TIMEOUT} s")
                time.sleep(0.05)
            seconds = time.perf_counter() - start
        errors = [error for status, error in rows if status != COMPLETED]
        if errors:
            raise BenchError(f"{len(errors)} of the fleet's backups failed: {errors[0]}")
        return seconds


def wait_until_consuming(process: subprocess.Popen, log: Path) -> None:
    """Return once the worker says it consumes the queue; BenchError if it exits or takes a minute."""
    try:
        wait_until(lambda: process.poll() is not None or READY_LINE in log.read_text(errors="replace"),
                   60, "flask worker")
    except RuntimeError as exc:
        raise BenchError(f"{exc}; see {log}") from None
    if process.poll() is not None:
        raise BenchError(f"flask worker exited; see {log}")
