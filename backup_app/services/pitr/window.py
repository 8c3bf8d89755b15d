"""The recoverable window: from the end of the oldest usable base backup to the last moment
the archive holds WAL for, without a gap; and how far the archive is contiguous (a hole in it
named). Each cluster (system identifier) the target was is a lineage of its own; within one, the WAL
is followed across timeline switches (failovers) as PostgreSQL's recovery follows them: each segment
from the newest timeline that had begun by then."""
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app.core.wal import SEGMENT_SIZE, parse_lsn, segment_name, segment_number, segment_of_lsn, timeline_of
from backup_app.errors import PitrError
from backup_app.models import COMPLETED, HISTORY, PARTIAL_SEGMENT, SEGMENT, BaseBackup, WalFile, isoformat


@dataclass
class Reach:
    """How far one base backup can be rolled forward: the WAL files it needs, in order, and the
    moment the last of them covers (None: its own WAL is not all archived yet); the history files
    of the timelines it crosses, and the timeline it ends on."""

    base: BaseBackup
    wal: list[WalFile]
    until: datetime | None
    histories: list[WalFile] = field(default_factory=list)
    timeline: int | None = None


@dataclass
class Lineage:
    """One cluster's archived WAL, by name, and its timelines' history files."""

    segments: dict[str, WalFile]
    partials: dict[str, WalFile]
    histories: dict[int, WalFile]

    def path(self, timeline: int, start_lsn: str) -> list[tuple[int, int, WalFile | None]]:
        """(timeline, the number of its first segment, its history file) from `timeline` on to the
        newest timeline branched off it at or after `start_lsn`, oldest first."""
        start = parse_lsn(start_lsn)
        for newest in sorted(self.histories, reverse=True):
            chain = self.ancestry(newest)
            index = next((i for i, (_tli, _first, row) in enumerate(chain) if row.parent_timeline == timeline), None)
            if index is not None and parse_lsn(chain[index][2].end_lsn) >= start:
                return [(timeline, 0, None), *chain[index:]]
        return [(timeline, 0, None)]

    def ancestry(self, newest: int) -> list[tuple[int, int, WalFile]]:
        """The timelines leading to `newest` whose history files are here, oldest first."""
        chain, tli = [], newest
        while (row := self.histories.get(tli)) is not None and row.parent_timeline is not None and row.end_lsn:
            chain.insert(0, (tli, parse_lsn(row.end_lsn) // SEGMENT_SIZE, row))
            tli = row.parent_timeline
        return chain


def load_lineage(rows: Iterable[WalFile]) -> Lineage:
    rows = list(rows)
    return Lineage({r.name: r for r in rows if r.kind == SEGMENT},
                   {r.name: r for r in rows if r.kind == PARTIAL_SEGMENT},
                   {r.timeline: r for r in rows if r.kind == HISTORY})


def completed_bases(session: Session, target: str) -> list[BaseBackup]:
    """The target's completed base backups, oldest first."""
    return list(session.scalars(select(BaseBackup).where(
        BaseBackup.target == target, BaseBackup.status == COMPLETED).order_by(BaseBackup.started_at)))


def reach(base: BaseBackup, lineage: Lineage) -> Reach:
    """The contiguous WAL from `base`'s start segment on, across timeline switches, and the moment it covers."""
    path = lineage.path(base.timeline, base.start_lsn)
    first = segment_number(segment_of_lsn(base.timeline, base.start_lsn))
    last_needed = segment_number(segment_of_lsn(base.timeline, base.end_lsn))
    wal, number = [], first
    # Recovery reads the history file of each timeline it replays on (timeline 1 has none).
    histories = [lineage.histories[tli] for tli, _first, _row in path if tli in lineage.histories]

    def timeline_at(number: int) -> int:
        return next(tli for tli, begins, _row in reversed(path) if begins <= number)

    while True:
        timeline = timeline_at(number)
        row = lineage.segments.get(segment_name(timeline, number))
        if row is None:
            break
        wal.append(row)
        number += 1
    partial = lineage.partials.get(segment_name(timeline, number))
    if partial is not None:
        wal.append(partial)
        number += 1
    missing_history = any(tli > 1 and tli not in lineage.histories for tli, _first, _row in path)
    if number <= last_needed or not wal or missing_history:  # not consistent yet, or cannot be replayed
        return Reach(base, wal, None, histories, timeline)
    return Reach(base, wal, wal[-1].covers_until, histories, timeline)


def reaches(session: Session, target: str, lineage: str | None = None, every: bool = False) -> list[Reach]:
    """The reaches of the completed base backups of one lineage (`every`: of all), oldest first."""
    rows = session.scalars(select(WalFile).where(WalFile.target == target)).all()
    by_lineage: dict[str | None, list[WalFile]] = {}
    for row in rows:
        by_lineage.setdefault(row.system_identifier, []).append(row)
    loaded = {sysid: load_lineage(found) for sysid, found in by_lineage.items()}
    empty = load_lineage([])
    return [reach(base, loaded.get(base.system_identifier, empty)) for base in completed_bases(session, target)
            if every or base.system_identifier == lineage]


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


def archived(session: Session, target: str, lineage: str | None) -> Archived:
    """The contiguous extent of the lineage's archive and its first hole (see Archived)."""
    loaded = load_lineage(session.scalars(select(WalFile).where(WalFile.target == target,
                                                                WalFile.system_identifier == lineage)))
    bases = [b for b in completed_bases(session, target) if b.system_identifier == lineage]
    if not bases:
        return extent(target, loaded.segments, loaded.partials, None)
    found = reach(bases[-1], loaded)
    number = segment_number(segment_of_lsn(bases[-1].timeline, bases[-1].start_lsn)) + \
        sum(1 for row in found.wal if row.kind == SEGMENT)
    last = found.wal[-1] if found.wal else None
    end = parse_lsn(last.end_lsn) if last is not None and last.kind == PARTIAL_SEGMENT else number * SEGMENT_SIZE
    later = any(segment_number(name) > number and timeline_of(name) >= found.timeline
                for name in [*loaded.segments, *loaded.partials])
    return Archived(target, end, segment_name(found.timeline, number) if later else None)


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


def usable(session: Session, target: str, lineage: str | None = None, every: bool = False) -> list[Reach]:
    """The reaches that recover to something: their base backup's own WAL is all archived."""
    return [r for r in reaches(session, target, lineage, every)
            if r.until is not None and r.until >= r.base.finished_at]


def ranges(found: list[Reach]) -> list[tuple[datetime, datetime]]:
    """The recoverable stretches, oldest first: overlapping reaches merged, a gap between them kept."""
    merged: list[list[datetime]] = []
    for r in sorted(found, key=lambda r: r.base.finished_at):
        if merged and r.base.finished_at <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], r.until)
        else:
            merged.append([r.base.finished_at, r.until])
    return [(start, end) for start, end in merged]


