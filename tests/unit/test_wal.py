"""WAL arithmetic, the tar watcher that catches backup_manifest, the recovery log, the window and
the retention of base backups — no servers."""
import io
import tarfile
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from backup_app.core.wal import (
    TarWatcher,
    format_lsn,
    last_replayed_commit,
    parse_lsn,
    segment_end_lsn,
    segment_name,
    segment_number,
    segment_of_lsn,
)
from backup_app.models import BaseBackup, WalFile
from backup_app.services.pitr.retention import kept_base_backups
from backup_app.services.pitr.window import Reach, load_lineage, ranges, reach

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def test_lsn_and_segment_names_round_trip():
    assert parse_lsn("0/3000028") == 0x3000028
    assert format_lsn(parse_lsn("1A/FF000000")) == "1A/FF000000"
    assert segment_of_lsn(1, "0/3000028") == "000000010000000000000003"
    assert segment_of_lsn(2, "1/FF000000") == "0000000200000001000000FF"
    name = "0000000100000001000000FF"
    assert segment_name(1, segment_number(name) + 1) == "000000010000000200000000"
    assert segment_end_lsn("000000010000000000000003") == "0/4000000"


def tar_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_the_tar_watcher_keeps_the_manifest_whatever_the_chunking():
    manifest = b'{"PostgreSQL-Backup-Manifest-Version": 1}' * 50
    stream = tar_bytes({"base/1/1259": b"x" * 10000, "global/pg_control": b"c" * 8192, "backup_manifest": manifest})
    for chunk in (1, 7, 511, 512, 513, 65536):
        watcher = TarWatcher()
        for start in range(0, len(stream), chunk):
            watcher.feed(stream[start:start + chunk])
        assert watcher.found == manifest


def test_the_tar_watcher_finds_nothing_in_a_tar_without_a_manifest():
    watcher = TarWatcher()
    watcher.feed(tar_bytes({"PG_VERSION": b"15\n"}))
    assert watcher.found is None


def test_the_last_replayed_commit_is_read_from_the_log():
    log = ("LOG:  recovery stopping before commit of transaction 745, time 2026-12-02 12:05:03.5+00\n"
           "LOG:  last completed transaction was at log time 2026-12-02 12:05:01.25+00\n")
    assert last_replayed_commit(log) == datetime(2026, 12, 2, 12, 5, 1, 250000, tzinfo=timezone.utc)
    assert last_replayed_commit("LOG:  redo done") is None


def base(**fields) -> BaseBackup:
    values = dict(id="b1", target="shop", kind="full", status="completed", timeline=1, start_lsn="0/2000028",
                  end_lsn="0/2000100", started_at=T0, finished_at=T0 + timedelta(seconds=5), parent_id=None)
    return BaseBackup(**{**values, **fields})


def wal(name: str, minutes: int, kind: str = "segment") -> WalFile:
    return WalFile(name=name, kind=kind, covers_until=T0 + timedelta(minutes=minutes))


def history(timeline: int, parent: int, begins: str) -> WalFile:
    return WalFile(name=f"{timeline:08X}.history", kind="history", timeline=timeline, parent_timeline=parent,
                   end_lsn=begins, covers_until=T0)


def test_a_base_backup_reaches_as_far_as_its_wal_is_contiguous():
    found = reach(base(), load_lineage([wal("000000010000000000000002", 1), wal("000000010000000000000003", 2),
                                        wal("000000010000000000000005", 9),
                                        wal("000000010000000000000004", 4, "partial")]))
    assert [w.name for w in found.wal][-1] == "000000010000000000000004"
    assert found.until == T0 + timedelta(minutes=4)  # the gap after 4 ends it; 5 is not used
    assert reach(base(), load_lineage([])).until is None  # its own WAL not archived: not consistent yet


def test_the_wal_is_followed_across_a_failover_from_the_segment_where_the_new_timeline_begins():
    rows = [wal("000000010000000000000002", 1), wal("000000010000000000000003", 2),
            wal("000000010000000000000004", 3),  # the old primary went on writing after the switch: not ours
            history(2, 1, "0/4000A28"), wal("000000020000000000000004", 5), wal("000000020000000000000005", 6)]
    found = reach(base(), load_lineage(rows))
    assert [w.name for w in found.wal] == ["000000010000000000000002", "000000010000000000000003",
                                           "000000020000000000000004", "000000020000000000000005"]
    assert found.timeline == 2 and [h.name for h in found.histories] == ["00000002.history"]
    assert found.until == T0 + timedelta(minutes=6)


