"""The recoverable window: from the end of the oldest usable base backup to the last moment
the archive holds WAL for, without a gap; and how far the archive is contiguous (a hole in it
named)."""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app.core.wal import SEGMENT_SIZE, parse_lsn, segment_name, segment_number, segment_of_lsn, timeline_of
from backup_app.errors import PitrError
from backup_app.models import COMPLETED, PARTIAL_SEGMENT, SEGMENT, BaseBackup, WalFile, isoformat


@dataclass
class Reach:
    """How far one base backup can be rolled forward: the WAL files it needs, in order, and the
    moment the last of them covers (None: its own WAL is not all archived yet)."""

    base: BaseBackup
    wal: list[WalFile]
    until: datetime | None


def completed_bases(session: Session, target: str) -> list[BaseBackup]:
    """The target's completed base backups, oldest first."""
    return list(session.scalars(select(BaseBackup).where(
        BaseBackup.target == target, BaseBackup.status == COMPLETED).order_by(BaseBackup.started_at)))


def reach(base: BaseBackup, segments: dict[str, WalFile], partials: dict[str, WalFile]) -> Reach:
    """The contiguous WAL from `base`'s start segment on (`segments` and `partials` by name), and the
    moment it covers."""
    first = segment_number(segment_of_lsn(base.timeline, base.start_lsn))
    last_needed = segment_number(segment_of_lsn(base.timeline, base.end_lsn))
    wal, number = [], first
    while (row := segments.get(segment_name(base.timeline, number))) is not None:
        wal.append(row)
        number += 1
    if (partial := partials.get(segment_name(base.timeline, number))) is not None:
        wal.append(partial)
        number += 1
    if number <= last_needed:  # the backup's own WAL is not all there: not consistent yet
        return Reach(base, wal, None)
    return Reach(base, wal, wal[-1].covers_until)


def reaches(session: Session, target: str) -> list[Reach]:
    """Every completed base backup's reach, oldest first."""
    segments, partials = archived_files(session, target)
    return [reach(base, segments, partials) for base in completed_bases(session, target)]


def archived_files(session: Session, target: str) -> tuple[dict[str, WalFile], dict[str, WalFile]]:
    """The target's archived segments and partial segments, each by name. A partial stays until
    its segment is archived whole (a takeover may leave one behind the newest)."""
    rows = session.scalars(select(WalFile).where(WalFile.target == target,
                                                 WalFile.kind.in_((SEGMENT, PARTIAL_SEGMENT)))).all()
    return ({row.name: row for row in rows if row.kind == SEGMENT},
            {row.name: row for row in rows if row.kind == PARTIAL_SEGMENT})


@dataclass
class Archived:
    """How far a target's archive holds every byte of WAL, from the start of its newest base backup
    (or its oldest archived segment) on: `end` (a position; None when nothing is archived), and
    `missing`, the first segment after that which is not archived while later WAL is (a hole)."""

    target: str
    end: int | None
    missing: str | None

    def problem(self) -> str | None:
        if self.missing is None:
            return None
        return (f"WAL segment {self.missing} is not archived while later WAL is: the recoverable window ends "
                "before it until a worker stores it (one that lost the lease stores what its spool holds) or a "
                "base backup taken after it starts a new stretch")


def archived(session: Session, target: str) -> Archived:
    """The contiguous extent of `target`'s archive and its first hole (see Archived)."""
    segments, partials = archived_files(session, target)
    bases = completed_bases(session, target)
    return extent(target, segments, partials, bases[-1] if bases else None)


def extent(target: str, segments: dict[str, WalFile], partials: dict[str, WalFile],
           newest: BaseBackup | None) -> Archived:
    """Follow the archived segments from `newest`'s start segment (or the oldest one archived) on
    its timeline; the end of the last one, or of the partial copy of the next."""
    if newest is not None:
        timeline, number = newest.timeline, segment_number(segment_of_lsn(newest.timeline, newest.start_lsn))
    elif segments or partials:
        first = min([*segments, *partials])
        timeline, number = timeline_of(first), segment_number(first)
    else:
        return Archived(target, None, None)
    while segment_name(timeline, number) in segments:
        number += 1
    end = number * SEGMENT_SIZE
    if (partial := partials.get(segment_name(timeline, number))) is not None:
        end = parse_lsn(partial.end_lsn)
    later = any(timeline_of(name) == timeline and segment_number(name) > number for name in [*segments, *partials])
    return Archived(target, end, segment_name(timeline, number) if later else None)


def usable(session: Session, target: str) -> list[Reach]:
    """The reaches that recover to something: their base backup's own WAL is all archived."""
    return [r for r in reaches(session, target) if r.until is not None and r.until >= r.base.finished_at]


def ranges(found: list[Reach]) -> list[tuple[datetime, datetime]]:
    """The recoverable stretches, oldest first: overlapping reaches merged, a gap between them kept."""
    merged: list[list[datetime]] = []
    for r in sorted(found, key=lambda r: r.base.finished_at):
        if merged and r.base.finished_at <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], r.until)
        else:
            merged.append([r.base.finished_at, r.until])
    return [(start, end) for start, end in merged]


def window(session: Session, target: str) -> tuple[datetime | None, datetime | None]:
    """(recoverable_from, recoverable_to) of the newest stretch; (None, None) when nothing can be
    recovered yet."""
    found = ranges(usable(session, target))
    return found[-1] if found else (None, None)


def choose(session: Session, target: str, to: datetime | None) -> Reach:
    """The newest base backup that finished before `to` (None: latest) and whose WAL reaches it;
    PitrError naming the window when there is none."""
    found = usable(session, target)
    if to is None:
        if not found:
            raise PitrError(f"{target} has nothing to recover yet: "
                            + ("its WAL since the base backup is not all archived yet"
                               if completed_bases(session, target) else "it has no base backup"))
        return max(found, key=lambda r: (r.until, r.base.started_at))
    fits = [r for r in found if r.base.finished_at <= to <= r.until]
    if not fits:
        shown = ", ".join(f"{isoformat(start)} to {isoformat(end)}" for start, end in ranges(found)) or \
            "empty (no base backup with its WAL)"
        raise PitrError(f"{isoformat(to)} is outside the recoverable window of {target}: {shown}")
    return max(fits, key=lambda r: r.base.started_at)
