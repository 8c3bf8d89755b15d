"""Apply each target's retention policy: delete what it does not keep, from every location."""
from collections.abc import Set
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from backup_app.adapters.local import LocalStorage
from backup_app.adapters.store import Stores
from backup_app.core.retention import RetentionPolicy, plan_prune
from backup_app.errors import BackupError
from backup_app.models import Target, utcnow
from backup_app.services.backups.delete import delete_backup
from backup_app.services.backups.queries import list_backups


@dataclass
class PruneReport:
    """What a prune deleted (or would, in a dry run), and what it could not delete."""

    deleted: list[dict] = field(default_factory=list)
    kept_in_use: list[dict] = field(default_factory=list)  # due, but a job is reading them
    errors: list[str] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        """One line naming every backup that could not be deleted, or None."""
        return "could not delete " + "; ".join(self.errors) if self.errors else None


def prune(session: Session, targets: list[Target], local: LocalStorage, stores: Stores, *,
          dry_run: bool = False, now: datetime | None = None, in_use: Set[str] = frozenset()) -> PruneReport:
    """Delete the backups each target's policy lets go; a failed deletion is reported, not fatal.

    Backups in `in_use` (ids that running jobs read) are kept until a later prune."""
    now = now or utcnow()
    report = PruneReport()
    for target in targets:
        plan = plan_prune(list_backups(session, database=target.name), RetentionPolicy.of(target), now)
        for backup, reason in plan:
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
    return report
