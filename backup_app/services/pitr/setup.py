"""Turning PITR on and off for a target, and what its status page and `flask pitr status` show."""
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backup_app.adapters.pgtools import PgTools
from backup_app.adapters.physical import (
    PhysicalClient,
    ServerFacts,
    drop_slot,
    server_facts,
    slot_name,
    system_identifier,
    wal_positions,
)
from backup_app.core.conninfo import ConnInfo
from backup_app.core.wal import SEGMENT_SIZE, parse_lsn
from backup_app.errors import PitrError
from backup_app.models import FAILING, STOPPED, BaseBackup, Target, WalFile, WalReceiver, isoformat, utcnow
from backup_app.services import schedules
from backup_app.services.pitr import lineage
from backup_app.services.pitr.window import archived, lineages, window

DEFAULT_BASE_SCHEDULE = "0 1 * * 0"  # weekly, Sunday 01:00 in the target's time zone
RECOMMENDED_KEEP_SIZE = "50GB"


def physical_client(pg: PgTools, conn: ConnInfo) -> PhysicalClient:
    """The client that streams this server: the oldest at least as new as the server."""
    _version, client = pg.for_dump(conn)
    return PhysicalClient(client)


def problems(facts: ServerFacts, conn: ConnInfo) -> list[str]:
    """What must change on the server before its WAL can be archived, each with how."""
    found = []
    if facts.wal_level not in ("replica", "logical"):
        found.append(f"wal_level is {facts.wal_level}: set wal_level = replica in postgresql.conf and restart")
    if facts.max_wal_senders < 2:
        found.append(f"max_wal_senders is {facts.max_wal_senders}: set it to 2 or more (one for the WAL stream, "
                     "one for base backups) and restart")
    if facts.max_replication_slots < 1 and not facts.slot_exists:
        found.append("max_replication_slots is 0: set it to 1 or more and restart")
    if not facts.can_replicate:
        found.append(f"the role {conn.user or '(default)'} cannot replicate: "
                     f"ALTER ROLE {conn.user or 'USER'} REPLICATION")
    if facts.tablespaces:
        found.append(f"the server has tablespaces ({', '.join(facts.tablespaces)}): base backups streamed as one "
                     "tar cannot hold them; move their tables to pg_default")
    if facts.wal_segment_size != SEGMENT_SIZE:
        found.append(f"the server's WAL segments are {facts.wal_segment_size} bytes; only 16 MB segments "
                     "are supported")
    return found


def enable(session: Session, target: Target, conn: ConnInfo, pg: PgTools, new_cluster: bool = False) -> list[str]:
    """Check the server, create the slot, and archive from now on; the advice lines to show.
    PitrError listing everything to change when the server is not ready, or when it is another
    cluster than the archive's (`new_cluster`: start a new lineage for it)."""
    slot = slot_name(target.name)
    sharer = slot_holder(session, slot, besides=target.name)
    if sharer:
        raise PitrError(f"{target.name}'s replication slot would be {slot}, which is already {sharer}'s: slot names "
                        "keep only lowercase letters, digits and _, so the two names map to one slot. Give this "
                        f"target a name that differs from {sharer} in more than case or punctuation")
    facts = server_facts(conn, slot)
    found = problems(facts, conn)
    if found:
        raise PitrError(f"{target.name}'s server is not ready for WAL archiving: " + "; ".join(found))
    cluster = system_identifier(conn)
    if new_cluster:
        lineage.start_new(session, target, cluster, conn.display())
    else:
        lineage.follow(session, target, cluster, conn.display())
    physical_client(pg, conn).create_slot(conn, slot)
    session.add(target)  # BACKUP_DATABASE_URL's target is stored once it has settings of its own
    target.pitr_enabled, target.pitr_slot = True, slot
    if not target.base_schedule:
        target.base_schedule = DEFAULT_BASE_SCHEDULE
    reschedule(target)
    if session.get(WalReceiver, target.name) is None:
        session.add(WalReceiver(target=target.name, state=STOPPED))
    session.commit()
    advice = [f"replication slot {slot} is ready; `flask worker` streams the WAL through it"]
    if facts.max_slot_wal_keep_size in ("-1", "-1MB"):
        advice.append(f"set max_slot_wal_keep_size (e.g. {RECOMMENDED_KEEP_SIZE}) on the server: a stopped "
                      "archiver then cannot fill its disk with WAL the slot holds")
    if facts.version_num >= 170000 and not facts.summarize_wal:
        advice.append("set summarize_wal = on on the server to allow incremental base backups")
    if not new_cluster:
        advice.append(f"take a base backup now: flask pitr base-backup {target.name}")
    return advice


def slot_holder(session: Session, slot: str, besides: str) -> str | None:
    """The name of a target other than `besides` whose replication slot is `slot`, if any."""
    return session.scalars(select(Target.name).where(Target.pitr_slot == slot, Target.name != besides)).first()


