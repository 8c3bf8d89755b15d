"""The audit log: append a record of each action, read them back newest first."""
import re

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from backup_app.models import AuditEvent

URL_PASSWORD = re.compile(r"(://[^/:@\s]*:)[^@\s]*@")


def redact(text: str) -> str:
    """Hide passwords in connection URLs (`postgresql://user:secret@…` → `user:***@`)."""
    return URL_PASSWORD.sub(r"\1***@", text)


def record(session: Session, actor: str, action: str, subject: str = "", *,
           address: str | None = None, detail: str | None = None) -> AuditEvent:
    """Append one event (and commit it on its own); its texts are cut to their columns' bounds."""
    event = AuditEvent(actor=actor, action=action, subject=redact(subject), address=address,
                       detail=redact(detail) if detail else None)
    session.add(event)
    session.commit()
    return event


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
