"""The catalog: backups and their copies; the jobs that make and restore them; users."""
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timezone

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, foreign, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from backup_app.core.codecs import GLOBALS  # noqa: F401 - Backup.format of a backup of a server's roles
from backup_app.core.conninfo import ConnInfo
from backup_app.core.formatting import clip
from backup_app.extensions import db

ID_FIRST = string.ascii_lowercase
ID_REST = string.ascii_lowercase + string.digits

# Backup.status
RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
# BackupCopy.location
LOCAL, S3 = "local", "s3"
# BackupCopy.status
PRESENT, MISSING, COPY_FAILED = "present", "missing", "failed"
# User.role and ApiToken.role, lowest first
VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)
# Job.kind
CREATE, RESTORE, VERIFY, PRUNE, SYNC = "create", "restore", "verify", "prune", "sync"
DELETE, DOWNLOAD, IMPORT = "delete", "download", "import"
RESTORE_SET = "restore-set"
# Job.status: QUEUED, RUNNING, COMPLETED, FAILED, or INTERRUPTED (its worker died mid-job)
QUEUED, INTERRUPTED = "queued", "interrupted"
ACTIVE_JOB_STATUSES = (QUEUED, RUNNING)


def new_id(length: int = 12) -> str:
    """A short random id of lowercase letters and digits that starts with a letter."""
    return secrets.choice(ID_FIRST) + "".join(secrets.choice(ID_REST) for _ in range(length - 1))


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores `timestamptz` and answers in the session's time zone; SQLite drops
    the zone, so it is given and read back as naive UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


# Characters kept of an error, an outcome or a job's log line (its head and tail, see clip): a
# failure that quotes a huge output, or a request that sends one, never grows the catalog unbounded.
TEXT_MAX = 10_000


class ClippedText(TypeDecorator):
    """Text cut to `limit` characters as it is written (ORM and Core alike)."""

    impl = Text
    cache_ok = True

    def __init__(self, limit: int = TEXT_MAX):
        super().__init__()
        self.limit = limit

    def process_bind_param(self, value, dialect):
        return None if value is None else clip(value, self.limit)


class ClippedString(TypeDecorator):
    """VARCHAR(length) whose values are cut to fit as they are written, for text the app records
    as it comes (an audit event's actor and subject): too long is shortened, never a failed write."""

    impl = String
    cache_ok = True

    def __init__(self, length: int):
        super().__init__(length)
        self.length = length

    def process_bind_param(self, value, dialect):
        return None if value is None else clip(value, self.length)


@dataclass(frozen=True)
class BackupFile:
    """A backup's stored bytes as plain values: what writing, reading, uploading or restoring
    them needs. Taken before the bytes stream, so no catalog transaction stays open meanwhile."""

    id: str
    filename: str
    database: str
    format: str
    codec: str
    encrypted: bool
    created_at: datetime
    sha256: str | None = None
    size_bytes: int | None = None
    server_version: str | None = None
    client_version: str | None = None
    row_counts: dict | None = None
    set_id: str | None = None
    source_database: str | None = None