def test_a_missing_switch_segment_on_the_new_timeline_ends_the_reach_there():
    rows = [wal("000000010000000000000002", 1), wal("000000010000000000000003", 2), history(2, 1, "0/4000A28"),
            wal("000000020000000000000005", 6)]
    found = reach(base(), load_lineage(rows))
    assert found.until == T0 + timedelta(minutes=2) and found.timeline == 2


def test_a_timeline_that_branched_before_the_base_backup_is_not_followed():
    rows = [wal("000000010000000000000002", 1), wal("000000010000000000000003", 2), history(2, 1, "0/1000A28"),
            wal("000000020000000000000003", 7)]
    found = reach(base(), load_lineage(rows))
    assert found.timeline == 1 and found.until == T0 + timedelta(minutes=2)


def test_retention_keeps_the_newest_and_every_parent_a_kept_incremental_needs():
    target = SimpleNamespace(keep_last=1, keep_days=0)
    full = base(id="full", started_at=T0)
    incremental = base(id="incr", kind="incremental", parent_id="full", started_at=T0 + timedelta(days=1))
    old = base(id="old", started_at=T0 - timedelta(days=7))
    assert kept_base_backups([old, full, incremental], target, T0 + timedelta(days=2)) == {"incr", "full"}
    target.keep_days = 30
    assert kept_base_backups([old, full, incremental], target, T0 + timedelta(days=2)) == {"incr", "full", "old"}


def test_a_partial_file_cut_short_while_padded_is_removed_before_the_receiver_starts(tmp_path):
    from backup_app.core.wal import SEGMENT_SIZE
    from backup_app.jobs.receivers import Receiver

    receiver = Receiver(SimpleNamespace(config={"BACKUP_DIR": str(tmp_path)}), "shop", "host:1:a")
    receiver.spool.mkdir(parents=True)
    (receiver.spool / "000000010000000000000008.partial").write_bytes(b"\0" * 3063808)
    (receiver.spool / "000000010000000000000009.partial").write_bytes(b"")
    whole = receiver.spool / "000000010000000000000007.partial"
    with open(whole, "wb") as f:
        f.truncate(SEGMENT_SIZE)
    receiver.drop_half_padded()
    assert sorted(p.name for p in receiver.spool.iterdir()) == ["000000010000000000000007.partial",
                                                                "000000010000000000000009.partial"]


def test_a_gap_between_base_backups_splits_the_window():
    first = Reach(base(id="a", finished_at=T0), [], T0 + timedelta(hours=1))
    second = Reach(base(id="b", finished_at=T0 + timedelta(minutes=30)), [], T0 + timedelta(hours=2))
    third = Reach(base(id="c", finished_at=T0 + timedelta(hours=5)), [], T0 + timedelta(hours=6))
    assert ranges([third, first, second]) == [(T0, T0 + timedelta(hours=2)),
                                              (T0 + timedelta(hours=5), T0 + timedelta(hours=6))]


def test_retention_keeps_the_newest_recoverable_base_backup_even_past_keep_last():
    target = SimpleNamespace(keep_last=1, keep_days=0)
    usable = base(id="usable", started_at=T0)
    newest = base(id="newest", started_at=T0 + timedelta(days=1))  # its WAL has not all arrived
    assert kept_base_backups([usable, newest], target, T0 + timedelta(days=2), {"usable"}) == {"usable", "newest"}


def test_the_archive_is_contiguous_up_to_its_first_hole():
    from backup_app.core.wal import SEGMENT_SIZE
    from backup_app.services.pitr.window import extent

    segments = {w.name: w for w in (wal("000000010000000000000002", 1), wal("000000010000000000000003", 2))}
    partial = WalFile(name="000000010000000000000004", kind="partial", end_lsn="0/4000500")
    assert extent("shop", segments, {}, base()).end == 4 * SEGMENT_SIZE
    found = extent("shop", segments, {partial.name: partial}, base())
    assert (found.end, found.missing, found.problem()) == (0x4000500, None, None)
    segments["000000010000000000000005"] = wal("000000010000000000000005", 9)  # stored after a hole
    found = extent("shop", segments, {partial.name: partial}, base())
    assert (found.end, found.missing) == (0x4000500, "000000010000000000000004")
    assert found.problem().startswith("WAL segment 000000010000000000000004 is not archived while later WAL is")
    assert extent("shop", segments, {}, None).missing == "000000010000000000000004"  # no base backup yet
    assert extent("shop", {}, {}, None).end is None
