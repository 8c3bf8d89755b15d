from flask import abort, render_template, request
from wtforms import SelectChoice

from backup_app import wiring
from backup_app.errors import InvalidRequest
from backup_app.extensions import db
from backup_app.jobs.records import get_job, job_databases, jobs_query
from backup_app.web.jobs import bp
from backup_app.web.jobs.forms import JobFilterForm
from backup_app.web.paging import requested_page

PER_PAGE = 50


@bp.get("/")
def index():
    """Jobs, newest first, filtered by kind, status and target, a page at a time; running rows refresh themselves."""
    form = JobFilterForm(request.args)
    targets = sorted(set(job_databases(db.session)) | {t.name for t in wiring.all_targets()})
    form.target.choices = [SelectChoice("", "any target")] + [SelectChoice(name) for name in targets]
    if (target := request.args.get("target")) and target not in targets:
        abort(404, description=f"unknown target {target!r}: no target and no jobs have that name")
    if not form.validate():
        raise InvalidRequest("; ".join(form.problems()))
    filters = {name: value for name, value in form.data.items() if value}
    page = requested_page(jobs_query(filters.get("kind"), filters.get("status"), filters.get("target")), PER_PAGE)
    return render_template("jobs/index.html", page=page, form=form, filters=filters,
                           highlight=request.args.get("highlight"))


@bp.get("/<job_id>/row")
def row(job_id):
    """One job's row of the jobs table, as the page refreshes it while the job runs."""
    return render_template("jobs/_row.html", job=get_job(db.session, job_id),
                           highlight=job_id if request.args.get("highlight") else None)
