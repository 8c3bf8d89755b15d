"""The WAL archive: each segment, history file and partial segment compressed (zstd), encrypted
when the target encrypts, hashed, and put into every store; catalogued as WalFile rows."""
import hashlib
import io
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backup_app.adapters.store import Store
from backup_app.core import codecs
from backup_app.core.crypto import MasterKey
from backup_app.core.wal import HISTORY_NAME, parse_history, parse_lsn, segment_number, timeline_of
from backup_app.errors import BackupError, ChecksumMismatch, PitrError
from backup_app.models import COPY_FAILED, HISTORY, PARTIAL_SEGMENT, PRESENT, SEGMENT, WalFile, utcnow

CONTENT_TYPE = "application/octet-stream"


def stored_name(target: str, lineage: str | None, name: str, kind: str, encrypted: bool, tag: str = "") -> str:
    """`shop.<system id>.000000010000000000000003.zst`; a partial copy carries how far it reaches and
    a digest of its bytes (`….partial.<lsn>.<digest>.zst`), so no upload ever lands on an existing
    object; `.enc` when encrypted. Files archived before lineages existed have no system id."""
    middle = ".partial" if kind == PARTIAL_SEGMENT else ""
    prefix = f"{target}.{lineage}" if lineage else target
    return f"{prefix}.{name}{middle}{tag}.zst" + (".enc" if encrypted else "")


def encode_wal(data: bytes, key: MasterKey | None) -> bytes:
    return codecs.encode(io.BytesIO(data), "zstd", key).read()


def decode_wal(stored: bytes, key: MasterKey | None, encrypted: bool) -> bytes:
    if encrypted and key is None:
        raise PitrError("the archived WAL is encrypted but APP_ENCRYPTION_KEY is not set")
    return codecs.decode(io.BytesIO(stored), "custom", "zstd", key if encrypted else None).read()


def put_everywhere(stores: Sequence[Store], filename: str, data: bytes) -> dict:
    """Put `data` into each store; `{location: {status, uri, error}}` (a failed store is recorded, not raised)."""
    copies = {}
    for store in stores:
        try:
            store.put(filename, io.BytesIO(data), {}, CONTENT_TYPE)
            copies[store.location] = {"status": PRESENT, "uri": store.uri(filename)}
        except (BackupError, OSError) as exc:
            copies[store.location] = {"status": COPY_FAILED, "uri": store.uri(filename), "error": str(exc)}
    return copies


def read_stored(store: Store, filename: str) -> bytes | None:
    """The stored bytes of `filename` in `store`; None when it holds no such object."""
    if store.stat(filename) is None:
        return None
    with store.open(filename) as stream:
        return stream.read()


