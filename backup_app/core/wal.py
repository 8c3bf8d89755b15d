"""WAL arithmetic and formats: segment names and LSNs, the tar that pg_basebackup streams, and
what a recovering server writes in its log. No I/O."""
import re
import tarfile
from datetime import datetime, timezone

SEGMENT_SIZE = 16 * 1024 * 1024  # initdb's default; `enable` refuses servers set otherwise
SEGMENT_NAME = re.compile(r"[0-9A-F]{24}")
HISTORY_NAME = re.compile(r"[0-9A-F]{8}\.history")
SEGMENTS_PER_XLOGID = 0x100000000 // SEGMENT_SIZE
PAGE_SIZE = 8192  # XLOG_BLCKSZ
SHORT_HEADER, LONG_HEADER = 24, 40  # a WAL page's header; the long one opens a segment


def parse_lsn(lsn: str) -> int:
    """'0/3000028' → 50331688."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def segment_number(name: str) -> int:
    """The segment's number on its timeline (its first byte is number × SEGMENT_SIZE)."""
    return int(name[8:16], 16) * SEGMENTS_PER_XLOGID + int(name[16:24], 16)


def timeline_of(name: str) -> int:
    return int(name[:8], 16)


def segment_name(timeline: int, number: int) -> str:
    return f"{timeline:08X}{number // SEGMENTS_PER_XLOGID:08X}{number % SEGMENTS_PER_XLOGID:08X}"


def segment_of_lsn(timeline: int, lsn: str) -> str:
    """The name of the segment holding `lsn`."""
    return segment_name(timeline, parse_lsn(lsn) // SEGMENT_SIZE)


def segment_end_lsn(name: str) -> str:
    return format_lsn((segment_number(name) + 1) * SEGMENT_SIZE)


def parse_history(text: str) -> list[tuple[int, str]]:
    """A timeline history file's entries: (an ancestor timeline, the LSN where it was left), oldest
    first; the last entry names the parent of the file's timeline and where that timeline begins."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#") and len(fields) >= 2:
            entries.append((int(fields[0]), fields[1]))
    return entries


def record_boundary(position: int) -> int:
    """`position`, or its page's start when it points just past the page's header: the server's
    insert position after a record that filled its page (or after a segment switch) is there,
    while the end of that record, where replay ends, is the page's start."""
    header = LONG_HEADER if position % SEGMENT_SIZE < PAGE_SIZE else SHORT_HEADER
    offset = position % PAGE_SIZE
    return position - offset if offset <= header else position


class TarWatcher:
    """Follows a tar stream as it passes (fed chunk by chunk) and keeps one member's bytes:
    pg_basebackup's `backup_manifest`, the tar's last member, without a second read."""

    def __init__(self, wanted: str = "backup_manifest", limit: int = 256 * 1024 * 1024):
        self.wanted, self.limit = wanted, limit
        self.found: bytes | None = None
        self._buffer = bytearray()
        self._skip = 0            # bytes of the current member (and its padding) still to pass
        self._keep: bytearray | None = None
        self._keep_size = 0
        self._done = False

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._done:
            if self._skip:
                step = min(self._skip, len(view))
                if self._keep is not None and len(self._keep) < self._keep_size:
                    self._keep += view[:min(step, self._keep_size - len(self._keep))]
                self._skip -= step
                view = view[step:]
                if not self._skip and self._keep is not None:
                    self.found, self._keep = bytes(self._keep), None
                continue
            need = 512 - len(self._buffer)
            self._buffer += view[:need]
            view = view[need:]
            if len(self._buffer) == 512:
                self._header(bytes(self._buffer))
                self._buffer.clear()

    def _header(self, block: bytes) -> None:
        if block == bytes(512):
            self._done = True  # the end-of-archive blocks
            return
        info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        self._skip = (info.size + 511) // 512 * 512
        if info.name.lstrip("./") == self.wanted and info.size <= self.limit:
            self._keep, self._keep_size = bytearray(), info.size
            if not info.size:
                self.found, self._keep = b"", None


# What a server logs when recovery stops (PostgreSQL 13+).
STOPPING = re.compile(r"recovery stopping (?:before|after) (?:commit|abort) of transaction \d+, "
                      r"time (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?[+-]\d\d(?::?\d\d)?)")
LAST_COMPLETED = re.compile(r"last completed transaction was at log time "
                            r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?[+-]\d\d(?::?\d\d)?)")
TARGET_NOT_REACHED = "recovery ended before configured recovery target was reached"
NEW_TIMELINE = re.compile(r"selected new timeline ID: (\d+)")
STOP_REASON = re.compile(r"LOG:\s+(.+)\n[^\n]*LOG:\s+redo done at")


def log_time(text: str) -> datetime:
    """'2026-12-02 11:05:03.123456+00' (a server's log) → an aware datetime in UTC."""
    if re.search(r"[+-]\d\d$", text):
        text += "00"
    return datetime.fromisoformat(text.replace(" ", "T", 1)).astimezone(timezone.utc)


def last_replayed_commit(log: str) -> datetime | None:
    """The time of the last transaction recovery applied, from the server's log: what it logs
    as 'last completed transaction' at the end of recovery; None when it logged none."""
    found = LAST_COMPLETED.findall(log)
    return log_time(found[-1]) if found else None


def new_timeline(log: str) -> int | None:
    """The timeline a promoted server started, from its log; None when it logged none."""
    found = NEW_TIMELINE.findall(log)
    return int(found[-1]) if found else None


def replay_stop_reason(log: str) -> str | None:
    """Why replay ended, as the server logged it just before "redo done at" (such as "unexpected
    pageaddr 0/5000000 in log segment …"); None when that line is not such a reason."""
    found = STOP_REASON.findall(log)
    return found[-1] if found and not found[-1].startswith("restored log file") else None


def switch_point(history: str) -> tuple[int, int]:
    """The last line of a timeline history file: (the timeline it left, the WAL position where it
    left it). A promoted server writes it with the end of the last record it replayed."""
    lines = [line.split() for line in history.splitlines() if line.strip() and not line.startswith("#")]
    if not lines or len(lines[-1]) < 2:
        raise ValueError("a timeline history file without a switch point")
    return int(lines[-1][0]), parse_lsn(lines[-1][1])
