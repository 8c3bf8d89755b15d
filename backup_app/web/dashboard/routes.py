from collections import defaultdict

from flask import current_app, render_template

from backup_app import wiring
from backup_app.extensions import db
from backup_app.models import utcnow
from backup_app.services.overview import backup_history, target_overviews
from backup_app.web.charts import line_chart
from backup_app.web.dashboard import bp


@bp.get("/dashboard")
def index():
    """One row per target (last success, next run, last verify, copies, storage) and two charts."""
    sizes, durations = defaultdict(list), defaultdict(list)
    for backup in backup_history(db.session):
        sizes[backup.database].append((backup.created_at, (backup.size_bytes or 0) / 1024 / 1024))
        if backup.completed_at:
            durations[backup.database].append((backup.created_at,
                                               (backup.completed_at - backup.created_at).total_seconds()))
    locations = wiring.copy_locations()
    return render_template(
        "dashboard/index.html", now=utcnow(), locations=locations,
        targets=target_overviews(db.session, wiring.all_targets(), current_app.config.get("STALE_AFTER_HOURS"),
                                 locations),
        size_chart=line_chart("Backup size", sizes, "MB"),
        duration_chart=line_chart("Backup duration", durations, "s"))
