"""The WAL receivers `flask worker` runs: one pg_receivewal per PITR target across all workers.

A worker runs a receiver only while it holds the target's lease (a WalReceiver row whose
`holder` it set by a compare-and-set, renewed every few seconds); a lease not renewed for
PITR_LEASE_SECONDS is taken over by another worker. pg_receivewal writes into a spool
folder (BACKUP_DIR/pitr/spool/<target>); every completed segment and history file there is
archived into every store and then removed from the spool, and the segment being filled is
uploaded as a partial copy every WAL_PARTIAL_UPLOAD_SECONDS. A receiver that exits is
restarted with back-off; its error is kept in the target's status.
"""
import logging
import os
import socket
import subprocess
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from flask import Flask
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from backup_app import wiring
from backup_app.adapters.physical import PhysicalClient, system_identifier, wal_positions
from backup_app.core.wal import HISTORY_NAME, SEGMENT_NAME, SEGMENT_SIZE, format_lsn, parse_lsn, segment_end_lsn
from backup_app.errors import BackupError
from backup_app.extensions import db
from backup_app.models import FAILING, PARTIAL_SEGMENT, STOPPED, STREAMING, Target, WalReceiver, utcnow
from backup_app.services import events
from backup_app.services.pitr import archive, lineage
from backup_app.services.pitr.setup import physical_client

log = logging.getLogger(__name__)
TICK_SECONDS = 1.0
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


def release_lease(session: Session, target: str, holder: str) -> None:
    session.execute(update(WalReceiver).where(WalReceiver.target == target, WalReceiver.holder == holder)
                    .values(holder=None, heartbeat_at=None, state=STOPPED)
                    .execution_options(synchronize_session=False))
    session.commit()


