"""Builds the adapters from the app's configuration; the CLI, views and jobs share these."""
from flask import current_app

from .adapters.postgres import PgTools
from .adapters.storage import LocalStorage, S3Storage
from .services.targets import Target, configured_targets, resolve_target


def local_storage() -> LocalStorage:
    return LocalStorage(current_app.config["BACKUP_DIR"])


def s3_storage() -> S3Storage | None:
    """The S3 store, or None when MINIO_ENDPOINT is unset (local-only mode)."""
    config = current_app.config
    if not config.get("MINIO_ENDPOINT"):
        return None
    return S3Storage.connect(
        config["MINIO_ENDPOINT"], config.get("MINIO_ACCESS_KEY"), config.get("MINIO_SECRET_KEY"),
        bucket=config["MINIO_BUCKET"], secure=config.get("MINIO_SECURE", False),
        region=config.get("MINIO_REGION"), part_size=config["MINIO_PART_SIZE"])


def pg_tools() -> PgTools:
    return PgTools(current_app.config.get("PG_BIN_DIR"))


def targets() -> dict[str, Target]:
    return configured_targets(current_app.config.get("BACKUP_DATABASE_URL"))


def target(name: str | None = None) -> Target:
    """The target called `name`, or the default target."""
    return resolve_target(targets(), name)
