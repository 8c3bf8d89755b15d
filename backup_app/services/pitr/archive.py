"""The WAL archive: each segment, history file and partial segment compressed (zstd), encrypted
when the target encrypts, hashed, and put into every store; catalogued as WalFile rows."""
import hashlib
import io
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from backup_app.adapters.store import Store
from backup_app.core import codecs
from backup_app.core.crypto import MasterKey
from backup_app.core.wal import HISTORY_NAME, timeline_of
from backup_app.errors import BackupError, ChecksumMismatch, PitrError
from backup_app.models import COPY_FAILED, HISTORY, PARTIAL_SEGMENT, PRESENT, SEGMENT, WalFile, utcnow

CONTENT_TYPE = "application/octet-stream"


def stored_name(target: str, name: str, kind: str, encrypted: bool) -> str:
    """`shop.000000010000000000000003.zst`, `shop.000000010000000000000004.partial.zst(.enc)`."""
    middle = ".partial" if kind == PARTIAL_SEGMENT else ""
    return f"{target}.{name}{middle}.zst" + (".enc" if encrypted else "")


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


def archive_file(session: Session, target: str, path: Path, stores: Sequence[Store], key: MasterKey | None,
                 *, kind: str | None = None, covers_until: datetime | None = None,
                 end_lsn: str | None = None) -> WalFile | None:
    """Store one spooled WAL file in every store and record it. Returns None, recording nothing,
    when no store took it (the caller keeps the file and tries again)."""
    name = path.name.removesuffix(".partial")
    kind = kind or (HISTORY if HISTORY_NAME.fullmatch(name) else SEGMENT)
    data = encode_wal(path.read_bytes(), key)
    filename = stored_name(target, name, kind, key is not None)
    copies = put_everywhere(stores, filename, data)
    if not any(copy["status"] == PRESENT for copy in copies.values()):
        return None
    if covers_until is None:
        covers_until = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    if kind != HISTORY:
        covers_until = max(covers_until, covered_before(session, target, name) or covers_until)
    row = session.scalar(select(WalFile).where(WalFile.target == target, WalFile.name == name,
                                               WalFile.kind == kind))
    if row is None:
        row = WalFile(target=target, name=name, kind=kind)
        session.add(row)
    row.timeline = int(name[:8], 16) if kind == HISTORY else timeline_of(name)
    row.filename, row.size_bytes, row.sha256 = filename, len(data), hashlib.sha256(data).hexdigest()
    row.stored_at, row.covers_until, row.end_lsn, row.copies = utcnow(), covers_until, end_lsn, copies
    if kind == SEGMENT:  # the partial copy of this segment is superseded
        session.execute(delete(WalFile).where(WalFile.target == target, WalFile.name == name,
                                              WalFile.kind == PARTIAL_SEGMENT))
    session.commit()
    return row


def covered_before(session: Session, target: str, name: str) -> datetime | None:
    """The latest moment that archived WAL up to segment `name` covers: `name` holds the WAL after
    theirs, so it covers at least as much, whatever the worker archiving it remembers (a restarted
    one has sampled nothing yet). The window only grows."""
    return session.scalar(select(func.max(WalFile.covers_until)).where(
        WalFile.target == target, WalFile.kind.in_((SEGMENT, PARTIAL_SEGMENT)), WalFile.name <= name))


def current_partial(session: Session, target: str, name: str) -> WalFile | None:
    """The archived partial copy of segment `name`, if any."""
    return session.scalar(select(WalFile).where(WalFile.target == target, WalFile.kind == PARTIAL_SEGMENT,
                                                WalFile.name == name))


def remove_stale_partials(target: str, names: Sequence[str], stores: Sequence[Store], encrypted: bool) -> None:
    """Delete the partial objects of segments that are now stored whole."""
    for name in names:
        for store in stores:
            try:
                store.delete(stored_name(target, name, PARTIAL_SEGMENT, encrypted))
            except (BackupError, OSError):
                pass  # a leftover partial object is harmless: the catalog no longer names it


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
