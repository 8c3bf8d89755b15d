"""The catalog's metrics as Prometheus families (`backup_…`), read at each scrape; prometheus_client
is imported with this module, which only /metrics loads."""
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backup_app import wiring
from backup_app.core.conninfo import ConnInfo
from backup_app.models import (
    ACTIVE_JOB_STATUSES,
    COMPLETED,
    GLOBALS,
    RUNNING,
    STREAMING,
    Backup,
    BackupCopy,
    Job,
    Target,
    Verification,
    WalFile,
    WalReceiver,
    utcnow,
)
from backup_app.services.pitr.window import window
from backup_app.services.verify import PASSED


def timestamp(value: datetime | None) -> float:
    return value.timestamp() if value else 0.0


def newest_per_database(query, order_by, database=Backup.database):
    """Rows of `query` (which selects `database` first) keeping only each database's newest."""
    rank = func.row_number().over(partition_by=database, order_by=order_by).label("rank")
    ranked = query.add_columns(rank).subquery()
    return select(*[column for column in ranked.c if column.name != "rank"]).where(ranked.c.rank == 1)


class CatalogCollector:
    """Backup, copy, job and verify metrics, read from the catalog when scraped."""

    def __init__(self, session: Session, target_names: list[str]):
        self.session = session
        self.target_names = target_names

    def collect(self):
        yield from self.last_backups()
        yield self.counts("backup_backups", "Backups in the catalog by database and status.",
                          ["database", "status"], select(Backup.database, Backup.status, func.count())
                          .group_by(Backup.database, Backup.status))
        yield self.counts("backup_copies", "Backup copies by location and status.",
                          ["location", "status"], select(BackupCopy.location, BackupCopy.status, func.count())
                          .group_by(BackupCopy.location, BackupCopy.status))
        yield self.jobs()
        yield from self.last_verifications()
        yield from self.pitr()

    def counts(self, name: str, documentation: str, labels: list[str], query) -> GaugeMetricFamily:
        metric = GaugeMetricFamily(name, documentation, labels=labels)
        for *values, count in self.session.execute(query):
            metric.add_metric(values, count)
        return metric

    def last_backups(self):
        success = GaugeMetricFamily(
            "backup_last_success_timestamp_seconds",
            "When the newest completed backup of each database finished (0: never).", labels=["database"])
        duration = GaugeMetricFamily("backup_last_duration_seconds",
                                     "How long the newest completed backup of each database took.",
                                     labels=["database"])
        size = GaugeMetricFamily("backup_last_size_bytes", "Size of the newest completed backup of each database.",
                                 labels=["database"])
        query = newest_per_database(
            select(Backup.database, Backup.created_at, Backup.completed_at, Backup.size_bytes)
            .where(Backup.status == COMPLETED, Backup.format != GLOBALS), (Backup.created_at.desc(), Backup.id.desc()))
        seen = set()
        for database, created_at, completed_at, size_bytes in self.session.execute(query):
            seen.add(database)
            success.add_metric([database], timestamp(completed_at or created_at))
            if completed_at is not None:  # rows rebuilt by rescan have no finish time
                duration.add_metric([database], (completed_at - created_at).total_seconds())
            if size_bytes is not None:
                size.add_metric([database], size_bytes)
        for name in sorted(set(self.target_names) - seen):
            success.add_metric([name], 0.0)
        return success, duration, size

    def jobs(self) -> GaugeMetricFamily:
        metric = GaugeMetricFamily("backup_jobs", "Jobs queued or running.", labels=["status"])
        counts = dict(self.session.execute(
            select(Job.status, func.count()).where(Job.status.in_(ACTIVE_JOB_STATUSES)).group_by(Job.status)).all())
        for status in ACTIVE_JOB_STATUSES:
            metric.add_metric([status], counts.get(status, 0))
        return metric

    def last_verifications(self):
        passed = GaugeMetricFamily("backup_last_verify_success",
                                   "1 if the newest restore-verify of each database passed, 0 if it failed.",
                                   labels=["database"])
        when = GaugeMetricFamily("backup_last_verify_timestamp_seconds",
                                 "When the newest restore-verify of each database finished.", labels=["database"])
        query = newest_per_database(
            select(Verification.database, Verification.status, Verification.finished_at)
            .where(Verification.status != RUNNING),
            (Verification.started_at.desc(), Verification.id.desc()), Verification.database)
        for database, status, finished_at in self.session.execute(query):
            passed.add_metric([database], 1 if status == PASSED else 0)
            when.add_metric([database], timestamp(finished_at))
        return passed, when


    def pitr(self):
        """Per PITR target: receiver up, seconds since the last stored WAL, the recoverable window."""
        up = GaugeMetricFamily("backup_pitr_receiver_up", "1 while the target's WAL receiver streams.",
                               labels=["database"])
        age = GaugeMetricFamily("backup_pitr_seconds_since_last_wal",
                                "Seconds since WAL of the target was last stored.", labels=["database"])
        start = GaugeMetricFamily("backup_pitr_recoverable_from_timestamp_seconds",
                                  "Start of the recoverable window (0: none).", labels=["database"])
        end = GaugeMetricFamily("backup_pitr_recoverable_to_timestamp_seconds",
                                "End of the recoverable window (0: none).", labels=["database"])
        now = utcnow()
        for target in self.session.scalars(select(Target).where(Target.pitr_enabled.is_(True))):
            receiver = self.session.get(WalReceiver, target.name)
            up.add_metric([target.name], 1 if receiver and receiver.state == STREAMING else 0)
            stored = self.session.scalar(select(func.max(WalFile.stored_at)).where(WalFile.target == target.name))
            if stored is not None:
                age.add_metric([target.name], (now - stored).total_seconds())
            first, last = window(self.session, target.name, target.pitr_system_identifier)
            start.add_metric([target.name], timestamp(first))
            end.add_metric([target.name], timestamp(last))
        return up, age, start, end


def target_names(session: Session) -> list[str]:
    """The configured targets' names, BACKUP_DATABASE_URL's included."""
    names = set(session.scalars(select(Target.name)))
    if wiring.env_url():
        names.add(ConnInfo.from_url(wiring.env_url()).dbname)
    return sorted(names)
