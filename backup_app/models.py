"""The catalog: one row per backup, one row per place a copy of it lives."""
import secrets
import string
from datetime import datetime, timezone

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from .extensions import db

ID_FIRST = string.ascii_lowercase
ID_REST = string.ascii_lowercase + string.digits

# Backup.status
RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
# BackupCopy.location
LOCAL, S3 = "local", "s3"
# BackupCopy.status
PRESENT, MISSING, COPY_FAILED = "present", "missing", "failed"


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


class Backup(db.Model):
    __tablename__ = "backups"

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
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    copies: Mapped[list["BackupCopy"]] = relationship(
        back_populates="backup", cascade="all, delete-orphan", lazy="selectin",
        order_by="BackupCopy.location",
    )

    def copy(self, location: str) -> "BackupCopy | None":
        """This backup's copy at `location`, if the catalog has one."""
        return next((c for c in self.copies if c.location == location), None)

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
            "copies": [c.to_dict() for c in self.copies],
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
    error: Mapped[str | None] = mapped_column(Text)

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
    from_env: Mapped[bool] = mapped_column(Boolean, default=False)
    schedule: Mapped[str | None] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    schedule_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    keep_days: Mapped[int] = mapped_column(Integer, default=30)
    keep_last: Mapped[int] = mapped_column(Integer, default=3)
    gfs_daily: Mapped[int] = mapped_column(Integer, default=0)
    gfs_weekly: Mapped[int] = mapped_column(Integer, default=0)
    gfs_monthly: Mapped[int] = mapped_column(Integer, default=0)
    format: Mapped[str] = mapped_column(String(16), default="custom")
    codec: Mapped[str] = mapped_column(String(16), default="gzip")
    encrypt: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_dict(self) -> dict:
        """The JSON shape of `flask targets list --json`; never the password."""
        return {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "sslmode": self.sslmode,
            "has_password": self.password_encrypted is not None,
            "from_env": self.from_env,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "schedule_enabled": self.schedule_enabled,
            "next_run_at": isoformat(self.next_run_at),
            "keep_days": self.keep_days,
            "keep_last": self.keep_last,
            "gfs": [self.gfs_daily, self.gfs_weekly, self.gfs_monthly],
            "format": self.format,
            "codec": self.codec,
            "encrypt": self.encrypt,
        }


def isoformat(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
