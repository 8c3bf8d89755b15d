"""Retention of the PITR archive: base backups follow the target's keep-days / keep-last (the
newest always stays); an incremental goes with its chain, and a full backup stays while a kept
incremental builds on it; WAL older than the start of the oldest kept base backup is deleted from
every store, never WAL a kept base backup needs."""
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app.adapters.store import Store
from backup_app.core.wal import segment_number, segment_of_lsn
from backup_app.errors import BackupError
from backup_app.models import COMPLETED, FAILED, PARTIAL_SEGMENT, SEGMENT, BaseBackup, Target, WalFile, utcnow
from backup_app.services.pitr.window import usable

BASE_BACKUP, WAL = "base-backup", "wal"  # the kinds of what a PITR prune deletes


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


@dataclass
class PitrPruned:
    """What a PITR prune of one target deleted (or would): one item per base backup and WAL segment,
    shaped like a prune's backups ({id, filename, database, reason}, with `kind` "base-backup" or
    "wal"), and lines about what could not be deleted (kept for the next prune)."""

    deleted: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def pruned_item(item_id: str, filename: str, target: Target, reason: str, kind: str) -> dict:
    return {"id": item_id, "filename": filename, "database": target.name, "reason": reason, "kind": kind}


def prune_pitr(session: Session, target: Target, stores: Sequence[Store], now: datetime | None = None,
               dry_run: bool = False) -> PitrPruned:
    """Apply the retention to `target`'s base backups and WAL: delete (unless `dry_run`) what it does not keep."""
    now = now or utcnow()
    pruned = PitrPruned()
    bases = list(session.scalars(select(BaseBackup).where(BaseBackup.target == target.name)))
    keep = kept_base_backups(bases, target, now,
                             {r.base.id for r in usable(session, target.name, target.pitr_system_identifier)})
    if not keep:
        return pruned
    for base in bases:
        if base.id in keep or base.status not in (COMPLETED, FAILED):
            continue
        if not dry_run:
            errors = delete_everywhere(stores, base.filename)
            if errors:
                pruned.problems.append(f"base backup {base.id}: not every copy deleted ({'; '.join(errors)})")
                continue
            session.delete(base)
        taken = f"{base.kind} base backup of {base.started_at:%Y-%m-%d %H:%M} UTC"
        reason = (f"failed {taken}" if base.status == FAILED else
                  f"{taken}, older than {target.keep_days} days and not among the newest {max(target.keep_last, 1)}")
        pruned.deleted.append(pruned_item(base.id, base.filename, target, reason, BASE_BACKUP))
    kept = [b for b in bases if b.id in keep]
    unneeded = [(row, f"WAL before {first}, where the oldest base backup kept ({oldest.id}) starts")
                for lineage, (oldest, first) in first_needed_segments(kept).items()
                for row in unneeded_wal(session, target.name, lineage, first)]
    kept_lineages = {b.system_identifier for b in kept} | {target.pitr_system_identifier}
    unneeded += [(row, f"WAL of the cluster {lineage}, which no kept base backup needs")
                 for lineage in lineages_without(session, target.name, kept_lineages)
                 for row in session.scalars(select(WalFile).where(WalFile.target == target.name,
                                                                  WalFile.system_identifier == lineage)
                                            .order_by(WalFile.name))]
    not_deleted = 0
    for row, reason in unneeded:
        if not dry_run:
            if delete_everywhere(stores, row.filename):
                not_deleted += 1
                continue
            session.delete(row)
        pruned.deleted.append(pruned_item(row.name, row.filename, target, reason, WAL))
    if not_deleted:
        pruned.problems.append(f"{not_deleted} WAL file(s) not deleted from every store")
    session.commit()
    return pruned


def first_needed_segments(kept: list[BaseBackup]) -> dict[str | None, tuple[BaseBackup, str]]:
    """For each lineage, its oldest kept base backup and the first WAL segment that one needs."""
    oldest: dict[str | None, BaseBackup] = {}
    for base in sorted(kept, key=lambda b: b.started_at, reverse=True):
        oldest[base.system_identifier] = base
    return {lineage: (base, segment_of_lsn(base.timeline, base.start_lsn)) for lineage, base in oldest.items()}


def unneeded_wal(session: Session, target: str, lineage: str | None, first_needed: str) -> list[WalFile]:
    """The lineage's segments (and partial copies) before `first_needed`, on any timeline, in order
    (history files are kept)."""
    rows = session.scalars(select(WalFile).where(WalFile.target == target, WalFile.system_identifier == lineage,
                                                 WalFile.kind.in_((SEGMENT, PARTIAL_SEGMENT))))
    return sorted((row for row in rows if segment_number(row.name) < segment_number(first_needed)),
                  key=lambda row: row.name)


def lineages_without(session: Session, target: str, kept: set[str | None]) -> list[str | None]:
    """The lineages whose WAL no kept base backup needs (their base backups all deleted; the
    lineage archived now is in `kept`, its first base backup may not be taken yet)."""
    found = session.scalars(select(WalFile.system_identifier).where(WalFile.target == target).distinct())
    return [lineage for lineage in found if lineage not in kept]