def archive_file(session: Session, target: str, lineage: str | None, path: Path, stores: Sequence[Store],
                 key: MasterKey | None, *, kind: str | None = None, covers_until: datetime | None = None,
                 covers_lsn: str | None = None, end_lsn: str | None = None) -> WalFile | None:
    """Store one spooled WAL file of the cluster `lineage` in every store and record it
    (`covers_lsn`: the server's WAL insert position at `covers_until`). Returns None, recording
    nothing, when no store took it (the caller keeps the file and tries again).

    An object is never replaced: a file archived before is only checked to hold the same WAL, and an
    object already at the name (left by a worker that stopped before recording it) is kept when it
    holds the same WAL. Other bytes under an archived name raise WalConflict; they are kept aside
    under a `.conflict.` name, the archive unchanged."""
    name = path.name.removesuffix(".partial")
    kind = kind or (HISTORY if HISTORY_NAME.fullmatch(name) else SEGMENT)
    original = path.read_bytes()
    encrypted = key is not None
    archived_row = None if kind == PARTIAL_SEGMENT else session.scalar(select(WalFile).where(
        WalFile.target == target, WalFile.system_identifier == lineage, WalFile.name == name, WalFile.kind == kind))
    if archived_row is not None:
        try:
            archived = fetch(archived_row, stores, key)
        except BackupError:
            return None  # no copy can be read now: compared again on a later try
        if archived != original:
            raise conflict(target, lineage, name, kind, original, stores, key)
        return archived_row
    tag = f".{parse_lsn(end_lsn):016X}.{hashlib.sha256(original).hexdigest()[:12]}" if kind == PARTIAL_SEGMENT else ""
    filename = stored_name(target, lineage, name, kind, encrypted, tag)
    data, copies = None, {}
    for store in stores:
        try:
            found = read_stored(store, filename)
        except (BackupError, OSError):
            continue  # down: the put below fails and says so
        if found is None:
            continue
        if decode_wal(found, key, encrypted) != original:
            raise conflict(target, lineage, name, kind, original, stores, key)
        data = found
        copies[store.location] = {"status": PRESENT, "uri": store.uri(filename)}
    data = data if data is not None else encode_wal(original, key)
    copies.update(put_everywhere([s for s in stores if s.location not in copies], filename, data))
    if not any(copy["status"] == PRESENT for copy in copies.values()):
        return None
    if covers_until is None:
        covers_until = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    if kind != HISTORY:  # a file holds the WAL after the ones before it: it covers at least as much
        covers_until = max(covers_until, covered_before(session, target, lineage, name) or covers_until)
    # A segment's partial copies go once it is stored whole, an older partial copy once a newer one is.
    superseded = list(session.scalars(select(WalFile).where(
        WalFile.target == target, WalFile.system_identifier == lineage, WalFile.kind == PARTIAL_SEGMENT,
        WalFile.name == name)))
    for old in superseded:
        session.delete(old)
    session.flush()  # before the new row: one row per name and kind
    row = WalFile(target=target, system_identifier=lineage, name=name, kind=kind)
    session.add(row)
    row.timeline = int(name[:8], 16) if kind == HISTORY else timeline_of(name)
    row.filename, row.size_bytes, row.sha256 = filename, len(data), hashlib.sha256(data).hexdigest()
    row.stored_at, row.covers_until, row.covers_lsn = utcnow(), covers_until, covers_lsn
    row.end_lsn, row.copies = end_lsn, copies
    if kind == HISTORY and (entries := parse_history(original.decode(errors="replace"))):
        row.parent_timeline, row.end_lsn = entries[-1]
    session.commit()
    for old in superseded:
        if old.filename != filename:
            delete_quietly(stores, old.filename)
    return row


class WalConflict(PitrError):
    """A WAL file differs from the one archived under its name (e.g. two servers promoted to the
    same timeline); the archive keeps its own, the other is set aside."""


def covered_before(session: Session, target: str, lineage: str | None, name: str) -> datetime | None:
    """The latest moment that archived WAL up to segment `name` covers: `name` holds the WAL after
    theirs, so it covers at least as much, whatever the worker archiving it remembers (a restarted
    one has sampled nothing yet). The window only grows."""
    return session.scalar(select(func.max(WalFile.covers_until)).where(
        WalFile.target == target, WalFile.system_identifier == lineage,
        WalFile.kind.in_((SEGMENT, PARTIAL_SEGMENT)), WalFile.name <= name))


def conflict(target: str, lineage: str | None, name: str, kind: str, original: bytes, stores: Sequence[Store],
             key: MasterKey | None) -> WalConflict:
    """Keep differing bytes aside under a name of their own; the error that says where."""
    digest = hashlib.sha256(original).hexdigest()[:12]
    aside = stored_name(target, lineage, name, kind, key is not None, f".conflict.{digest}")
    kept = [location for location, copy in put_everywhere(stores, aside, encode_wal(original, key)).items()
            if copy["status"] == PRESENT]
    return WalConflict(f"WAL file {name} from the server differs from the one archived under that name (another "
                       f"server wrote the same timeline?): the archive keeps its copy; the server's is kept aside "
                       f"as {aside} ({', '.join(kept) or 'no store took it'}); archiving is stopped until this "
                       "is resolved")


