from flask import jsonify, render_template, request, url_for

from .. import jobs
from ..extensions import db
from . import bp


@bp.get("/")
def index():
    """Running and recent jobs; the page's script polls the active ones."""
    return render_template("jobs/index.html", jobs=jobs.recent_jobs(db.session),
                           highlight=request.args.get("highlight"))


@bp.get("/<job_id>.json")
def status(job_id):
    """One job as JSON, for the page's progress polling (signed-in users; the API has its own)."""
    job = jobs.get_job(db.session, job_id)
    data = job.to_dict()
    if job.backup is not None:
        data["backup_url"] = url_for("backups.detail", backup_id=job.backup_id)
        data["backup_filename"] = job.backup.filename
    return jsonify(data)
