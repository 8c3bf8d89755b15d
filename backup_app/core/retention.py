"""Which backups a target's retention policy keeps, and why the others go.

A completed backup is kept while it is younger than `keep_days` × 24 h, while it is among
the newest `keep_last` good backups, or while it is the newest good backup of one of the
last `daily` days / `weekly` ISO weeks / `monthly` months that have one (GFS, in the
target's time zone). A good backup is a completed one with a present copy (one that passed
its SHA-256 check). The newest good backup is always kept,
whatever the policy says. Failed backups, and completed ones with no good copy, are never
kept by count or GFS: a run of failures can never push a good backup out. They go once they
are older than `keep_days`. Running backups are never touched. A policy that keeps nothing
(no days, no count, no GFS) is refused.
"""
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from backup_app.errors import ConfigurationError
from backup_app.models import COMPLETED, FAILED, PRESENT, Backup


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

    def check(self) -> None:
        """ConfigurationError for negative numbers, or a policy that keeps nothing."""
        if min(self.keep_days, self.keep_last, self.daily, self.weekly, self.monthly) < 0:
            raise ConfigurationError("retention numbers cannot be negative")
        if not (self.keep_days or self.keep_last or self.daily or self.weekly or self.monthly):
            raise ConfigurationError("a retention that keeps nothing (keep-days 0, keep-last 0, no GFS) would "
                                     "delete every backup at the next prune: keep at least one by age or count")


def is_good(backup: Backup) -> bool:
    """Completed, with a present copy (one that passed its SHA-256 check). Not judged by its last
    restore-verify: that fails for a single bad copy, or for a scratch database the role may
    not create, while the backup itself restores."""
    return backup.status == COMPLETED and any(copy.status == PRESENT for copy in backup.copies)


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
    good = [b for b in ordered if is_good(b)]
    kept = {b.id for b in good[:max(policy.keep_last, 1)]}  # the newest good one, whatever the policy
    kept |= gfs_keepers(good, policy.daily, lambda t: (t.year, t.month, t.day), tz)
    kept |= gfs_keepers(good, policy.weekly, lambda t: tuple(t.isocalendar())[:2], tz)
    kept |= gfs_keepers(good, policy.monthly, lambda t: (t.year, t.month), tz)
    plan = []
    for backup in ordered:
        if backup.created_at >= cutoff:
            continue
        age = f"older than {policy.keep_days} days"
        if backup.status == FAILED:
            plan.append((backup, f"failed backup {age}"))
        elif backup.status == COMPLETED and backup.id not in kept:
            plan.append((backup, f"{age} and not among the newest {policy.keep_last} good backups"
                                 + (" nor a daily/weekly/monthly keeper" if policy.daily or policy.weekly
                                    or policy.monthly else "")))
    return plan