def disable(session: Session, target: Target, conn: ConnInfo, drop: bool) -> list[str]:
    """Stop archiving (the workers' receivers stop within seconds); drop the slot if asked, so
    the server stops keeping WAL for it."""
    target.pitr_enabled = False
    session.commit()
    lines = [f"WAL archiving of {target.name} is off; the archive and base backups are kept"]
    if drop and target.pitr_slot:
        sharer = slot_holder(session, target.pitr_slot, besides=target.name)
        if sharer:  # enabled before names were checked: the slot is the other target's too
            lines.append(f"replication slot {target.pitr_slot} not dropped: it is also {sharer}'s")
        else:
            lines.append(f"replication slot {target.pitr_slot} dropped" if drop_slot(conn, target.pitr_slot)
                         else f"replication slot {target.pitr_slot} was already gone")
        target.pitr_slot = None
        session.commit()
    elif target.pitr_slot:
        lines.append(f"replication slot {target.pitr_slot} still holds WAL on the server: "
                     f"`flask pitr disable {target.name} --drop-slot` releases it")
    return lines


def set_schedules(session: Session, target: Target, base_schedule: str | None,
                  verify_schedule: str | None) -> None:
    """Set the crons of the base backups and of the drill (None leaves one as it is)."""
    session.add(target)
    if base_schedule is not None:
        target.base_schedule = schedules.check_cron(base_schedule) if base_schedule else None
    if verify_schedule is not None:
        target.pitr_verify_schedule = schedules.check_cron(verify_schedule) if verify_schedule else None
    reschedule(target)
    session.commit()


def reschedule(target: Target, now: datetime | None = None) -> None:
    """The next scheduled base backup and PITR drill, from their crons."""
    def next_of(cron):
        return schedules.next_run_time(cron, target.timezone, now) if cron and target.pitr_enabled else None
    target.base_next_run_at = next_of(target.base_schedule)
    target.pitr_verify_next_run_at = next_of(target.pitr_verify_schedule)


def status(session: Session, target: Target, conn: ConnInfo | None, lease_seconds: int = 30) -> dict:
    """The shape of `flask pitr status --json`. A receiver whose worker has not renewed its lease
    for `lease_seconds` is `stopped`, whatever it last said; a hole in the archive makes it `failing`,
    the error naming the missing segment."""
    receiver = session.get(WalReceiver, target.name)
    current = target.pitr_system_identifier
    start, end = window(session, target.name, current)
    bases = session.scalars(select(BaseBackup).where(BaseBackup.target == target.name)
                            .order_by(BaseBackup.started_at.desc())).all()
    state, error = (receiver.state, receiver.error) if receiver and target.pitr_enabled else (STOPPED, None)
    alive = receiver is not None and receiver.heartbeat_at is not None and \
        utcnow() - receiver.heartbeat_at < timedelta(seconds=lease_seconds)
    stored = archived(session, target.name, current)
    if target.pitr_enabled and not alive:
        state = STOPPED
        error = "no `flask worker` is running the WAL receiver" + (
            f" (last heard of {isoformat(receiver.heartbeat_at)})" if receiver and receiver.heartbeat_at else "")
    elif target.pitr_enabled and stored.missing is not None:
        state, error = FAILING, "; ".join(filter(None, [stored.problem(), error]))
    return {
        "target": target.name,
        "enabled": bool(target.pitr_enabled),
        "slot": target.pitr_slot,
        "system_identifier": current,
        "timeline": session.scalar(select(func.max(WalFile.timeline)).where(
            WalFile.target == target.name, WalFile.system_identifier == current)),
        "lineages": lineages(session, target.name, current),
        "receiver": state,
        "error": error,
        "holder": receiver.holder if receiver else None,
        "last_segment": receiver.last_segment if receiver else None,
        "last_segment_at": isoformat(receiver.last_segment_at) if receiver else None,
        "bytes_behind": bytes_behind(conn, target.pitr_slot, stored.end) if target.pitr_enabled else None,
        "recoverable_from": isoformat(start),
        "recoverable_to": isoformat(end),
        "verified_at": isoformat(target.pitr_verified_at),
        "verified_to": isoformat(target.pitr_verified_to),
        "verify_error": target.pitr_verify_error,
        "base_schedule": target.base_schedule,
        "base_next_run_at": isoformat(target.base_next_run_at),
        "pitr_verify_schedule": target.pitr_verify_schedule,
        "base_backups": [base.to_dict() for base in bases],
    }


def bytes_behind(conn: ConnInfo | None, slot: str | None, archived_end: int | None) -> int | None:
    """WAL the server has written after the end of the contiguous archive (a hole counts, whatever
    is stored after it); None when nothing is archived or the server cannot be asked."""
    import psycopg

    if conn is None or slot is None or archived_end is None:
        return None
    try:
        _now, current, _flushed = wal_positions(conn, slot)
    except psycopg.Error:
        return None
    return max(0, parse_lsn(current) - archived_end)


def require_enabled(target: Target) -> None:
    if not target.pitr_enabled:
        raise PitrError(f"PITR is off for {target.name}: turn it on first (flask pitr enable {target.name}, "
                        "or Enable on its PITR page)")