def newest_segment(session: Session, target: str, lineage: str | None) -> WalFile | None:
    """The lineage's archived segment furthest along (on the newest timeline among equals)."""
    rows = session.scalars(select(WalFile).where(WalFile.target == target, WalFile.system_identifier == lineage,
                                                 WalFile.kind == SEGMENT))
    return max(rows, key=lambda row: (segment_number(row.name), row.timeline), default=None)


def delete_quietly(stores: Sequence[Store], filename: str) -> None:
    """Delete an object no row names any more; one left behind is harmless."""
    for store in stores:
        try:
            store.delete(filename)
        except (BackupError, OSError):
            pass


def current_partial(session: Session, target: str, lineage: str | None, name: str) -> WalFile | None:
    """The archived partial copy of segment `name` of the lineage, if any."""
    return session.scalar(select(WalFile).where(WalFile.target == target, WalFile.system_identifier == lineage,
                                                WalFile.kind == PARTIAL_SEGMENT, WalFile.name == name))


def fetch(row: WalFile, stores: Sequence[Store], key: MasterKey | None) -> bytes:
    """The original bytes of an archived WAL file, from the first copy whose SHA-256 matches."""
    return decode_wal(fetch_stored(row, stores), key, row.filename.endswith(".enc"))


def ordered(stores: Sequence[Store], copies: dict) -> list[Store]:
    """The stores holding a present copy, local first (as given), then the others (a copy
    recorded failed may have arrived since)."""
    present = [s for s in stores if (copies or {}).get(s.location, {}).get("status") == PRESENT]
    return present + [s for s in stores if s not in present]


def repair_missing(session: Session, target: str, stores: Sequence[Store], limit: int = 64) -> int:
    """Copy archived WAL to the stores that missed it (down when it arrived) and answer now, from an
    intact copy; at most `limit` copies a call (the number tried)."""
    made = 0
    rows = session.scalars(select(WalFile).where(WalFile.target == target).order_by(WalFile.name)).all()
    by_location = {}
    for store in stores:
        try:
            store.check()
            by_location[store.location] = store
        except (BackupError, OSError):
            pass  # still down: tried again later
    for row in rows:
        missing = [loc for loc in by_location if (row.copies or {}).get(loc, {}).get("status") != PRESENT]
        if not missing:
            continue
        try:
            data = fetch_stored(row, stores)
        except BackupError:
            continue
        copies = dict(row.copies or {})
        made += len(missing)
        for location in missing:
            store = by_location[location]
            try:
                found = read_stored(store, row.filename)
                if found is not None and found != data:
                    raise WalConflict(f"{row.filename} there holds other bytes; left as it is")
                if found is None:
                    store.put(row.filename, io.BytesIO(data), {}, CONTENT_TYPE)
            except (BackupError, OSError) as exc:
                copies[location] = {"status": COPY_FAILED, "uri": store.uri(row.filename), "error": str(exc)}
                continue
            copies[location] = {"status": PRESENT, "uri": store.uri(row.filename)}
        row.copies = copies
        session.commit()
        if made >= limit:
            break
    return made


def fetch_stored(row: WalFile, stores: Sequence[Store]) -> bytes:
    """The stored (compressed) bytes of `row` from the first copy whose SHA-256 matches."""
    problems = []
    for store in ordered(stores, row.copies):
        try:
            with store.open(row.filename) as stream:
                data = stream.read()
        except (BackupError, OSError) as exc:
            problems.append(f"{store.location}: {exc}")
            continue
        if hashlib.sha256(data).hexdigest() == row.sha256:
            return data
        problems.append(f"{store.location}: SHA-256 mismatch")
    raise ChecksumMismatch(f"no intact copy of WAL file {row.name} of {row.target}: " + "; ".join(problems))
