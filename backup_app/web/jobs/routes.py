from flask import jsonify, render_template, request, url_for

from backup_app.extensions import db
from backup_app.jobs.records import get_job, recent_jobs
from backup_app.web.jobs import bp


@bp.get("/")
def index():
    """Running and recent jobs; the page's script polls the active ones."""
    return render_template("jobs/index.html", jobs=recent_jobs(db.session),
                           highlight=request.args.get("highlight"))


@bp.get("/<job_id>.json")
def status(job_id):
    """One job as JSON, for the page's progress polling (signed-in users; the API has its own)."""
    job = get_job(db.session, job_id)
    data = job.to_dict()
    if job.backup is not None:
        data["backup_url"] = url_for("backups.detail", backup_id=job.backup_id)
        data["backup_filename"] = job.backup.filename
    return jsonify(data)
