"""The databases restores replaced and kept (`shop_before_restore_<time>`): recorded, listed, and
dropped by the worker once KEEP_PREVIOUS_HOURS have passed."""
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app.adapters.pgtools import PgTools
from backup_app.core.conninfo import ConnInfo
from backup_app.errors import BackupError, LeftoverNotFound
from backup_app.models import PreviousDatabase, utcnow

log = logging.getLogger(__name__)
RETRY_AFTER = timedelta(hours=1)  # a drop that failed is tried again this much later


def keep(session: Session, name: str, database: str, conn: ConnInfo, backup_id: str | None, *, hours: int,
         job_id: str | None = None, target: str | None = None, url_encrypted: str | None = None,
         now: datetime | None = None) -> PreviousDatabase:
    """Record that `name` holds what `database` held before a restore (of `backup_id`; None: a
    point-in-time restore, job `job_id`); the worker drops it after `hours` (0: never). `target`
    or `url_encrypted` say how to reach it then."""
    now = now or utcnow()
    kept = PreviousDatabase(name=name, database=database, server=conn.with_dbname("").display(),
                            target=target, url_encrypted=url_encrypted, backup_id=backup_id, job_id=job_id,
                            kept_at=now, drop_after=now + timedelta(hours=hours) if hours > 0 else None)
    session.add(kept)
    session.commit()
    return kept


def kept_databases(session: Session) -> list[PreviousDatabase]:
    """The previous databases not dropped yet, newest first."""
    query = select(PreviousDatabase).where(PreviousDatabase.dropped_at.is_(None))
    return list(session.scalars(query.order_by(PreviousDatabase.kept_at.desc(), PreviousDatabase.id.desc())))


def kept_database(session: Session, name: str) -> PreviousDatabase:
    """The database a restore kept called `name`; LeftoverNotFound when there is none, or one on each
    of several servers."""
    kept = [k for k in kept_databases(session) if k.name == name]
    if not kept:
        raise LeftoverNotFound(f"no database kept by a restore is called {name!r} (see `flask restores list`)")
    if len(kept) > 1:
        raise LeftoverNotFound(f"restores kept a database called {name!r} on several servers "
                               f"({', '.join(k.server for k in kept)}): drop it there by hand")
    return kept[0]


def drop_now(session: Session, name: str, conn_of: Callable[[PreviousDatabase], ConnInfo], pg: PgTools,
             now: datetime | None = None) -> PreviousDatabase:
    """Drop the kept database `name` now (LeftoverNotFound when no restore kept one by that name)."""
    kept = kept_database(session, name)
    session.commit()  # no catalog transaction waits on the server
    pg.databases(conn_of(kept)).drop(kept.name)
    kept.dropped_at, kept.error = now or utcnow(), None
    session.commit()
    return kept


def drop_due(session: Session, conn_of: Callable[[PreviousDatabase], ConnInfo], pg: PgTools,
             now: datetime | None = None) -> list[str]:
    """Drop every kept database whose time is up; one line per database dropped or not.

    `conn_of` gives a connection to the server that holds it. A drop that fails is recorded
    on the row and tried again RETRY_AFTER later."""
    now = now or utcnow()
    due = session.scalars(select(PreviousDatabase).where(PreviousDatabase.dropped_at.is_(None),
                                                         PreviousDatabase.drop_after <= now))
    lines = []
    for kept in list(due):
        try:
            pg.databases(conn_of(kept)).drop(kept.name)
        except Exception as exc:  # noqa: BLE001 - one database that cannot be dropped never stops the others
            session.rollback()
            kept.error, kept.drop_after = str(exc) if isinstance(exc, BackupError) else repr(exc), now + RETRY_AFTER
            lines.append(f"could not drop {kept.name} (kept by a restore of {kept.database}): {exc}")
        else:
            kept.dropped_at, kept.error = now, None
            lines.append(f"dropped {kept.name} (kept by a restore of {kept.database} since {kept.kept_at:%Y-%m-%d %H:%M} UTC)")
        session.commit()
    return lines
