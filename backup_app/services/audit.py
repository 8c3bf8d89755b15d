"""The audit log: append a record of each action, read them back newest first.

Each event's outcome (`detail`) is said in words: `ok`, `refused: <reason>` (the request was not
accepted) or `failed: <error>` (it was, and did not work). An action that queued a job names it;
when the job fails later, its event is rewritten to say so (the one update the log sees).
"""
import logging
import re

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from backup_app.extensions import db
from backup_app.models import AuditEvent

log = logging.getLogger(__name__)
URL_PASSWORD = re.compile(r"(://[^/:@\s]*:)[^@\s]*@")
OK = "ok"
FAILED_SUFFIX = "-failed"


def refused(reason: str) -> str:
    return f"refused: {reason}"


def failed(error: str) -> str:
    return f"failed: {error}"


def redact(text: str) -> str:
    """Hide passwords in connection URLs (`postgresql://user:secret@…` → `user:***@`)."""
    return URL_PASSWORD.sub(r"\1***@", text)


def record(session: Session, actor: str, action: str, subject: str = "", *, address: str | None = None,
           detail: str | None = None, job_id: str | None = None) -> AuditEvent:
    """Append one event (and commit it on its own); its texts are cut to their columns' bounds."""
    event = AuditEvent(actor=actor, action=action, subject=redact(subject), address=address,
                       detail=redact(detail) if detail else None, job_id=job_id)
    session.add(event)
    session.commit()
    return event


def job_failed(job_id: str, error: str) -> None:
    """Say on the events that queued job `job_id` that it failed (`<action>-failed`, `failed: <error>`),
    in a short transaction of its own, as job records are written. Safe to repeat; never raises
    (it runs as a job ends: the job's own error comes first)."""
    try:
        with db.engine.begin() as connection:
            connection.execute(update(AuditEvent).where(AuditEvent.job_id == job_id, AuditEvent.detail == OK)
                               .values(action=AuditEvent.action + FAILED_SUFFIX, detail=redact(failed(error))))
    except Exception:  # noqa: BLE001 - logged loudly; the job's outcome stands
        log.exception("could not say in the audit log that job %s failed", job_id)


def events_query(actor: str | None = None, action: str | None = None) -> Select:
    """Events, newest first, optionally filtered."""
    query = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if action:
        query = query.where(AuditEvent.action == action)
    return query


def list_events(session: Session, actor: str | None = None, action: str | None = None,
                limit: int | None = None) -> list[AuditEvent]:
    return list(session.scalars(events_query(actor, action).limit(limit)))
