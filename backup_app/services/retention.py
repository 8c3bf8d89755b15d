"""Which backups a target's retention policy keeps, and why the others go.

A completed backup is kept while it is younger than `keep_days` × 24 h, while it is among
the newest `keep_last` completed backups, or while it is the newest completed backup of one
of the last `daily` days / `weekly` ISO weeks / `monthly` months that have one (GFS, in the
target's time zone). Failed backups are never kept by count or GFS: a run of failures can
never push a good backup out. They go once they are older than `keep_days`. Running
backups are never touched.
"""
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ..models import COMPLETED, FAILED, Backup


@dataclass(frozen=True)
class RetentionPolicy:
    keep_days: int = 30
    keep_last: int = 3
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    timezone: str = "UTC"

    @classmethod
    def of(cls, target) -> "RetentionPolicy":
        return cls(target.keep_days, target.keep_last, target.gfs_daily, target.gfs_weekly,
                   target.gfs_monthly, target.timezone)


def gfs_keepers(completed: Sequence[Backup], count: int, period: Callable[[datetime], tuple],
                tz: ZoneInfo) -> set[str]:
    """Ids of the newest backup in each of the `count` most recent periods that have one."""
    keepers: dict[tuple, str] = {}
    for backup in completed:  # newest first
        key = period(backup.created_at.astimezone(tz))
        if key not in keepers:
            if len(keepers) == count:
                break
            keepers[key] = backup.id
    return set(keepers.values())


def plan_prune(backups: Sequence[Backup], policy: RetentionPolicy, now: datetime) -> list[tuple[Backup, str]]:
    """The backups `policy` deletes from `backups` (one target's), each with the reason."""
    tz = ZoneInfo(policy.timezone)
    cutoff = now - timedelta(days=policy.keep_days)
    ordered = sorted(backups, key=lambda b: b.created_at, reverse=True)
    completed = [b for b in ordered if b.status == COMPLETED]
    kept = {b.id for b in completed[:policy.keep_last]}
    kept |= gfs_keepers(completed, policy.daily, lambda t: (t.year, t.month, t.day), tz)
    kept |= gfs_keepers(completed, policy.weekly, lambda t: tuple(t.isocalendar())[:2], tz)
    kept |= gfs_keepers(completed, policy.monthly, lambda t: (t.year, t.month), tz)
    plan = []
    for backup in ordered:
        if backup.created_at >= cutoff:
            continue
        age = f"older than {policy.keep_days} days"
        if backup.status == FAILED:
            plan.append((backup, f"failed backup {age}"))
        elif backup.status == COMPLETED and backup.id not in kept:
            plan.append((backup, f"{age} and not among the newest {policy.keep_last} completed"
                                 + (" nor a daily/weekly/monthly keeper" if policy.daily or policy.weekly
                                    or policy.monthly else "")))
    return plan