class Receiver:
    """One target's pg_receivewal and the archiving of what it writes."""

    def __init__(self, app: Flask, target: str):
        self.app, self.target = app, target
        self.spool = spool_folder(app.config["BACKUP_DIR"], target)
        self.process: subprocess.Popen | None = None
        self.log_path = self.spool.parent / f"{target}.receivewal.log"
        self.restart_at = 0.0
        self.backoff = 1.0
        self.last_partial_at = 0.0
        self.repair_at = 0.0
        self.encrypt = False
        self.lineage: str | None = None
        self.from_slot = False  # the server cannot continue the archive: stream from the slot (see `seed`)
        # (when, the server's WAL write position then), a sample a tick: the WAL written before a
        # moment is archived once the archive holds everything up to the position sampled then.
        self.samples: list[tuple[datetime, int]] = []

    def step(self, session: Session) -> None:
        """Keep pg_receivewal running and archive what it completed."""
        target = session.scalar(select(Target).where(Target.name == self.target))
        if target is None:
            return
        self.encrypt = target.encrypt
        self.use_lineage(target.pitr_system_identifier)
        if target.encrypt and wiring.master_key() is None:
            self.set_state(session, FAILING, f"{self.target} encrypts its backups but APP_ENCRYPTION_KEY is not "
                                             "set: its WAL is not archived until it is")
            return
        conn = wiring.target_conn(self.target)
        flushed = self.sample(conn, target.pitr_slot)
        self.archive_completed(session)
        if self.process is not None and self.process.poll() is not None:
            self.exited(session)
        if self.process is None and time.monotonic() >= self.restart_at:
            self.start(session, target, conn)
        if self.process is not None and flushed is not None:
            self.upload_partial(session, flushed)
        if time.monotonic() >= self.repair_at:  # a store that was down gets what it missed
            self.repair_at = time.monotonic() + REPAIR_SECONDS
            archive.repair_missing(session, self.target, wiring.pitr_stores(), limit=64)

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
        self.from_slot = False
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
            if self.from_slot:
                self.set_spool_aside()
            else:
                self.seed(session)
            client: PhysicalClient = physical_client(wiring.pg_tools(), conn)
            slot = target.pitr_slot
            client.create_slot(conn, slot)  # if the server lost it (a failover, a rebuild): made again
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

    def set_spool_aside(self) -> None:
        """Rename the segments being filled in the spool (kept for inspection), so pg_receivewal
        starts from the slot, not from them."""
        for path in self.spool.glob("*.partial"):
            path.rename(path.with_name(path.name + ".abandoned"))
        self.from_slot = False

    def drop_half_padded(self) -> None:
        """Remove a `.partial` file that pg_receivewal was still padding with zeros when it was killed:
        it holds no WAL yet (the padding comes first), and pg_receivewal refuses to start beside it."""
        for path in self.spool.glob("*.partial"):
            if path.stat().st_size not in (0, SEGMENT_SIZE):
                log.warning("WAL receiver of %s: removing %s, cut short while it was being made", self.target, path)
                path.unlink()

    def exited(self, session: Session) -> None:
        code = self.process.returncode
        self.process = None
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:] if self.log_path.exists() else []
        error = f"pg_receivewal exited with code {code}: " + " | ".join(tail)
        if any(lost in error for lost in UNREACHABLE_WAL):
            self.from_slot = True
            error += ("; this server cannot continue the archive where it ends (it no longer has that WAL): "
                      "archiving resumes from its replication slot, leaving a hole that restores cannot cross — "
                      f"take a base backup now (flask pitr base-backup {self.target})")
        self.failed(session, error, alarm=self.from_slot)

    def failed(self, session: Session, error: str, alarm: bool = False) -> None:
        log.warning("WAL receiver of %s: %s (restarting in %.0f s)", self.target, error, self.backoff)
        self.restart_at = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)
        self.set_state(session, FAILING, error, alarm)

    def set_state(self, session: Session, state: str, error: str | None, alarm: bool = False) -> None:
        """Record the receiver's state; announce when it starts failing, or (`alarm`: only the admin
        can end it) when it fails for a new reason while already failing."""
        row = session.get(WalReceiver, self.target)
        newly_failing = state == FAILING and (row.state != FAILING or (alarm and row.error != error))
        row.state, row.error = state, error
        session.commit()
        if newly_failing:
            events.announce(events.wal_receiver_failing, row)

    def archive_completed(self, session: Session) -> None:
        """Archive the completed segments and history files in the spool, oldest first."""
        if not self.spool.is_dir():
            return
        names = sorted(p.name for p in self.spool.iterdir()
                       if SEGMENT_NAME.fullmatch(p.name) or HISTORY_NAME.fullmatch(p.name))
        stores, key = wiring.pitr_stores(), wiring.master_key() if self.encrypt else None
        for name in names:
            covers, covers_lsn = (self.covered_until(segment_end_lsn(name)) if SEGMENT_NAME.fullmatch(name)
                                  else (None, None))
            try:
                row = archive.archive_file(session, self.target, self.lineage, self.spool / name, stores, key,
                                           covers_until=covers, covers_lsn=covers_lsn)
            except archive.WalConflict as exc:
                self.set_state(session, FAILING, str(exc), alarm=True)
                return
            if row is None:
                self.set_state(session, FAILING, f"no store took WAL file {name}; it waits in {self.spool}")
                return
            (self.spool / name).unlink()
            if SEGMENT_NAME.fullmatch(name):
                receiver = session.get(WalReceiver, self.target)
                receiver.last_segment, receiver.last_segment_at = name, row.stored_at
                receiver.stored_lsn = max_lsn(receiver.stored_lsn, segment_end_lsn(name))
                receiver.state, receiver.error = STREAMING, None
                self.backoff = 1.0
                session.commit()

    def upload_partial(self, session: Session, flushed: str | None) -> None:
        """Every WAL_PARTIAL_UPLOAD_SECONDS, store the segment being filled (read after the slot's
        flushed position was asked, so the copy holds at least that much)."""
        every = self.app.config["WAL_PARTIAL_UPLOAD_SECONDS"]
        if flushed is None or time.monotonic() - self.last_partial_at < every:
            return
        partials = sorted(self.spool.glob("*.partial"))
        if not partials or partials[-1].stat().st_size != SEGMENT_SIZE:
            return  # none, or pg_receivewal is still padding a new one with zeros
        self.last_partial_at = time.monotonic()
        covers, covers_lsn = self.covered_until(flushed)
        stored = archive.current_partial(session, self.target, self.lineage)
        if stored is not None and stored.end_lsn == flushed and stored.name == partials[-1].stem:
            if covers > stored.covers_until:  # nothing new: the copy still holds it all
                stored.covers_until, stored.covers_lsn = covers, covers_lsn
                session.commit()
            return
        stores, key = wiring.pitr_stores(), wiring.master_key() if self.encrypt else None
        try:
            row = archive.archive_file(session, self.target, self.lineage, partials[-1], stores, key,
                                       kind=PARTIAL_SEGMENT, covers_until=covers, covers_lsn=covers_lsn,
                                       end_lsn=flushed)
        except FileNotFoundError:
            return  # completed meanwhile: the next tick archives it whole
        except archive.WalConflict as exc:
            self.set_state(session, FAILING, str(exc), alarm=True)
            return
        if row is not None:
            receiver = session.get(WalReceiver, self.target)
            receiver.stored_lsn = max_lsn(receiver.stored_lsn, flushed)
            session.commit()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def max_lsn(a: str | None, b: str) -> str:
    return b if a is None or parse_lsn(b) > parse_lsn(a) else a


class ReceiverSupervisor(threading.Thread):
    """Takes and renews the leases of the PITR targets and runs a Receiver for each one held."""

    def __init__(self, app: Flask, holder: str | None = None):
        super().__init__(name="wal-receivers", daemon=True)
        self.app = app
        self.holder = holder or worker_identity()
        self.receivers: dict[str, Receiver] = {}
        self._stopping = threading.Event()

    def run(self) -> None:
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
        with self.app.app_context():
            self.release_all(db.session)
            db.session.remove()

    def tick(self, session: Session) -> None:
        lease = self.app.config["PITR_LEASE_SECONDS"]
        enabled = set(session.scalars(select(Target.name).where(Target.pitr_enabled.is_(True))))
        for name in sorted(enabled | set(self.receivers)):
            if name in enabled and take_lease(session, name, self.holder, lease):
                receiver = self.receivers.setdefault(name, Receiver(self.app, name))
                receiver.step(session)
            elif name in self.receivers:  # turned off, or another worker took the lease over
                self.receivers.pop(name).stop()
                if name not in enabled:
                    release_lease(session, name, self.holder)

    def release_all(self, session: Session) -> None:
        for name, receiver in self.receivers.items():
            receiver.stop()
            receiver.archive_completed(session)
            release_lease(session, name, self.holder)
        self.receivers.clear()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=60)
