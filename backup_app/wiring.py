"""The app's adapters, built from its configuration the first time each is needed and then kept
for the app's life (in app.extensions): the CLI, the views and the jobs share them."""
from functools import cached_property
from pathlib import Path

from flask import Flask, current_app

from backup_app.adapters.local import LocalStorage
from backup_app.adapters.pgtools import PgTools
from backup_app.adapters.store import PITR_FOLDER, Store
from backup_app.core.conninfo import ConnInfo, set_require_auth
from backup_app.core.crypto import MasterKey
from backup_app.errors import ConfigurationError, UnknownDatabase
from backup_app.extensions import db
from backup_app.models import LOCAL, S3, PreviousDatabase, Target
from backup_app.services import targets as target_service
from backup_app.services.allowed_hosts import parse_hosts
from backup_app.services.backups.restore import check_restore_host


class Adapters:
    """The local folder, the S3 stores, the PostgreSQL clients and the master key of one app."""

    def __init__(self, config):
        self.config = config

    @cached_property
    def local(self) -> LocalStorage:
        return LocalStorage(self.config["BACKUP_DIR"])

    @cached_property
    def stores(self) -> list[Store]:
        """Every configured S3 store: MINIO_*'s first (if MINIO_ENDPOINT is set), then S3_STORES'.
        Empty means local-only mode (and minio is never imported)."""
        config = self.config
        if not (config.get("MINIO_ENDPOINT") or config.get("S3_STORES")):
            return []
        from backup_app.adapters.s3 import S3Storage

        stores = []
        if config.get("MINIO_ENDPOINT"):
            stores.append(S3Storage.connect(
                config["MINIO_ENDPOINT"], config.get("MINIO_ACCESS_KEY"), config.get("MINIO_SECRET_KEY"),
                bucket=config["MINIO_BUCKET"], secure=config.get("MINIO_SECURE", False),
                region=config.get("MINIO_REGION"), part_size=config["MINIO_PART_SIZE"]))
        for store in config.get("S3_STORES", []):
            prefix = f"S3_{store['name'].upper()}_"
            stores.append(S3Storage.connect(
                store["endpoint"], store["access_key"], store["secret_key"], bucket=store["bucket"],
                secure=store["secure"], region=store["region"], part_size=config["MINIO_PART_SIZE"],
                location=f"{S3}:{store['name']}", key_settings=f"{prefix}ACCESS_KEY and {prefix}SECRET_KEY"))
        return stores

    @cached_property
    def pitr_stores(self) -> list[Store]:
        """Where WAL and base backups are kept: BACKUP_DIR/pitr, then `pitr/` in each S3 store."""
        return [LocalStorage(Path(self.config["BACKUP_DIR"]) / PITR_FOLDER),
                *(store.with_prefix(PITR_FOLDER) for store in self.stores)]

    @cached_property
    def pg(self) -> PgTools:
        """The PostgreSQL clients of PG_BIN_DIR, or every one found on this machine (each asked its
        version once)."""
        return PgTools.discover(self.config.get("PG_BIN_DIR"), self.config["RESTORE_LOCK_TIMEOUT"])

    @cached_property
    def key(self) -> MasterKey | None:
        """The APP_ENCRYPTION_KEY, or None when it is not set (encryption unavailable)."""
        value = self.config.get("APP_ENCRYPTION_KEY")
        return MasterKey(value) if value else None


def init_app(app: Flask) -> None:
    set_require_auth(app.config["PG_REQUIRE_AUTH"])
    app.extensions["backup_app.adapters"] = Adapters(app.config)


def adapters() -> Adapters:
    return current_app.extensions["backup_app.adapters"]


def local_storage() -> LocalStorage:
    return adapters().local


def s3_stores() -> list[Store]:
    return adapters().stores


def pitr_stores() -> list[Store]:
    return adapters().pitr_stores


def pg_tools() -> PgTools:
    return adapters().pg


def master_key() -> MasterKey | None:
    return adapters().key


def password_hash_method() -> str:
    """werkzeug's method for new password hashes (PASSWORD_HASH_METHOD)."""
    return current_app.config["PASSWORD_HASH_METHOD"]


def copy_locations() -> list[str]:
    """Where backups can have copies: local, s3 (even when unset), then each of S3_STORES."""
    return [LOCAL, S3, *(f"{S3}:{store['name']}" for store in current_app.config.get("S3_STORES", []))]


