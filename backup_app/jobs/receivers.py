"""The WAL receivers `flask worker` runs: one pg_receivewal per PITR target across all workers.

A worker runs a receiver only while it holds the target's lease (a WalReceiver row whose
`holder` it set by a compare-and-set). Its own thread renews the leases every second, whatever
the uploads are doing, so a slow store never lets one lapse; a lease not renewed for
PITR_LEASE_SECONDS is taken over by another worker. pg_receivewal writes into a spool
folder (BACKUP_DIR/pitr/spool/<target>); every completed segment and history file there is
archived into every store and then removed from the spool, by the worker that owns the folder
whether or not it still holds the lease (after a takeover nobody else has those segments), and
the segment being filled is uploaded as a partial copy once its flushed end moved and
WAL_PARTIAL_UPLOAD_SECONDS passed. A receiver that exits is restarted with back-off; its error
is kept in the target's status. A hole in the archive (WAL stored after a segment that is not)
is notified by the lease holder.
"""
import fcntl
import logging
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from flask import Flask
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from backup_app import wiring
from backup_app.adapters.physical import PhysicalClient, drop_slot, system_identifier, wal_positions
from backup_app.core.wal import HISTORY_NAME, SEGMENT_NAME, SEGMENT_SIZE, format_lsn, parse_lsn, segment_end_lsn
from backup_app.errors import BackupError
from backup_app.extensions import db
from backup_app.models import (
    FAILING,
    PARTIAL_SEGMENT,
    SEGMENT,
    STOPPED,
    STREAMING,
    Target,
    WalFile,
    WalReceiver,
    utcnow,
)
from backup_app.services import events
from backup_app.services.pitr import archive, lineage
from backup_app.services.pitr.setup import physical_client
from backup_app.services.pitr.window import archived

log = logging.getLogger(__name__)
TICK_SECONDS = 1.0
RENEW_SECONDS = 1.0
MAX_BACKOFF = 60.0
MAX_SAMPLES = 3600
REPAIR_SECONDS = 10
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# What pg_receivewal says when the server cannot stream from the position asked.
UNREACHABLE_WAL = ("has already been removed", "is not in this server's history")


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def spool_folder(backup_dir: str, target: str, lineage: str | None = None) -> Path:
    """Where pg_receivewal writes a target's WAL: a folder per cluster (lineage)."""
    folder = Path(backup_dir) / "pitr" / "spool" / target
    return folder / lineage if lineage else folder



def take_lease(session: Session, target: str, holder: str, lease_seconds: int) -> bool:
    """Hold (or keep holding) `target`'s receiver lease; False if another live worker holds it."""
    now = utcnow()
    if session.get(WalReceiver, target) is None:
        session.add(WalReceiver(target=target, state=STOPPED))
        try:
            session.commit()
        except Exception:  # noqa: BLE001 - another worker added it first
            session.rollback()
    result = session.execute(
        update(WalReceiver).where(
            WalReceiver.target == target,
            or_(WalReceiver.holder.is_(None), WalReceiver.holder == holder,
                WalReceiver.heartbeat_at < now - timedelta(seconds=lease_seconds)))
        .values(holder=holder, heartbeat_at=now).execution_options(synchronize_session=False))
    session.commit()
    return result.rowcount == 1


def renew_lease(session: Session, target: str, holder: str) -> bool:
    """Move the heartbeat of a lease `holder` holds; False when another worker has taken it over."""
    result = session.execute(update(WalReceiver).where(WalReceiver.target == target, WalReceiver.holder == holder)
                             .values(heartbeat_at=utcnow()).execution_options(synchronize_session=False))
    session.commit()
    return result.rowcount == 1


def release_lease(session: Session, target: str, holder: str) -> None:
    session.execute(update(WalReceiver).where(WalReceiver.target == target, WalReceiver.holder == holder)
                    .values(holder=None, heartbeat_at=None, state=STOPPED)
                    .execution_options(synchronize_session=False))
    session.commit()


