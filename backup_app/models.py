"""The catalog: one row per backup, one row per place a copy of it lives."""
import secrets
import string
from datetime import datetime, timezone

from sqlalchemy import BigInteger, DateTime, ForeignKey, String, Text, UniqueConstraint
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
    """A timezone-aware UTC datetime on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value else None

    def process_result_value(self, value, dialect):
        return value.replace(tzinfo=timezone.utc) if value is not None else None


class Backup(db.Model):
    __tablename__ = "backups"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    filename: Mapped[str] = mapped_column(String(255), unique=True)
    database: Mapped[str] = mapped_column(String(255), index=True)
    format: Mapped[str] = mapped_column(String(16), default="custom")
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    storage_url: Mapped[str | None] = mapped_column(String(1024))
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
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "storage_url": self.storage_url,
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


def isoformat(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