def storage_alert_limits() -> dict[str, int]:
    """The size each location may grow to before it is alerted about (see STORAGE_ALERT_BYTES)."""
    config = current_app.config
    everywhere = config.get("STORAGE_ALERT_BYTES")
    own = {S3: config.get("MINIO_ALERT_BYTES"),
           **{f"{S3}:{store['name']}": store.get("alert_bytes") for store in config.get("S3_STORES", [])}}
    limits = {location: own.get(location) or everywhere for location in copy_locations()}
    return {location: limit for location, limit in limits.items() if limit}


def env_url() -> str | None:
    return current_app.config.get("BACKUP_DATABASE_URL")


def notify_allowed_hosts() -> tuple[str, ...] | None:
    """The hosts notifications may reach (NOTIFY_ALLOWED_HOSTS); None: any."""
    return parse_hosts(current_app.config.get("NOTIFY_ALLOWED_HOSTS"))


def restore_allowed_hosts() -> tuple[str, ...]:
    """The hosts a restore may go to besides those the targets name (RESTORE_ALLOWED_HOSTS)."""
    return parse_hosts(current_app.config.get("RESTORE_ALLOWED_HOSTS")) or ()


def target(name: str | None = None) -> Target:
    """The target called `name`, or the default target (BACKUP_DATABASE_URL's)."""
    return target_service.resolve_target(db.session, name, env_url())


def dump_spec(name: str | None = None) -> target_service.DumpSpec:
    return target_service.dump_spec(target(name), env_url(), master_key())


def import_settings(name: str) -> tuple[str, bool]:
    """(codec, encrypt) for a dump imported as `name`: its target's when a target has that name, else
    the defaults for a label (which must look like a target's name)."""
    try:
        found = target(name)
    except UnknownDatabase:
        if not target_service.TARGET_NAME.fullmatch(name or ""):
            raise ConfigurationError(f"{name!r} cannot name an imported backup: give a target's name, or a label "
                                     "of letters, digits, '_', '.' and '-' (at most 100)") from None
        return "gzip", False
    return found.codec, found.encrypt


def target_conn(name: str) -> ConnInfo:
    """How to connect to the target called `name` (a backup's own database, for restore)."""
    return target_service.target_conn(target(name), env_url(), master_key())


def verify_conn(database: str) -> ConnInfo:
    """Where verifications of `database`'s backups restore into (see targets.verify_conn)."""
    verify_url = current_app.config.get("VERIFY_DATABASE_URL")
    try:
        found = target(database)
    except UnknownDatabase:
        if not verify_url:
            raise
        found = None  # a removed target's backups can still be verified there
    return target_service.verify_conn(found, verify_url, env_url(), master_key())


def restore_conn(database: str, target_url: str | None, into_target: str | None = None,
                 as_database: str | None = None) -> ConnInfo:
    """Where a restore of a backup of `database` goes: `target_url`, if a target names its host or
    RESTORE_ALLOWED_HOSTS lists it (HostNotAllowed otherwise), else the target `into_target`
    (default: the backup's own), with its stored credentials, into its own database or `as_database`."""
    if not target_url:
        conn = target_conn(into_target or database)
        return conn.with_dbname(as_database) if as_database else conn
    if into_target or as_database:
        raise ConfigurationError("give a connection URL, or a target and a database name, not both")
    conn = ConnInfo.from_url(target_url)
    check_restore_host(conn, [target.host for target in all_targets()], restore_allowed_hosts())
    return conn


def set_restore_conn(target_name: str, target_url: str | None) -> ConnInfo:
    """The server a set of `target_name` is restored onto: `target_url`'s (checked as restore_conn
    checks it; the database it names is only where to connect first), else the target's own."""
    if not target_url:
        return target_conn(target_name)
    conn = ConnInfo.from_url(target_url, default_dbname="postgres")
    check_restore_host(conn, [target.host for target in all_targets()], restore_allowed_hosts())
    return conn


def all_targets() -> list[Target]:
    """Every target, BACKUP_DATABASE_URL's included."""
    return target_service.list_targets(db.session, env_url())


def previous_conn(kept: PreviousDatabase) -> ConnInfo:
    """How to reach the server of a database a restore kept: its target's connection, the
    restore's own URL (stored encrypted), else the server's URL without a password."""
    if kept.target:
        return target_conn(kept.target)
    key = master_key()
    if kept.url_encrypted and key:
        return ConnInfo.from_url(key.decrypt_secret(kept.url_encrypted))
    return ConnInfo.from_url(kept.server + "postgres")