class Receiver:
    """One target's pg_receivewal (while its worker holds the lease) and the archiving of what it
    wrote into this worker's spool (always)."""

    def __init__(self, app: Flask, target: str, holder: str):
        self.app, self.target, self.holder = app, target, holder
        self.spool = spool_folder(app.config["BACKUP_DIR"], target)
        self.process: subprocess.Popen | None = None
        self.log_path = self.spool.parent / f"{target}.receivewal.log"
        self.restart_at = 0.0
        self.backoff = 1.0
        self.last_partial_at = 0.0
        self.repair_at = 0.0
        self.hole: str | None = None  # the missing segment last notified
        self.lineage: str | None = None
        self.from_now = False  # the server cannot continue the archive: stream from its position now (see `seed`)
        self.leased = threading.Event()  # set while this worker holds the lease
        # (when, the server's WAL write position then), a sample a tick: the WAL written before a
        # moment is archived once the archive holds everything up to the position sampled then.
        self.samples: list[tuple[datetime, int]] = []

    def step(self, session: Session) -> None:
        """Keep pg_receivewal running and archive what it completed (the lease holder's work)."""
        target = session.scalar(select(Target).where(Target.name == self.target))
        if target is None:
            return
        self.use_lineage(target.pitr_system_identifier)
        if target.encrypt and wiring.master_key() is None:
            self.set_state(session, FAILING, f"{self.target} encrypts its backups but APP_ENCRYPTION_KEY is not "
                                             "set: its WAL is not archived until it is")
            return
        conn = wiring.target_conn(self.target)
        flushed = self.sample(conn, target.pitr_slot)
        self.archive_spool(session, target.encrypt, holding=True)
        if self.process is not None and self.process.poll() is not None:
            self.exited(session)
        if self.process is None and time.monotonic() >= self.restart_at and self.leased.is_set():
            self.start(session, target, conn)
        if self.process is not None and flushed is not None and self.leased.is_set():
            self.upload_partial(session, flushed, target.encrypt)
        if time.monotonic() >= self.repair_at:  # a store that was down gets what it missed
            self.repair_at = time.monotonic() + REPAIR_SECONDS
            archive.repair_missing(session, self.target, wiring.pitr_stores(), limit=64)
            self.notify_hole(session)

    def drain(self, session: Session) -> None:
        """Archive the completed files in this worker's spool without holding the lease: after a
        takeover the new holder streams from the slot's position, past what is spooled here."""
        if not self.completed():
            return
        target = session.scalar(select(Target).where(Target.name == self.target))
        if target is not None and not (target.encrypt and wiring.master_key() is None):
            self.use_lineage(target.pitr_system_identifier)
            self.archive_spool(session, target.encrypt, holding=False)

    def sample(self, conn, slot: str) -> str | None:
        """Note the server's WAL position now; the slot's flushed position (None: no answer)."""
        try:
            server_now, current, flushed = wal_positions(conn, slot)
        except Exception:  # noqa: BLE001 - the server is away: the receiver's own error says so
            return None
        self.samples = [*self.samples[-MAX_SAMPLES + 1:], (server_now, parse_lsn(current))]
        return flushed

    def covered_until(self, position: str) -> tuple[datetime, str | None]:
        """The last sampled moment whose WAL is all at or before `position`, and the server's WAL
        insert position sampled then ((EPOCH, None) if none is)."""
        reached = parse_lsn(position)
        when, at = max(((when, at) for when, at in self.samples if at <= reached), default=(EPOCH, None))
        return when, None if at is None else format_lsn(at)


    def use_lineage(self, lineage: str | None) -> None:
        """Spool into the folder of the cluster archived now; WAL spooled before lineages were
        recorded is that cluster's."""
        if lineage == self.lineage:
            return
        root = spool_folder(self.app.config["BACKUP_DIR"], self.target)
        self.lineage, self.spool = lineage, spool_folder(self.app.config["BACKUP_DIR"], self.target, lineage)
        self.from_now = False
        if lineage and root.is_dir():
            self.spool.mkdir(parents=True, exist_ok=True)
            for path in root.iterdir():
                if path.is_file() and (SEGMENT_NAME.fullmatch(path.name.removesuffix(".partial"))
                                       or HISTORY_NAME.fullmatch(path.name)):
                    path.rename(self.spool / path.name)

    def start(self, session: Session, target: Target, conn) -> None:
        try:
            lineage.follow(session, target, system_identifier(conn), conn.display())
            self.use_lineage(target.pitr_system_identifier)
            self.spool.mkdir(parents=True, exist_ok=True)
            self.drop_half_padded()
            self.drop_archived_partials(session)
            client: PhysicalClient = physical_client(wiring.pg_tools(), conn)
            slot = target.pitr_slot
            from_now = self.from_now
            if from_now:
                # The archive cannot continue here: stream from the server's position now. The slot's
                # own may lie where the server cannot read any more (before a promotion's switch point,
                # in a segment it renamed .partial), so it is made again without one.
                self.set_spool_aside(session)
                drop_slot(conn, slot)
            else:
                self.seed(session)
            client.create_slot(conn, slot, reserve=not from_now)  # also when the server lost it (a failover)
            with open(self.log_path, "ab") as log_file:
                self.process = client.receive_wal(conn, slot, self.spool, log_file)
        except BackupError as exc:
            self.failed(session, str(exc), alarm=isinstance(exc, lineage.ClusterChanged))
            return
        self.set_state(session, STREAMING, None)
        log.info("WAL receiver of %s started (pid %s)", self.target, self.process.pid)

    def seed(self, session: Session) -> None:
        """When the spool holds no WAL, put the newest archived segment there: pg_receivewal then
        resumes right after it, on its timeline, following the server's timeline switches (a new
        primary after a failover streams the old timeline up to where it branched), instead of
        starting where a new slot begins."""
        if any(SEGMENT_NAME.fullmatch(p.name.removesuffix(".partial")) for p in self.spool.iterdir()):
            return
        newest = archive.newest_segment(session, self.target, self.lineage)
        if newest is None:
            return
        key = wiring.master_key() if newest.filename.endswith(".enc") else None
        partial = self.spool / f"{newest.name}.partial"
        partial.write_bytes(archive.fetch(newest, wiring.pitr_stores(), key))
        partial.rename(self.spool / newest.name)

    def set_spool_aside(self, session: Session) -> None:
        """Make pg_receivewal start where the server is, not from the spool: the segments being filled
        are renamed (kept for inspection), completed ones that are archived whole removed."""
        for path in self.spool.glob("*.partial"):
            path.rename(path.with_name(path.name + ".abandoned"))
        for name in self.completed():
            if SEGMENT_NAME.fullmatch(name) and self.archived_whole(session, name):
                (self.spool / name).unlink()
        self.from_now = False

    def drop_half_padded(self) -> None:
        """Remove a `.partial` file that pg_receivewal was still padding with zeros when it was killed:
        it holds no WAL yet (the padding comes first), and pg_receivewal refuses to start beside it."""
        for path in self.spool.glob("*.partial"):
            if path.stat().st_size not in (0, SEGMENT_SIZE):
                log.warning("WAL receiver of %s: removing %s, cut short while it was being made", self.target, path)
                path.unlink()

    def drop_archived_partials(self, session: Session) -> None:
        """Remove a `.partial` file whose segment is archived whole (another worker streamed it while
        this one did not hold the lease): pg_receivewal would start over from it, asking the server
        for WAL it may have recycled."""
        for path in self.spool.glob("*.partial"):
            if self.archived_whole(session, path.stem):
                log.info("WAL receiver of %s: removing %s, archived whole meanwhile", self.target, path)
                path.unlink()

    def archived_whole(self, session: Session, name: str) -> bool:
        return session.scalar(select(WalFile.id).where(WalFile.target == self.target, WalFile.kind == SEGMENT,
                                                       WalFile.system_identifier == self.lineage,
                                                       WalFile.name == name)) is not None

    def exited(self, session: Session) -> None:
        code = self.process.returncode
        self.process = None
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:] if self.log_path.exists() else []
        error = f"pg_receivewal exited with code {code}: " + " | ".join(tail)
        if any(lost in error for lost in UNREACHABLE_WAL):
            self.from_now = True
            error += ("; this server cannot continue the archive where it ends (it no longer has that WAL): "
                      "archiving resumes from the server's position now, leaving a hole that restores cannot cross — "
                      f"take a base backup now (flask pitr base-backup {self.target})")
        self.failed(session, error, alarm=self.from_now)

    def failed(self, session: Session, error: str, alarm: bool = False) -> None:
        log.warning("WAL receiver of %s: %s (restarting in %.0f s)", self.target, error, self.backoff)
        self.restart_at = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)
        self.set_state(session, FAILING, error, alarm)

    def set_state(self, session: Session, state: str, error: str | None, alarm: bool = False) -> None:
        """Record the receiver's state, unless another worker has taken the lease over (its state is
        its own); announce when it starts failing, or (`alarm`: only the admin can end it) when it
        fails for a new reason while already failing."""
        row = session.get(WalReceiver, self.target, populate_existing=True)
        if row is None or row.holder != self.holder:
            return
        newly_failing = state == FAILING and (row.state != FAILING or (alarm and row.error != error))
        row.state, row.error = state, error
        session.commit()
        if newly_failing:
            events.announce(events.wal_receiver_failing, row)

    def completed(self) -> list[str]:
        """The completed segments and history files in the spool, oldest first."""
        if not self.spool.is_dir():
            return []
        return sorted(p.name for p in self.spool.iterdir()
                      if SEGMENT_NAME.fullmatch(p.name) or HISTORY_NAME.fullmatch(p.name))

    @contextmanager
    def spool_lock(self) -> Iterator[bool]:
        """Whether this worker may archive from the spool now: workers sharing the folder (on one
        machine) take turns, so a file is never stored twice at once."""
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with open(self.spool.parent / f"{self.target}.lock", "ab") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True

    def archive_spool(self, session: Session, encrypt: bool, holding: bool) -> None:
        """Archive the completed files in the spool, oldest first, each removed once a store holds
        it (one no store took stays, tried again next tick); the holder records how it went."""
        with self.spool_lock() as mine:
            if not mine:
                return
            try:
                error, stored, alarm = *self.archive_completed(session, encrypt), False
            except archive.WalConflict as exc:
                error, stored, alarm = str(exc), False, True
        if error:
            log.warning("WAL receiver of %s: %s", self.target, error)
        if holding and error:
            self.set_state(session, FAILING, error, alarm)
        elif holding and stored:
            self.backoff = 1.0
            self.set_state(session, STREAMING, None)

    def archive_completed(self, session: Session, encrypt: bool) -> tuple[str | None, bool]:
        """(why a file could not be stored or None, whether a segment was stored)."""
        stores, key = wiring.pitr_stores(), wiring.master_key() if encrypt else None
        stored = False
        for name in self.completed():
            covers, covers_lsn = (self.covered_until(segment_end_lsn(name)) if SEGMENT_NAME.fullmatch(name)
                                  else (None, None))
            row = archive.archive_file(session, self.target, self.lineage, self.spool / name, stores, key,
                                       covers_until=covers, covers_lsn=covers_lsn)
            if row is None:
                return f"no store took WAL file {name}; it waits in {self.spool}", stored
            (self.spool / name).unlink()
            if SEGMENT_NAME.fullmatch(name):
                receiver = session.get(WalReceiver, self.target)
                if receiver.last_segment is None or name > receiver.last_segment:
                    receiver.last_segment, receiver.last_segment_at = name, row.stored_at
                    session.commit()
                stored = True
        return None, stored

    def upload_partial(self, session: Session, flushed: str, encrypt: bool) -> None:
        """Store the segment being filled once its flushed end moved and WAL_PARTIAL_UPLOAD_SECONDS
        passed since the last upload (read after the slot's flushed position was asked, so the copy
        holds at least that much); an unchanged one is never uploaded again."""
        every = self.app.config["WAL_PARTIAL_UPLOAD_SECONDS"]
        if time.monotonic() - self.last_partial_at < every:
            return
        partials = sorted(self.spool.glob("*.partial"))
        if not partials or partials[-1].stat().st_size != SEGMENT_SIZE:
            return  # none, or pg_receivewal is still padding a new one with zeros
        self.last_partial_at = time.monotonic()
        covers, covers_lsn = self.covered_until(flushed)
        stored = archive.current_partial(session, self.target, self.lineage, partials[-1].stem)
        if stored is not None and stored.end_lsn == flushed:
            if covers > stored.covers_until:  # nothing new: the copy still holds it all
                stored.covers_until, stored.covers_lsn = covers, covers_lsn
                session.commit()
            return
        stores, key = wiring.pitr_stores(), wiring.master_key() if encrypt else None
        try:
            archive.archive_file(session, self.target, self.lineage, partials[-1], stores, key, kind=PARTIAL_SEGMENT,
                                 covers_until=covers, covers_lsn=covers_lsn, end_lsn=flushed)
        except FileNotFoundError:
            return  # completed meanwhile: the next tick archives it whole
        except archive.WalConflict as exc:
            self.set_state(session, FAILING, str(exc), alarm=True)

    def notify_hole(self, session: Session) -> None:
        """Tell once about each hole in the archive (WAL stored after a segment that is not)."""
        found = archived(session, self.target, self.lineage)
        if found.missing is not None and found.missing != self.hole:
            log.warning("WAL archive of %s: %s", self.target, found.problem())
            events.announce(events.wal_archive_hole, found)
        self.hole = found.missing

    def lease_lost(self) -> None:
        """Another worker took the lease over (called from the renewing thread): end pg_receivewal at
        once, so the new holder can stream; `stop` or the next step collects it."""
        self.leased.clear()
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class ReceiverSupervisor(threading.Thread):
    """Takes the leases of the PITR targets and runs a Receiver for each one held; a second
    thread renews the leases held, so a long upload never lets one lapse."""

    def __init__(self, app: Flask, holder: str | None = None):
        super().__init__(name="wal-receivers", daemon=True)
        self.app = app
        self.holder = holder or worker_identity()
        self.receivers: dict[str, Receiver] = {}
        self._stopping = threading.Event()
        self._renewer = threading.Thread(target=self.renew_leases, name="wal-leases", daemon=True)

    def run(self) -> None:
        self._renewer.start()
        while not self._stopping.is_set():
            with self.app.app_context():
                try:
                    self.tick(db.session)
                except Exception:  # noqa: BLE001 - the next tick tries again
                    log.exception("WAL receivers: tick failed")
                    db.session.rollback()
                finally:
                    db.session.remove()
            self._stopping.wait(TICK_SECONDS)
        self._renewer.join()
        with self.app.app_context():
            self.release_all(db.session)
            db.session.remove()

    def tick(self, session: Session) -> None:
        enabled = set(session.scalars(select(Target.name).where(Target.pitr_enabled.is_(True))))
        for name in sorted(enabled | set(self.receivers)):
            receiver = self.receivers.setdefault(name, Receiver(self.app, name, self.holder))
            if name in enabled and self.hold(session, receiver):
                receiver.step(session)
                continue
            receiver.stop()  # turned off, or another worker holds the lease
            if name not in enabled:
                self.release(session, receiver)
                del self.receivers[name]
            receiver.drain(session)

    def hold(self, session: Session, receiver: Receiver) -> bool:
        """Whether this worker holds the receiver's lease, taking it when it is free or has lapsed."""
        if not receiver.leased.is_set():
            if not take_lease(session, receiver.target, self.holder, self.app.config["PITR_LEASE_SECONDS"]):
                return False
            receiver.leased.set()
        return True

    def release(self, session: Session, receiver: Receiver) -> None:
        receiver.leased.clear()
        release_lease(session, receiver.target, self.holder)

    def renew_leases(self) -> None:
        """Every RENEW_SECONDS, renew the leases held; a receiver whose lease was taken over meanwhile
        is told at once (its pg_receivewal ends, so the new holder can stream)."""
        while not self._stopping.wait(RENEW_SECONDS):
            held = [receiver for receiver in list(self.receivers.values()) if receiver.leased.is_set()]
            with self.app.app_context():
                try:
                    lost = [receiver for receiver in held if not renew_lease(db.session, receiver.target, self.holder)]
                except Exception:  # noqa: BLE001 - the catalog is away: tried again in a second
                    log.exception("WAL receivers: renewing the leases failed")
                    db.session.rollback()
                    lost = []
                finally:
                    db.session.remove()
            for receiver in lost:
                log.warning("WAL receiver of %s: another worker took the lease over", receiver.target)
                receiver.lease_lost()

    def release_all(self, session: Session) -> None:
        """On the way out: stop each pg_receivewal, hand its lease over, then store what it spooled."""
        for receiver in self.receivers.values():
            receiver.stop()
            self.release(session, receiver)
            receiver.drain(session)
        self.receivers.clear()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=60)