class Backup(db.Model):
    __tablename__ = "backups"
    # The list page filters by database or status and sorts newest first.
    __table_args__ = (
        Index("ix_backups_created_id", "created_at", "id"),
        Index("ix_backups_database_created", "database", "created_at", "id"),
        Index("ix_backups_status_created", "status", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    filename: Mapped[str] = mapped_column(String(255), unique=True)
    database: Mapped[str] = mapped_column(String(255), index=True)
    format: Mapped[str] = mapped_column(String(16), default="custom")
    codec: Mapped[str] = mapped_column(String(16), default="gzip", server_default="gzip")
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    storage_url: Mapped[str | None] = mapped_column(String(1024))
    server_version: Mapped[str | None] = mapped_column(String(32))  # of the dumped server, e.g. "15.18"
    client_version: Mapped[str | None] = mapped_column(String(32))  # of the pg_dump that made it
    status: Mapped[str] = mapped_column(String(16), default=RUNNING, index=True)
    error: Mapped[str | None] = mapped_column(ClippedText())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Exact rows per table, counted in pg_dump's own snapshot; verify compares against them.
    row_counts: Mapped[dict | None] = mapped_column(JSON)
    # A server target's run makes a set: one backup per database (`source_database`) and one of the
    # globals, all with the same set_id. `database` stays the target's name.
    set_id: Mapped[str | None] = mapped_column(String(32), index=True)
    source_database: Mapped[str | None] = mapped_column(String(255))
    # What the dumped database was like (owner, encoding, locale, settings, grants; DatabaseShape's
    # fields): a set restore creates a missing database like it.
    database_shape: Mapped[dict | None] = mapped_column(JSON)
    notes: Mapped[str | None] = mapped_column(ClippedText())  # e.g. role passwords left out, and why

    copies: Mapped[list["BackupCopy"]] = relationship(
        back_populates="backup", cascade="all, delete-orphan", lazy="selectin",
        order_by="BackupCopy.location",
    )
    # Deleting a backup keeps its verifications (their backup_id emptied): they are the history.
    verifications: Mapped[list["Verification"]] = relationship(
        back_populates="backup", order_by="Verification.started_at.desc()",
    )

    @property
    def last_verification(self) -> "Verification | None":
        return self.verifications[0] if self.verifications else None

    @property
    def shown_status(self) -> str:
        """What the pages say it is: its status, except that a completed backup with a copy that
        failed or is missing is "copy failed" / "copy missing" (shown as a failure)."""
        broken = [copy.status for copy in self.copies if copy.status != PRESENT]
        if self.status == COMPLETED and broken:
            return f"copy {COPY_FAILED if COPY_FAILED in broken else MISSING}"
        return self.status

    def copy(self, location: str) -> "BackupCopy | None":
        """This backup's copy at `location`, if the catalog has one."""
        return next((c for c in self.copies if c.location == location), None)

    def file(self) -> BackupFile:
        return BackupFile(self.id, self.filename, self.database, self.format, self.codec, self.encrypted,
                          self.created_at, self.sha256, self.size_bytes, self.server_version,
                          self.client_version, self.row_counts, self.set_id, self.source_database)

    def to_dict(self) -> dict:
        """The JSON shape shared by the CLI's --json and the API."""
        return {
            "id": self.id,
            "filename": self.filename,
            "database": self.database,
            "format": self.format,
            "codec": self.codec,
            "encrypted": self.encrypted,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "storage_url": self.storage_url,
            "server_version": self.server_version,
            "client_version": self.client_version,
            "status": self.status,
            "error": self.error,
            "created_at": isoformat(self.created_at),
            "completed_at": isoformat(self.completed_at),
            "row_counts": self.row_counts,
            "set_id": self.set_id,
            "source_database": self.source_database,
            "notes": self.notes,
            "copies": [c.to_dict() for c in self.copies],
            "last_verification": self.last_verification.to_dict() if self.last_verification else None,
        }


class BackupCopy(db.Model):
    __tablename__ = "backup_copies"
    __table_args__ = (UniqueConstraint("backup_id", "location"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    backup_id: Mapped[str] = mapped_column(ForeignKey("backups.id", ondelete="CASCADE"), index=True)
    location: Mapped[str] = mapped_column(String(32))
    uri: Mapped[str] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(ClippedText())

    backup: Mapped[Backup] = relationship(back_populates="copies")

    def to_dict(self) -> dict:
        return {
            "location": self.location,
            "status": self.status,
            "uri": self.uri,
            "size_bytes": self.size_bytes,
            "verified_at": isoformat(self.verified_at),
            "error": self.error,
        }


class Verification(db.Model):
    """One restore-verify run of a backup: every copy's SHA-256, then a restore into a scratch database.
    It outlives the backup (backup_id then empty): the database and file name stay."""

    __tablename__ = "verifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    backup_id: Mapped[str | None] = mapped_column(ForeignKey("backups.id", ondelete="SET NULL"), index=True)
    database: Mapped[str | None] = mapped_column(String(255), index=True)  # the backup's target
    backup_filename: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=RUNNING)  # running / passed / failed
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    tables: Mapped[dict | None] = mapped_column(JSON)  # rows per table in the restored copy
    error: Mapped[str | None] = mapped_column(ClippedText())

    backup: Mapped[Backup | None] = relationship(back_populates="verifications")

    @property
    def rows(self) -> int:
        """Rows restored, all tables together."""
        return sum((self.tables or {}).values())

    def summary(self) -> str:
        """'restorable, 2 tables, 4000 rows, in 1.2 s'."""
        return (f"restorable, {len(self.tables or {})} tables, {self.rows} rows, "
                f"in {self.duration_seconds or 0:.1f} s")

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "started_at": isoformat(self.started_at),
            "finished_at": isoformat(self.finished_at),
            "duration_seconds": self.duration_seconds,
            "tables": self.tables,
            "error": self.error,
        }


class Target(db.Model):
    """A database the app backs up, with its schedule, retention and storage settings.

    The target named by BACKUP_DATABASE_URL has `from_env` set: its connection is read from
    the environment on every use and nothing of it is stored.
    """

    __tablename__ = "targets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    user: Mapped[str | None] = mapped_column(String(255))
    dbname: Mapped[str] = mapped_column(String(255))
    sslmode: Mapped[str | None] = mapped_column(String(32))
    password_encrypted: Mapped[str | None] = mapped_column(Text)
    # The server its verifications restore into (a URL, encrypted: it may carry a password); None:
    # VERIFY_DATABASE_URL's, else its own.
    verify_url_encrypted: Mapped[str | None] = mapped_column(Text)
    from_env: Mapped[bool] = mapped_column(Boolean, default=False)
    # A server target: each run backs up every database of the server (`dbname` is only where it
    # connects to list them) but those in `exclude_databases` (one name per line), and its globals.
    all_databases: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    exclude_databases: Mapped[str | None] = mapped_column(Text)
    schedule: Mapped[str | None] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    schedule_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # A restore-verify of the newest completed backup, on its own cron (same time zone).
    verify_schedule: Mapped[str | None] = mapped_column(String(120))
    verify_next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    keep_days: Mapped[int] = mapped_column(Integer, default=30)
    keep_last: Mapped[int] = mapped_column(Integer, default=3)
    gfs_daily: Mapped[int] = mapped_column(Integer, default=0)
    gfs_weekly: Mapped[int] = mapped_column(Integer, default=0)
    gfs_monthly: Mapped[int] = mapped_column(Integer, default=0)
    format: Mapped[str] = mapped_column(String(16), default="custom")
    codec: Mapped[str] = mapped_column(String(16), default="gzip")
    encrypt: Mapped[bool] = mapped_column(Boolean, default=False)
    # Apprise URLs (one per line) told about this target, besides the global NOTIFY_URLS.
    notify_urls: Mapped[str | None] = mapped_column(Text)
    notify_on_success: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Alert when the newest completed backup is older than this (None: STALE_AFTER_HOURS).
    stale_after_hours: Mapped[int | None] = mapped_column(Integer)
    stale_alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Point-in-time recovery: WAL streamed through a replication slot, base backups on their own
    # cron, and a drill that restores "latest" on another (same time zone).
    pitr_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    pitr_slot: Mapped[str | None] = mapped_column(String(63))
    # The cluster whose WAL is archived now (its system identifier): a server at the target's address
    # with another one is not archived until `pitr enable --new-cluster` starts a new lineage.
    pitr_system_identifier: Mapped[str | None] = mapped_column(String(20))
    base_schedule: Mapped[str | None] = mapped_column(String(120))
    base_next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pitr_verify_schedule: Mapped[str | None] = mapped_column(String(120))
    pitr_verify_next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pitr_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pitr_verified_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pitr_verify_error: Mapped[str | None] = mapped_column(ClippedText())

    def to_dict(self) -> dict:
        """The JSON shape of `flask targets list --json`; never the password."""
        return {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "all_databases": self.all_databases,
            "exclude": self.excluded,
            "sslmode": self.sslmode,
            "has_password": self.password_encrypted is not None,
            "from_env": self.from_env,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "schedule_enabled": self.schedule_enabled,
            "next_run_at": isoformat(self.next_run_at),
            "verify_schedule": self.verify_schedule,
            "verify_next_run_at": isoformat(self.verify_next_run_at),
            "keep_days": self.keep_days,
            "keep_last": self.keep_last,
            "gfs": [self.gfs_daily, self.gfs_weekly, self.gfs_monthly],
            "format": self.format,
            "codec": self.codec,
            "encrypt": self.encrypt,
            "notify_urls": len((self.notify_urls or "").split()),
            "notify_on_success": self.notify_on_success,
            "stale_after_hours": self.stale_after_hours,
            "pitr": self.pitr_enabled,
            "base_schedule": self.base_schedule,
            "pitr_verify_schedule": self.pitr_verify_schedule,
        }

    @property
    def excluded(self) -> list[str]:
        """The databases a server target leaves out."""
        return (self.exclude_databases or "").splitlines()

    def display(self, env_url: str | None) -> str:
        """The connection as a URL without its password."""
        if self.from_env:
            return ConnInfo.from_url(env_url).display() if env_url else "BACKUP_DATABASE_URL (not set)"
        if self.all_databases:
            return ConnInfo("", self.host, self.port, self.user).display() + " (every database)"
        return ConnInfo(self.dbname, self.host, self.port, self.user).display()


class PeriodicRun(db.Model):
    """When an app-wide periodic job (the daily prune, the sync) is next due.

    Claimed by a compare-and-set on `next_run_at`, like a target's schedule, so several
    workers never queue one run twice. `schedule` is the cron it was computed from.
    """

    __tablename__ = "periodic_runs"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    schedule: Mapped[str] = mapped_column(String(120))
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class JobProgress:
    """Bytes done of a phase, of how many expected (None: unknown), at what rate (bytes/s)."""

    done: int
    total: int | None
    rate: float | None

    @property
    def percent(self) -> int | None:
        """Done of total, at most 99 until the phase ends (the total is an estimate)."""
        return min(99, int(100 * self.done / self.total)) if self.total else None

    @property
    def seconds_left(self) -> float | None:
        if not (self.total and self.rate) or self.done >= self.total:
            return None
        return (self.total - self.done) / self.rate


class Job(db.Model):
    """A create, restore, verify, prune, sync, delete or download; the pages poll it for progress."""

    __tablename__ = "jobs"
    # At most one queued or running job per slot (a target database, a backup, all backups),
    # enforced by the catalog itself: migration 0010 makes "uq_jobs_active_slot" a unique index
    # WHERE status IN ('queued', 'running'). It is not declared here, because a postgresql_where
    # argument loads SQLAlchemy's whole PostgreSQL dialect (~25 ms) into every command, SQLite or not.

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    phase: Mapped[str] = mapped_column(String(64), default="queued")
    database: Mapped[str] = mapped_column(String(255))
    # What the job works on, shown: the database as a URL without its password, "all backups", …
    target: Mapped[str] = mapped_column(ClippedString(1024))
    # What it holds: a database by its server's identity and name, however its URL spells them
    # (`system 7714…/shop`), `backup <id>`, or `all backups`.
    slot: Mapped[str] = mapped_column(String(1024))
    # The PostgreSQL server it talks to, as `host:port` (None: none, S3 and files only): a
    # worker runs at most all but one of its threads' jobs on one server at a time.
    server: Mapped[str | None] = mapped_column(String(1024))
    # What the job was asked, beyond its kind and target (a restore's in_place/drop_previous, …).
    options: Mapped[dict | None] = mapped_column(JSON)
    backup_id: Mapped[str | None] = mapped_column(String(32), index=True)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    # What the current phase is expected to move (None: unknown), and when that phase began:
    # the pages' percentage, rate and time left.
    bytes_total: Mapped[int | None] = mapped_column(BigInteger)
    phase_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[str | None] = mapped_column(ClippedText())
    error: Mapped[str | None] = mapped_column(ClippedText())
    log: Mapped[str] = mapped_column(ClippedText(), default="")
    # host:pid of the worker running it, so a restarted worker can tell its dead jobs.
    worker: Mapped[str | None] = mapped_column(String(255))
    # Written every JOB_HEARTBEAT_SECONDS while it runs, so any worker can tell a job whose
    # process is gone, on whatever machine it ran.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # The backup may be deleted later; the job stays as history.
    backup: Mapped[Backup | None] = relationship(
        primaryjoin=lambda: foreign(Job.backup_id) == Backup.id, viewonly=True, lazy="selectin")

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_JOB_STATUSES

    def elapsed_seconds(self, now: datetime | None = None) -> float | None:
        """Run time so far (or in all, once finished)."""
        if self.started_at is None:
            return None
        end = self.finished_at or now or utcnow()
        return round((end - self.started_at).total_seconds(), 1)

    def progress(self, now: datetime | None = None) -> "JobProgress | None":
        """How far the current phase is, while the job runs and moves bytes (None otherwise)."""
        if self.status != RUNNING or not self.bytes_done:
            return None
        since = self.phase_started_at or self.started_at
        seconds = ((now or utcnow()) - since).total_seconds() if since else 0
        return JobProgress(self.bytes_done, self.bytes_total, self.bytes_done / seconds if seconds > 0 else None)

    def to_dict(self) -> dict:
        """The JSON shape of the API."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "phase": self.phase,
            "database": self.database,
            "target": self.target,
            "backup_id": self.backup_id,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "result": self.result,
            "error": self.error,
            "created_at": isoformat(self.created_at),
            "started_at": isoformat(self.started_at),
            "finished_at": isoformat(self.finished_at),
            "elapsed_seconds": self.elapsed_seconds(),
        }


class PreviousDatabase(db.Model):
    """A database a restore replaced, kept under another name (`shop_before_restore_<time>`)
    until `drop_after` (None: until it is dropped by hand)."""

    __tablename__ = "previous_databases"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    database: Mapped[str] = mapped_column(String(255))  # the database it was, and the restore replaced
    server: Mapped[str] = mapped_column(String(1024))   # where it is: postgresql://user@host:port/
    # How the worker reaches it to drop it: the target the backup was restored into, or the
    # URL the restore was given (encrypted with APP_ENCRYPTION_KEY when it is set).
    target: Mapped[str | None] = mapped_column(String(100))
    url_encrypted: Mapped[str | None] = mapped_column(Text)
    backup_id: Mapped[str | None] = mapped_column(String(32))  # None: a point-in-time restore's (job_id)
    job_id: Mapped[str | None] = mapped_column(String(32))
    kept_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    drop_after: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    dropped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(ClippedText())  # why the last attempt to drop it failed

    def to_dict(self) -> dict:
        return {"name": self.name, "database": self.database, "server": self.server,
                "backup_id": self.backup_id, "job_id": self.job_id, "kept_at": isoformat(self.kept_at),
                "drop_after": isoformat(self.drop_after), "dropped_at": isoformat(self.dropped_at),
                "error": self.error}


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("sso_issuer", "sso_subject", name="uq_users_sso_identity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # None for a user who signs in only through single sign-on.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=ADMIN, server_default=ADMIN)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Part of the id a signed-in session holds (get_id); signing out raises it, so every session
    # signed in before, a copied cookie too, no longer loads the user.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The single sign-on identity (the provider's issuer and its `sub` for this person) the user is
    # bound to at their first SSO sign-in: later sign-ins find them by it, not by email.
    sso_issuer: Mapped[str | None] = mapped_column(String(255))
    sso_subject: Mapped[str | None] = mapped_column(String(255))
    # Two-factor sign-in (services/two_factor.py): the TOTP secret, sealed ("enc:" a Fernet token under
    # APP_ENCRYPTION_KEY, or "plain:" when no key is set); on only once enrolment is confirmed
    # (totp_enabled_at); the time step of the last code accepted, so no code is accepted twice.
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)

    tokens: Mapped[list["ApiToken"]] = relationship(back_populates="user", cascade="all, delete-orphan")
    recovery_codes: Mapped[list["RecoveryCode"]] = relationship(cascade="all, delete-orphan")

    def get_id(self) -> str:
        """What flask-login keeps in the session: `<id>:<session_version>`."""
        return f"{self.id}:{self.session_version}"

    @property
    def is_active(self) -> bool:  # flask-login: a disabled user cannot sign in
        return not self.disabled

    @property
    def two_factor_on(self) -> bool:
        """Whether signing in with the password also needs a code (enrolment confirmed)."""
        return self.totp_enabled_at is not None

    def to_dict(self) -> dict:
        return {"email": self.email, "role": self.role, "disabled": self.disabled,
                "created_at": isoformat(self.created_at), "last_sign_in_at": isoformat(self.last_sign_in_at)}


class ApiToken(db.Model):
    """An API token; only its SHA-256 is kept, the token itself is shown once. It acts with its
    user's current role, or the lower of that and its own `role` when it has one."""

    __tablename__ = "api_tokens"
    # Never reuse a revoked token's id on SQLite either: `revoke-token ID` and the audit log name tokens by it.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="token", server_default="token")
    role: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="tokens", lazy="joined")

    @property
    def acting_role(self) -> str:
        """The role it acts with now: its user's, or the lower of that and its own."""
        return min(filter(None, (self.user.role, self.role)), key=ROLES.index)

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "role": self.role, "created_at": isoformat(self.created_at),
                "expires_at": isoformat(self.expires_at), "last_used_at": isoformat(self.last_used_at)}


