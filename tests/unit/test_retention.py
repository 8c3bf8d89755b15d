"""The retention planner: days, keep-last, GFS, and failures that never push good backups out."""
from datetime import datetime, timedelta, timezone

import pytest

from backup_app.core.retention import RetentionPolicy, plan_prune
from backup_app.errors import ConfigurationError
from backup_app.models import Backup, BackupCopy

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def backup(days_ago: float, status: str = "completed", name: str | None = None, copy: str = "present",
           created_at: datetime | None = None) -> Backup:
    """A backup made `days_ago`; a completed one has a local copy in the state `copy`."""
    created = created_at or NOW - timedelta(days=days_ago)
    copies = [BackupCopy(location="local", uri="/x", status=copy)] if status == "completed" else []
    return Backup(id=name or f"b{days_ago}{status[0]}", filename=f"f{days_ago}{status}",
                  database="shop", status=status, created_at=created, copies=copies)


def pruned(backups, **policy) -> dict[str, str]:
    return {b.id: reason for b, reason in plan_prune(backups, RetentionPolicy(**policy), NOW)}


def test_keeps_young_backups_and_the_newest_k():
    backups = [backup(d) for d in (1, 10, 40, 50, 60, 70)]

    plan = pruned(backups, keep_days=30, keep_last=3)

    assert set(plan) == {"b50c", "b60c", "b70c"}, "40 is old but among the newest 3 good ones"
    assert "older than 30 days" in plan["b60c"] and "newest 3" in plan["b60c"]


def test_a_run_of_failures_never_deletes_good_backups():
    good = [backup(d) for d in (40, 41, 42)]
    failures = [backup(d, "failed") for d in range(0, 30)] + [backup(35, "failed")]

    plan = pruned(good + failures, keep_days=30, keep_last=3)

    assert set(plan) == {"b35f"}, "only the failed backup older than 30 days goes"
    assert plan["b35f"] == "failed backup older than 30 days"


def test_failed_backups_do_not_fill_keep_last():
    backups = [backup(d, "failed") for d in (31, 32, 33)] + [backup(d) for d in (34, 35, 36, 37)]

    plan = pruned(backups, keep_days=30, keep_last=3)

    assert set(plan) == {"b31f", "b32f", "b33f", "b37c"}


def test_keep_days_zero_keeps_only_by_count():
    backups = [backup(d) for d in (0.1, 0.2, 0.3)]

    assert set(pruned(backups, keep_days=0, keep_last=1)) == {"b0.2c", "b0.3c"}


def test_a_policy_that_keeps_nothing_is_refused():
    with pytest.raises(ConfigurationError, match="keeps nothing"):
        RetentionPolicy(keep_days=0, keep_last=0).check()
    with pytest.raises(ConfigurationError, match="negative"):
        RetentionPolicy(keep_days=-1).check()
    RetentionPolicy(keep_days=0, keep_last=0, weekly=1).check()  # GFS keeps something


def test_the_newest_good_backup_is_kept_whatever_the_policy_says():
    """A policy stored before such policies were refused still never empties a target."""
    backups = [backup(d) for d in (5, 6, 7)]

    assert set(pruned(backups, keep_days=0, keep_last=0)) == {"b6c", "b7c"}


def test_keep_last_counts_only_backups_with_a_good_copy():
    """Completed backups whose every copy is missing or failed are not good: they never fill the
    newest K, and push no good backup out."""
    lost = [backup(d, copy="missing") for d in (31, 32)]
    corrupt = backup(33, copy="failed")
    good = [backup(d) for d in (40, 41, 42)]

    plan = pruned(lost + [corrupt] + good, keep_days=30, keep_last=2)

    assert set(plan) == {"b31c", "b32c", "b33c", "b42c"}
    assert "not among the newest 2 good backups" in plan["b31c"]


def test_running_backups_are_never_touched():
    assert pruned([backup(100, "running")], keep_days=1, keep_last=0) == {}


def test_gfs_keeps_newest_of_each_recent_day_week_and_month():
    # Two backups a day for 120 days.
    backups = [backup(d + half, name=f"d{d}h{int(half * 2)}") for d in range(120) for half in (0, 0.5)]

    plan = pruned(backups, keep_days=0, keep_last=0, daily=7, weekly=4, monthly=3)
    kept = {b.id for b in backups} - set(plan)

    daily = {f"d{d}h0" for d in range(7)}
    assert daily <= kept, "the newer backup of each of the last 7 days"
    assert not any(f"d{d}h1" in kept for d in range(7))
    # 7 daily + up to 4 weekly + up to 3 monthly keepers, overlapping.
    assert 7 < len(kept) <= 14
    months = {(NOW - timedelta(days=int(k[1:].split("h")[0]))).month for k in kept}
    assert len(months) >= 3
    assert all("daily/weekly/monthly" in reason for reason in plan.values())


def test_gfs_periods_follow_the_time_zone():
    # 22:30 and 23:30 UTC on the 24th: one day in UTC, but 23:30 and 00:30 (the 25th) in Berlin.
    def at(hour, minute, name):
        return backup(0, name=name, created_at=datetime(2026, 11, 24, hour, minute, tzinfo=timezone.utc))
    backups = [at(23, 30, "later"), at(22, 30, "earlier")]

    utc = pruned(backups, keep_days=0, keep_last=0, daily=2)
    berlin = pruned(backups, keep_days=0, keep_last=0, daily=2, timezone="Europe/Berlin")

    assert set(utc) == {"earlier"}, "same UTC day: only its newest backup is the daily keeper"
    assert berlin == {}, "two Berlin days: each has its keeper"


def test_a_server_targets_policy_applies_to_each_database_and_to_the_globals_on_their_own():
    from backup_app.services.prune import target_plan

    def member(days_ago, source, fmt="custom"):
        made = backup(days_ago, name=f"{source or 'globals'}{days_ago}")
        made.source_database, made.format = source, fmt
        return made
    backups = [member(d, "shop") for d in (40, 50)] + [member(d, "crm") for d in (40, 50)] + \
        [member(45, None, "globals")]

    plan = {b.id: reason for b, reason in target_plan(backups, RetentionPolicy(keep_days=30, keep_last=1), NOW)}

    assert set(plan) == {"shop50", "crm50"}, "each database keeps its newest; the only globals backup stays"
