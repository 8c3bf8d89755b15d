"""Apply each target's retention policy: delete what it does not keep, from every location (its
backups, and the base backups and WAL of its PITR archive)."""
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from backup_app.adapters.local import LocalStorage
from backup_app.adapters.store import Store, Stores
from backup_app.core.retention import RetentionPolicy, plan_prune
from backup_app.errors import BackupError
from backup_app.models import GLOBALS, Backup, Job, Target, utcnow
from backup_app.services.backups.delete import delete_backup
from backup_app.services.backups.queries import list_backups
from backup_app.services.pitr.retention import WAL, prune_pitr


@dataclass
class PruneReport:
    """What a prune deleted (or would, in a dry run), and what it could not delete."""

    deleted: list[dict] = field(default_factory=list)
    kept_in_use: list[dict] = field(default_factory=list)  # due, but a job is reading them
    pitr_deleted: list[dict] = field(default_factory=list)  # base backups and WAL segments
    pitr_notes: list[str] = field(default_factory=list)  # a PITR archive left alone, copies not deleted
    errors: list[str] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        """One line naming every backup that could not be deleted, or None."""
        return "could not delete " + "; ".join(self.errors) if self.errors else None

    def pitr_lines(self, verb: str) -> list[str]:
        """The PITR part in words: `verb` ("Deleted", "Would delete") each base backup, the WAL
        segments of each target as a count and a range, then the notes."""
        lines, wal = [], {}
        for item in self.pitr_deleted:
            if item["kind"] == WAL:
                wal.setdefault(item["database"], []).append(item)
            else:
                lines.append(f"{verb} base backup {item['id']} of {item['database']}  {item['filename']}  "
                             f"({item['reason']})")
        for target, items in wal.items():
            names = f"{items[0]['id']} to {items[-1]['id']}" if len(items) > 1 else items[0]["id"]
            lines.append(f"{verb} {len(items)} WAL segment(s) of {target}, {names} ({items[0]['reason']})")
        return lines + self.pitr_notes


def prune(session: Session, targets: list[Target], local: LocalStorage, stores: Stores, *,
          dry_run: bool = False, now: datetime | None = None, in_use: Set[str] = frozenset(),
          pitr_stores: Sequence[Store] | None = None, pitr_readers: Mapping[str, Job] | None = None) -> PruneReport:
    """Delete the backups each target's policy lets go; a failed deletion is reported, not fatal.

    Backups in `in_use` (ids that running jobs read) are kept until a later prune. With
    `pitr_stores`, each target's PITR archive is pruned too, except a target in `pitr_readers`
    (a running point-in-time restore or drill may read any of its base backups and WAL)."""
    now = now or utcnow()
    report = PruneReport()
    for target in targets:
        for backup, reason in target_plan(list_backups(session, database=target.name), RetentionPolicy.of(target), now):
            item = {"id": backup.id, "filename": backup.filename, "database": backup.database,
                    "reason": reason}
            if backup.id in in_use:
                report.kept_in_use.append(item)
                continue
            if not dry_run:
                try:
                    delete_backup(session, backup.id, local, stores)
                except BackupError as exc:
                    report.errors.append(f"{backup.id}: {exc}")
                    continue
            report.deleted.append(item)
        if pitr_stores is not None:
            prune_archive(session, target, pitr_stores, (pitr_readers or {}).get(target.name), report, now, dry_run)
    return report


def target_plan(backups: list[Backup], policy: RetentionPolicy, now: datetime) -> list[tuple[Backup, str]]:
    """What `policy` deletes of one target's backups. Its policy applies to each database of a server
    target and to its globals backups on their own, so every database (and the roles) keeps its newest
    good backups whatever the others do."""
    groups: dict[tuple, list[Backup]] = {}
    for backup in backups:
        groups.setdefault((backup.format == GLOBALS, backup.source_database), []).append(backup)
    return [item for group in groups.values() for item in plan_prune(group, policy, now)]


def prune_archive(session: Session, target: Target, stores: Sequence[Store], reader: Job | None,
                  report: PruneReport, now: datetime, dry_run: bool) -> None:
    """Prune `target`'s PITR archive into `report`, unless `reader` (a running job) may be reading it."""
    if reader is not None:
        report.pitr_notes.append(f"PITR archive of {target.name} not pruned: job {reader.id} ({reader.kind}) is "
                                 "running and may read any of its base backups and WAL; a later prune does it")
        return
    pruned = prune_pitr(session, target, stores, now, dry_run)
    report.pitr_deleted += pruned.deleted
    report.pitr_notes += [f"PITR archive of {target.name}: {problem}" for problem in pruned.problems]
