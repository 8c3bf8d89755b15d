"""Retention of the PITR archive: base backups follow the target's keep-days / keep-last (the
newest always stays); an incremental goes with its chain, and a full backup stays while a kept
incremental builds on it; WAL older than the start of the oldest kept base backup is deleted from
every store, never WAL a kept base backup needs."""
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app.adapters.store import Store
from backup_app.core.wal import segment_number, segment_of_lsn
from backup_app.errors import BackupError
from backup_app.models import COMPLETED, FAILED, SEGMENT, BaseBackup, Target, WalFile, utcnow
from backup_app.services.pitr.window import usable


def kept_base_backups(bases: list[BaseBackup], target: Target, now: datetime,
                      recoverable: set[str] = frozenset()) -> set[str]:
    """The ids of the completed base backups to keep, with every parent a kept one needs; the
    newest of `recoverable` (those whose WAL reaches past their end) is always kept."""
    completed = sorted((b for b in bases if b.status == COMPLETED), key=lambda b: b.started_at, reverse=True)
    keep = {b.id for i, b in enumerate(completed)
            if i < max(target.keep_last, 1) or now - b.started_at < timedelta(days=target.keep_days)}
    newest_usable = next((b for b in completed if b.id in recoverable), None)
    if newest_usable is not None:
        keep.add(newest_usable.id)
    by_id = {b.id: b for b in bases}
    for backup_id in list(keep):
        parent = by_id[backup_id].parent_id
        while parent and parent in by_id:
            keep.add(parent)
            parent = by_id[parent].parent_id
    return keep


def delete_everywhere(stores: Sequence[Store], filename: str) -> list[str]:
    """Delete a file from every store; the errors (a store that is down keeps its copy for the next prune)."""
    errors = []
    for store in stores:
        try:
            store.delete(filename)
        except (BackupError, OSError) as exc:
            errors.append(f"{store.location}: {exc}")
    return errors


def prune_pitr(session: Session, target: Target, stores: Sequence[Store], now: datetime | None = None,
               dry_run: bool = False) -> list[str]:
    """Apply the retention to `target`'s base backups and WAL; one line per thing deleted (or failed)."""
    now = now or utcnow()
    bases = list(session.scalars(select(BaseBackup).where(BaseBackup.target == target.name)))
    keep = kept_base_backups(bases, target, now,
                             {r.base.id for r in usable(session, target.name, target.pitr_system_identifier)})
    if not keep:
        return []
    lines = []
    for base in bases:
        if base.id in keep or base.status not in (COMPLETED, FAILED):
            continue
        lines.append(f"base backup {base.id} ({base.kind}, {base.started_at:%Y-%m-%d %H:%M}) deleted")
        if not dry_run:
            errors = delete_everywhere(stores, base.filename)
            if errors:
                lines[-1] = f"base backup {base.id}: not every copy deleted ({'; '.join(errors)})"
                continue
            session.delete(base)
    for lineage, first_needed in first_needed_segments([b for b in bases if b.id in keep]).items():
        deleted = 0
        for row in unneeded_wal(session, target.name, lineage, first_needed):
            if not dry_run:
                if delete_everywhere(stores, row.filename):
                    continue
                session.delete(row)
            deleted += 1
        if deleted:
            lines.append(f"{deleted} WAL file(s) before {first_needed} deleted")
    kept_lineages = {b.system_identifier for b in bases if b.id in keep} | {target.pitr_system_identifier}
    for lineage in lineages_without(session, target.name, kept_lineages):
        deleted = 0
        for row in session.scalars(select(WalFile).where(WalFile.target == target.name,
                                                         WalFile.system_identifier == lineage)):
            if not dry_run:
                if delete_everywhere(stores, row.filename):
                    continue
                session.delete(row)
            deleted += 1
        if deleted:
            lines.append(f"{deleted} WAL file(s) of the cluster {lineage}, which no kept base backup needs, deleted")
    session.commit()
    return lines


def first_needed_segments(kept: list[BaseBackup]) -> dict[str | None, str]:
    """For each lineage, the first WAL segment its oldest kept base backup needs."""
    oldest: dict[str | None, BaseBackup] = {}
    for base in sorted(kept, key=lambda b: b.started_at, reverse=True):
        oldest[base.system_identifier] = base
    return {lineage: segment_of_lsn(base.timeline, base.start_lsn) for lineage, base in oldest.items()}


def unneeded_wal(session: Session, target: str, lineage: str | None, first_needed: str) -> list[WalFile]:
    """The lineage's segments before `first_needed`, on any timeline (history files are kept)."""
    rows = session.scalars(select(WalFile).where(WalFile.target == target, WalFile.system_identifier == lineage,
                                                 WalFile.kind == SEGMENT))
    return [row for row in rows if segment_number(row.name) < segment_number(first_needed)]


def lineages_without(session: Session, target: str, kept: set[str | None]) -> list[str | None]:
    """The lineages whose WAL no kept base backup needs (their base backups all deleted; the
    lineage archived now is in `kept`, its first base backup may not be taken yet)."""
    found = session.scalars(select(WalFile.system_identifier).where(WalFile.target == target).distinct())
    return [lineage for lineage in found if lineage not in kept]
