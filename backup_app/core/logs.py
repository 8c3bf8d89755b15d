"""Process logging: text or JSON lines, and the id of the running job on every line a job logs.

`configure_logging` is called once per process (app.py for gunicorn and the CLI, `flask worker`
again at INFO). The worker runs each job inside `job_context(job_id)`; a filter copies the id
from a context variable onto every record, so each worker thread's lines carry its own job.
"""
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(job)s: %(message)s"

current_job_id: ContextVar[str | None] = ContextVar("current_job_id", default=None)


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Tag every line logged in this thread (or task) with `job_id` until the block ends."""
    token = current_job_id.set(job_id)
    try:
        yield
    finally:
        current_job_id.reset(token)


class JobIdFilter(logging.Filter):
    """Sets `record.job_id` (None outside a job) and `record.job` (" [job <id>]" or "")."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = current_job_id.get()
        record.job = f" [job {record.job_id}]" if record.job_id else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, job_id, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "job_id": getattr(record, "job_id", None),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def make_handler(log_format: str, stream=None) -> logging.Handler:
    """A handler writing `log_format` lines ("text" or "json") with job ids to `stream` (stderr)."""
    if log_format not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(JobIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.set_name("backup_app")
    return handler


def configure_logging(log_format: str, level: int | str = logging.WARNING) -> None:
    """Send the root logger's records at `level` and above to stderr as `log_format` lines.

    Calling it again replaces the handler it installed (the worker raises the level to INFO).
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "backup_app"]:
        root.removeHandler(handler)
    root.addHandler(make_handler(log_format))
    root.setLevel(level)
    # urllib3 warns of each retry of an S3 request; the error that follows (if any) says it all.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
