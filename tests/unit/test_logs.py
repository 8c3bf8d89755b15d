"""Log lines as text or JSON, with the id of the job that logged them."""
import io
import json
import logging
from contextlib import contextmanager

import pytest

from backup_app import wiring
from backup_app.core.logs import configure_logging, job_context, make_handler
from backup_app.extensions import db
from backup_app.jobs.submit import queue_create
from devtools.localservers import reserve_port


@contextmanager
def captured_lines():
    """Root log records at INFO and above, written by the app's JSON handler, as parsed lines.

    Build apps before: their catalog upgrade lets Alembic replace the root logger's handlers.
    """
    buffer = io.StringIO()
    handler = make_handler("json", buffer)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_json_lines_carry_the_job_id_inside_a_job_only():
    log = logging.getLogger("backup_app.example")
    with captured_lines() as captured:
        log.warning("before")
        with job_context("job123"):
            log.info("during %s", "work")
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("failed")
        log.warning("after")
    lines = captured()
    assert [(line["message"], line["job_id"]) for line in lines] == [
        ("before", None), ("during work", "job123"), ("failed", "job123"), ("after", None)]
    assert lines[1]["level"] == "INFO" and lines[1]["logger"] == "backup_app.example"
    assert lines[1]["time"].endswith("Z") and "ValueError: boom" in lines[2]["exception"]


def test_text_lines_name_the_job():
    buffer = io.StringIO()
    handler = make_handler("text", buffer)
    record = logging.LogRecord("backup_app.x", logging.INFO, __file__, 1, "dumping", None, None)
    with job_context("job123"):
        handler.handle(record)
    assert buffer.getvalue().rstrip().endswith("INFO backup_app.x [job job123]: dumping")


def test_every_line_a_job_logs_has_its_id(make_app):
    app = make_app(BACKUP_DATABASE_URL=f"postgresql://app:pw@127.0.0.1:{reserve_port()}/shop")
    with captured_lines() as captured, app.app_context():
        job = queue_create(db.session, wiring.dump_spec())  # runs at once: HUEY_IMMEDIATE
        db.session.refresh(job)
        assert job.status == "failed"
    own = [line for line in captured() if line["logger"].startswith("backup_app")]
    assert [line["message"].split()[0] for line in own] == ["dumping", "failed:"]
    assert {line["job_id"] for line in own} == {job.id}


def test_configuring_twice_keeps_one_handler_and_refuses_unknown_formats():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("json")
        configure_logging("text", logging.INFO)
        ours = [handler for handler in root.handlers if handler.get_name() == "backup_app"]
        assert len(ours) == 1 and root.level == logging.INFO
        with pytest.raises(ValueError, match="LOG_FORMAT must be one of text, json"):
            configure_logging("xml")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
