from collections import defaultdict
from datetime import timedelta

from flask import current_app, render_template, url_for

from backup_app import wiring
from backup_app.extensions import db
from backup_app.models import utcnow
from backup_app.services import attention as problems_of
from backup_app.services.attention import Problem
from backup_app.services.overview import backup_history, target_overviews
from backup_app.services.storage_limits import over_limits
from backup_app.services.usage import storage_usage
from backup_app.web import readiness
from backup_app.web.charts import line_chart
from backup_app.web.dashboard import bp

# Where each kind of problem is fixed, from the id it is about.
FIXES = {
    problems_of.FAILED_RUN: lambda ref: url_for("jobs.index", highlight=ref),
    problems_of.COPIES: lambda ref: url_for("backups.detail", backup_id=ref),
    problems_of.STORE_DOWN: lambda ref: url_for("backups.storage"),
    problems_of.PITR: lambda ref: url_for("targets.pitr_page", name=ref),
    # A verify outlives its backup: once that is deleted, the list of backups is where to go.
    problems_of.VERIFY: lambda ref: url_for("backups.detail", backup_id=ref) if ref else url_for("backups.index"),
    problems_of.DRILL: lambda ref: url_for("targets.pitr_page", name=ref),
    problems_of.STALE: lambda ref: url_for("targets.index", _anchor=f"target-{ref}"),
    problems_of.STORAGE_FULL: lambda ref: url_for("backups.storage"),
}


def fix_url(problem: Problem) -> str:
    return FIXES[problem.kind](problem.ref)


def store_failures() -> dict[str, str]:
    """The S3 stores that do not answer now (each asked at once, 2 s in all), with the reason."""
    return {location: check.reason or "no answer"
            for location, check in readiness.run_checks(readiness.store_checks()).items()
            if check.status == readiness.FAIL}


@bp.get("/dashboard")
def index():
    """What is wrong now; one row per target (last good backup, last attempt, next run, last verify,
    copies, storage; a server target's newest set under it) and two charts."""
    sizes, durations = defaultdict(list), defaultdict(list)
    for backup in backup_history(db.session):
        series = f"{backup.database}/{backup.source_database}" if backup.source_database else backup.database
        sizes[series].append((backup.created_at, (backup.size_bytes or 0) / 1024 / 1024))
        if backup.completed_at:
            durations[series].append((backup.created_at, (backup.completed_at - backup.created_at).total_seconds()))
    locations, targets, now = wiring.copy_locations(), wiring.all_targets(), utcnow()
    overviews = target_overviews(db.session, targets, current_app.config.get("STALE_AFTER_HOURS"), locations)
    limits = wiring.storage_alert_limits()
    over = over_limits(storage_usage(db.session, locations), limits) if limits else []
    problems = problems_of.attention(overviews, targets, now, timedelta(seconds=current_app.config["PITR_LEASE_SECONDS"]),
                         store_failures(), over)
    return render_template(
        "dashboard/index.html", now=now, locations=locations, targets=overviews, problems=problems, fix_url=fix_url,
        size_chart=line_chart("Backup size", sizes, "MB"),
        duration_chart=line_chart("Backup duration", durations, "s"))
