"""How far a restore must replay: the WAL position the archive recorded for a moment, where the
restored server's replay ended (its new timeline's history file), and the error naming the WAL
file that could not be read — no servers."""
import hashlib
import io
import os
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from backup_app.adapters.local import LocalStorage
from backup_app.core.wal import parse_lsn, record_boundary, replay_stop_reason, switch_point
from backup_app.errors import PitrError
from backup_app.jobs.receivers import EPOCH, Receiver
from backup_app.models import PRESENT, WalFile
from backup_app.services.pitr import archive
from backup_app.services.pitr.restore import check_replayed, fetch_wal, needed_position, replay_end, wal_needed
from backup_app.services.pitr.window import Reach

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
A, B, C = "000000010000000000000003", "000000010000000000000004", "000000010000000000000005"


def wal(name: str, minutes: int, covers_lsn: str | None = None) -> WalFile:
    return WalFile(name=name, kind="segment", covers_until=T0 + timedelta(minutes=minutes), covers_lsn=covers_lsn)


def promoted(data_dir, history: str, log: str = "LOG:  selected new timeline ID: 2\n") -> SimpleNamespace:
    """A restored server, as far as the check reads one: its log and its data directory."""
    (data_dir / "pg_wal").mkdir(exist_ok=True)
    (data_dir / "pg_wal" / "00000002.history").write_text(history)
    return SimpleNamespace(data_dir=data_dir, log=lambda: log)


def test_a_moment_needs_the_position_recorded_for_the_first_file_that_covers_it():
    files = [wal(A, 1, "0/3001000"), wal(B, 2, "0/4002000"), wal(C, 3, "0/5003000")]
    reach = Reach(None, files, files[-1].covers_until)
    assert wal_needed(reach, T0 + timedelta(minutes=1, seconds=30)) == files[:2]
    assert wal_needed(reach, T0 + timedelta(minutes=2)) == files[:2]
    assert wal_needed(reach, None) == files  # latest: the last file's
    assert needed_position(files[1]) == parse_lsn("0/4002000")
    assert needed_position(wal(B, 2)) == parse_lsn("0/4000000")  # archived before positions were: its start


def test_an_insert_position_just_past_a_page_header_counts_as_the_page_start():
    """The server's insert position after a segment switch, or after a record that filled its
    page, is past the next page's header; replay's end is the page's start."""
    assert record_boundary(parse_lsn("0/4000028")) == parse_lsn("0/4000000")  # a segment's long header
    assert record_boundary(parse_lsn("0/4002018")) == parse_lsn("0/4002000")  # a page's short header
    assert record_boundary(parse_lsn("0/4002020")) == parse_lsn("0/4002020")  # a record may end there
    assert record_boundary(parse_lsn("0/4001A38")) == parse_lsn("0/4001A38")


def test_the_receiver_records_the_position_it_sampled_at_the_moment_a_file_covers():
    receiver = Receiver(SimpleNamespace(config={"BACKUP_DIR": "/nowhere"}), "shop", "this-worker")
    receiver.samples = [(T0, parse_lsn("0/3000100")), (T0 + timedelta(seconds=1), parse_lsn("0/3FFFF00")),
                        (T0 + timedelta(seconds=2), parse_lsn("0/4000028"))]
    assert receiver.covered_until("0/4000000") == (T0 + timedelta(seconds=1), "0/3FFFF00")
    assert receiver.covered_until("0/3000000") == (EPOCH, None)


def test_where_replay_ended_is_read_from_the_new_timelines_history_file(tmp_path):
    history = "1\t0/4000000\tno recovery target specified\n"
    assert replay_end(promoted(tmp_path, history)) == (1, parse_lsn("0/4000000"))
    # PostgreSQL 18 pads the low half; a history of several switches ends with the newest.
    assert switch_point("1\t0/03000000\tbefore 2026-12-01\n\n2\t0/050000A8\tno recovery target specified\n") == \
        (2, parse_lsn("0/50000A8"))
    with pytest.raises(PitrError, match="cannot tell where the restored server's replay ended: its log names no"):
        replay_end(promoted(tmp_path, history, log="LOG:  database system is ready to accept connections\n"))