def window(session: Session, target: str, lineage: str | None) -> tuple[datetime | None, datetime | None]:
    """(recoverable_from, recoverable_to) of the newest stretch of `lineage`; (None, None) when
    nothing can be recovered yet."""
    found = ranges(usable(session, target, lineage))
    return found[-1] if found else (None, None)


def lineages(session: Session, target: str, current: str | None) -> list[dict]:
    """Each cluster the target's archive holds base backups of, oldest first, with its window."""
    seen = list(dict.fromkeys(base.system_identifier for base in completed_bases(session, target)))
    if current not in seen:
        seen.append(current)
    shown = []
    for sysid in seen:
        start, end = window(session, target, sysid)
        shown.append({"system_identifier": sysid, "recoverable_from": isoformat(start),
                      "recoverable_to": isoformat(end), "current": sysid == current})
    return shown


def choose(session: Session, target: str, to: datetime | None, current: str | None) -> Reach:
    """The newest base backup that finished before `to` (None: latest, in the current lineage)
    and whose WAL reaches it, in any lineage; PitrError naming the window when there is none."""
    if to is None:
        found = usable(session, target, current)
        if not found:
            raise PitrError(f"{target} has nothing to recover yet: "
                            + ("its WAL since the base backup is not all archived yet"
                               if completed_bases(session, target) else "it has no base backup"))
        return max(found, key=lambda r: (r.until, r.base.started_at))
    found = usable(session, target, every=True)
    fits = [r for r in found if r.base.finished_at <= to <= r.until]
    if not fits:
        shown = ", ".join(f"{isoformat(start)} to {isoformat(end)}" for start, end in ranges(found)) or \
            "empty (no base backup with its WAL)"
        raise PitrError(f"{isoformat(to)} is outside the recoverable window of {target}: {shown}")
    return max(fits, key=lambda r: (r.base.system_identifier == current, r.base.started_at))