class RecoveryCode(db.Model):
    """A two-factor recovery code: only its SHA-256 is kept (the code is shown once); using it deletes it."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))


class LoginFailure(db.Model):
    """Recent failed sign-ins per email and per client address, to slow guessing down
    (services/login_throttle.py)."""

    __tablename__ = "login_failures"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SignInAddress(db.Model):
    """An address a user has signed in from: while that address is slowed for its failures, this
    user's password from it is still checked (services/login_throttle.py)."""

    __tablename__ = "sign_in_addresses"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    address: Mapped[str] = mapped_column(String(100), primary_key=True)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AppSetting(db.Model):
    """A setting made in the pages (e.g. the notification URLs for every target), by name."""

    __tablename__ = "app_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)


def isoformat(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


class AuditEvent(db.Model):
    """Who did what, when, from where, and how it went. Never deleted; the one update: the event of an
    action that queued a job is rewritten as failed when the job fails."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(ClippedString(255), index=True)     # a user's email, "cli", "anonymous"
    action: Mapped[str] = mapped_column(String(64), index=True)            # create, restore, sign-in-failed, …
    subject: Mapped[str] = mapped_column(ClippedString(1024), default="")  # a backup id, a database, …
    address: Mapped[str | None] = mapped_column(ClippedString(64))         # the client's IP address (web)
    detail: Mapped[str | None] = mapped_column(ClippedText())              # outcome: ok, refused: …, failed: …
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)     # the job the action queued

    def to_dict(self) -> dict:
        return {"at": isoformat(self.at), "actor": self.actor, "action": self.action, "subject": self.subject,
                "address": self.address, "detail": self.detail, "job_id": self.job_id}


# WalFile.kind
SEGMENT, HISTORY, PARTIAL_SEGMENT = "segment", "history", "partial"
# BaseBackup.kind
FULL, INCREMENTAL = "full", "incremental"
# WalReceiver.state
STREAMING, STOPPED, FAILING = "streaming", "stopped", "failing"


def copies_list(copies: dict | None) -> list[dict]:
    """`{location: {status, uri, …}}` as the JSON list `[{location, status, uri}]`."""
    return [{"location": location, "status": copy["status"], "uri": copy.get("uri")}
            for location, copy in sorted((copies or {}).items())]


class WalFile(db.Model):
    """A WAL segment, a timeline history file, or the segment being filled (`partial`, one per
    target, replaced as it grows), stored compressed in every store under `filename`."""

    __tablename__ = "wal_files"
    __table_args__ = (UniqueConstraint("target", "system_identifier", "name", "kind",
                                       name="uq_wal_files_lineage_name_kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    target: Mapped[str] = mapped_column(String(100), index=True)
    system_identifier: Mapped[str | None] = mapped_column(String(20))  # the cluster (lineage) it is WAL of
    name: Mapped[str] = mapped_column(String(64))   # as PostgreSQL names it: 000000010000000000000003
    kind: Mapped[str] = mapped_column(String(16), default=SEGMENT)
    timeline: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)    # stored (compressed) bytes
    sha256: Mapped[str] = mapped_column(String(64))        # of the stored bytes
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # The WAL written before this moment is in this file or an earlier one: a segment's completion
    # time; for the partial segment, when the flushed position `end_lsn` was read.
    covers_until: Mapped[datetime] = mapped_column(UTCDateTime)
    # The server's WAL insert position at covers_until: every commit made before that moment is at
    # or before it, so a restore to it must replay that far (None: archived before it was recorded).
    covers_lsn: Mapped[str | None] = mapped_column(String(32))
    end_lsn: Mapped[str | None] = mapped_column(String(32))  # a history file: where its timeline begins
    parent_timeline: Mapped[int | None] = mapped_column(Integer)  # a history file: the timeline it branched from
    # {location: {"status": present|failed, "uri": …, "error": …}}
    copies: Mapped[dict] = mapped_column(JSON, default=dict)


class BaseBackup(db.Model):
    """A `pg_basebackup` of a PITR target's whole server: a tar, compressed (and encrypted when the
    target encrypts), in every store; an incremental names the backup it builds on."""

    __tablename__ = "base_backups"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    target: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(16), default=FULL)
    system_identifier: Mapped[str | None] = mapped_column(String(20))  # the cluster (lineage) it is of
    parent_id: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=RUNNING)
    error: Mapped[str | None] = mapped_column(ClippedText())
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    start_lsn: Mapped[str | None] = mapped_column(String(32))
    end_lsn: Mapped[str | None] = mapped_column(String(32))
    timeline: Mapped[int | None] = mapped_column(Integer)
    server_version: Mapped[str | None] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(255), unique=True)
    codec: Mapped[str] = mapped_column(String(16), default="zstd")
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    manifest: Mapped[str | None] = mapped_column(Text)  # the server's backup_manifest (JSON text)
    copies: Mapped[dict] = mapped_column(JSON, default=dict)

    def to_dict(self) -> dict:
        """The JSON shape of `flask pitr base-backup --json` and of `status`'s base backups."""
        return {"id": self.id, "target": self.target, "kind": self.kind, "parent_id": self.parent_id,
                "status": self.status, "error": self.error, "started_at": isoformat(self.started_at),
                "finished_at": isoformat(self.finished_at), "start_lsn": self.start_lsn,
                "end_lsn": self.end_lsn, "timeline": self.timeline, "system_identifier": self.system_identifier,
                "server_version": self.server_version,
                "size_bytes": self.size_bytes, "sha256": self.sha256, "copies": copies_list(self.copies)}


class WalReceiver(db.Model):
    """The lease and the state of one target's WAL receiver: at most one worker holds it; another
    takes it over once `heartbeat_at` is older than the lease."""

    __tablename__ = "wal_receivers"

    target: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default=STOPPED)
    error: Mapped[str | None] = mapped_column(ClippedText())
    last_segment: Mapped[str | None] = mapped_column(String(64))
    last_segment_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stored_lsn: Mapped[str | None] = mapped_column(String(32))


class StorageAlert(db.Model):
    """A location over its size limit (STORAGE_ALERT_BYTES) since `since`: told once when it
    crossed; the row goes when it is under again, so the next crossing is told again."""

    __tablename__ = "storage_alerts"

    location: Mapped[str] = mapped_column(String(32), primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