@pytest.mark.parametrize("planted", ["link", "fifo"])
def test_the_history_file_is_never_read_through_a_link_or_from_a_pipe(tmp_path, planted):
    outside = tmp_path / "outside"
    outside.write_text("1\tFFFF/0\tlie\n")
    data_dir = tmp_path / "data"
    (data_dir / "pg_wal").mkdir(parents=True)
    history = data_dir / "pg_wal" / "00000002.history"
    if planted == "link":
        history.symlink_to(outside)
    else:
        os.mkfifo(history)  # a read of it would wait for a writer for ever
    server = SimpleNamespace(data_dir=data_dir, log=lambda: "LOG:  selected new timeline ID: 2\n")
    with pytest.raises(PitrError, match="cannot tell where the restored server's replay ended"):
        replay_end(server)


def test_replay_short_of_the_moments_position_names_the_file_it_stopped_in(tmp_path):
    files = [wal(A, 1, "0/3001000"), wal(B, 2, "0/4002000")]
    reach = Reach(None, files, files[-1].covers_until)
    log = ("LOG:  unexpected pageaddr 0/5000000 in log segment 000000010000000000000004, offset 0\n"
           "LOG:  redo done at 0/3FFFF60 system usage: CPU: user: 0.00 s\n"
           "LOG:  selected new timeline ID: 2\n")
    short = promoted(tmp_path, "1\t0/4000000\tno recovery target specified\n", log)
    with pytest.raises(PitrError) as error:
        check_replayed(short, reach, files, "2026-12-01T12:02:00Z")
    assert str(error.value) == (
        f"WAL file {B} could not be read: recovery to 2026-12-01T12:02:00Z needs the WAL up to 0/4002000, but "
        "replay ended at 0/4000000; the archive lists it and its copy was fetched intact, but it does not hold the "
        f"WAL that belongs there (the server: unexpected pageaddr 0/5000000 in log segment {B}, offset 0). The "
        "restored server was stopped and its files deleted")

    check_replayed(short, reach, files[:1], "2026-12-01T12:01:00Z")  # the earlier moment is reached
    exact = promoted(tmp_path, "1\t0/4002000\tno recovery target specified\n", log)
    check_replayed(exact, reach, files, "2026-12-01T12:02:00Z")


def test_a_file_past_the_archive_is_said_to_be_unlisted(tmp_path):
    files = [wal(A, 1, "0/3001000"), wal(B, 2, "0/4FFF000")]
    beyond = promoted(tmp_path, "1\t0/2FFFF00\tno recovery target specified\n")
    with pytest.raises(PitrError, match="WAL file 000000010000000000000002 could not be read: .*the archive does "
                                        "not list it"):
        check_replayed(beyond, Reach(None, files, None), files, "the latest moment")


def test_the_server_logs_why_replay_stopped_just_before_redo_done():
    assert replay_stop_reason("LOG:  invalid record length at 0/4000A8: wanted 24, got 0\n"
                              "LOG:  redo done at 0/4000030 system usage: ...\n") == \
        "invalid record length at 0/4000A8: wanted 24, got 0"
    assert replay_stop_reason("LOG:  restored log file \"000000010000000000000004\" from archive\n"
                              "LOG:  redo done at 0/4000030\n") is None
    assert replay_stop_reason("LOG:  database system is ready\n") is None


def stored(store: LocalStorage, name: str, data: bytes) -> WalFile:
    encoded = archive.encode_wal(data, None)
    filename = archive.stored_name("shop", "7000000000000000001", name, "segment", False)
    store.put(filename, io.BytesIO(encoded))
    return WalFile(target="shop", name=name, kind="segment", filename=filename, size_bytes=len(encoded),
                   sha256=hashlib.sha256(encoded).hexdigest(), copies={"local": {"status": PRESENT}})


def test_a_file_after_the_needed_ones_may_be_missing_but_a_needed_one_may_not(tmp_path):
    store = LocalStorage(tmp_path / "pitr")
    files = [stored(store, A, b"a"), stored(store, B, b"b"), stored(store, C, b"c")]
    store.delete(files[2].filename)
    into = tmp_path / "wal"
    into.mkdir()

    fetch_wal(files, 2, [store], None, into, "2026-12-01T12:02:00Z")
    assert sorted(p.name for p in into.iterdir()) == [A, B] and (into / B).read_bytes() == b"b"

    store.delete(files[1].filename)
    with pytest.raises(PitrError) as error:
        fetch_wal(files, 2, [store], None, tmp_path / "wal", "2026-12-01T12:02:00Z")
    assert str(error.value).startswith(f"WAL file {B} could not be read: recovery to 2026-12-01T12:02:00Z needs "
                                       f"it, and the archive lists it, but no intact copy of WAL file {B} of shop: "
                                       "local: ")

