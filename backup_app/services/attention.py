"""What is wrong now, for the top of the dashboard: one item per problem, worst kinds first.

Each item names what it is about (`subject`: a target or a location) and what its fix is about
(`ref`: a job, a backup, a target or a location), so the page can link it to where it is fixed.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta

from backup_app.core.formatting import duration, exact_time, human_size, location_label
from backup_app.models import FAILED, INTERRUPTED, STREAMING, Target
from backup_app.services.overview import TargetOverview
from backup_app.services.storage_limits import OverLimit

FAILED_RUN, COPIES, STORE_DOWN, PITR, VERIFY, DRILL, STALE, STORAGE_FULL = (
    "failed-run", "copies", "store-down", "pitr", "verify", "drill", "stale", "storage-full")


@dataclass(frozen=True)
class Problem:
    kind: str
    subject: str
    message: str
    ref: str | None


def target_problems(overview: TargetOverview, target: Target, now: datetime,
                    receiver_lease: timedelta) -> list[Problem]:
    """A target's failed last run, copies not present, PITR receiver failing or silent, failed
    verify or drill, and staleness."""
    name, problems = overview.name, []
    run = overview.last_run
    if run is not None and run.status in (FAILED, INTERRUPTED):  # a lost copy is told as COPIES below
        when = exact_time(run.finished_at or run.started_at or run.created_at)
        problems.append(Problem(FAILED_RUN, name, f"The last backup of {name} ({run.status}, {when}): "
                                                  f"{overview.last_run_problem or 'no error recorded'}", run.id))
    if overview.copy_problems:
        counts = ", ".join(f"{count} {status}" for status, count in sorted(overview.copy_problems.items()))
        location, error, backup_id = overview.copy_problem
        problems.append(Problem(COPIES, name, f"Copies of {name}'s backups not present ({counts}); the newest: "
                                              f"{location_label(location)}: {error or 'no error recorded'}",
                                backup_id))
    if overview.pitr_state is not None:
        if overview.pitr_state != STREAMING:
            problems.append(Problem(PITR, name, f"WAL archiving of {name} is {overview.pitr_state}"
                                                + (f": {overview.pitr_error}" if overview.pitr_error else ""), name))
        elif overview.pitr_heartbeat_at is None or now - overview.pitr_heartbeat_at > 2 * receiver_lease:
            silent = (f"since {exact_time(overview.pitr_heartbeat_at)}" if overview.pitr_heartbeat_at
                      else "ever")
            problems.append(Problem(PITR, name, f"WAL archiving of {name} is lagging: its receiver has not "
                                                f"reported {silent} (is `flask worker` running?)", name))
    verify = overview.last_verify
    if verify is not None and verify.status == FAILED:
        gone = "" if verify.backup_id else " (its backup is deleted since)"
        problems.append(Problem(VERIFY, name, f"The last verify of {name} failed{gone}: {verify.error}",
                                verify.backup_id))
    if target.pitr_enabled and target.pitr_verify_error:
        problems.append(Problem(DRILL, name, f"The PITR drill of {name} failed: {target.pitr_verify_error}", name))
    if overview.is_stale(now):
        since = f"since {exact_time(overview.last_success)}" if overview.last_success else "ever"
        problems.append(Problem(STALE, name, f"No good backup of {name} {since} (its limit: "
                                             f"{duration(overview.stale_after.total_seconds())})", name))
    return problems


def store_problems(failures: dict[str, str]) -> list[Problem]:
    """A store that does not answer, by location with the reason."""
    return [Problem(STORE_DOWN, location, f"Storage {location_label(location)} is down: {reason}", location)
            for location, reason in failures.items()]


def size_problems(over: list[OverLimit]) -> list[Problem]:
    return [Problem(STORAGE_FULL, item.location, f"Storage {location_label(item.location)} holds "
                                                 f"{human_size(item.used)}, past its limit of {human_size(item.limit)}",
                    item.location) for item in over]


ORDER = (FAILED_RUN, STORE_DOWN, COPIES, PITR, VERIFY, DRILL, STALE, STORAGE_FULL)


def attention(overviews: list[TargetOverview], targets: list[Target], now: datetime, receiver_lease: timedelta,
              store_failures: dict[str, str], over: list[OverLimit]) -> list[Problem]:
    """Everything wrong now, failed runs first."""
    by_name = {target.name: target for target in targets}
    problems = [problem for overview in overviews
                for problem in target_problems(overview, by_name[overview.name], now, receiver_lease)]
    problems += store_problems(store_failures) + size_problems(over)
    return sorted(problems, key=lambda problem: ORDER.index(problem.kind))
