"""Target databases: the ones the app backs up, with how and when."""
import re
from dataclasses import dataclass, replace

from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backup_app.adapters.pgtools import PgTools
from backup_app.core import codecs
from backup_app.core.conninfo import ConnInfo, require_auth, url_without_password
from backup_app.core.crypto import MasterKey, SecretUnreadable
from backup_app.core.moments import zone_info
from backup_app.core.retention import RetentionPolicy
from backup_app.errors import ConfigurationError, DumpFailed, TargetExists, UnknownDatabase
from backup_app.models import Target
from backup_app.services.allowed_hosts import check_notification_urls
from backup_app.services.schedules import check_cron, reschedule

TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class DumpSpec:
    """What to dump and how to store it: everything create_backup needs of a target."""

    name: str
    conn: ConnInfo
    format: str = "custom"
    codec: str = "gzip"
    encrypt: bool = False
    all_databases: bool = False  # a server target: `conn` names where to connect, not what to dump
    exclude: tuple[str, ...] = ()
    # One database of a set: the set, the database dumped (as `conn` names it), what it is like.
    set_id: str | None = None
    source_database: str | None = None
    database_shape: dict | None = None
    notes: str | None = None
    options: tuple[str, ...] = ()  # given to pg_dump (pg_dumpall) besides the codec's


def is_apprise_url(url: str) -> bool:
    import apprise  # here, not at the top: it is heavy and only adding a target needs it

    return bool(apprise.Apprise.instantiate(url))


@dataclass(frozen=True)
class TargetSettings:
    """A target's policy; the defaults are what `flask targets add` uses."""

    schedule: str | None = None
    timezone: str = "UTC"
    keep_days: int = 30
    keep_last: int = 3
    gfs: tuple[int, int, int] = (0, 0, 0)
    format: str = "custom"
    codec: str = "gzip"
    encrypt: bool = False
    verify_schedule: str | None = None
    schedule_enabled: bool = True
    notify_urls: tuple[str, ...] = ()
    notify_on_success: bool = False
    stale_after_hours: int | None = None
    all_databases: bool = False  # a server target (see Target.all_databases)
    exclude: tuple[str, ...] = ()

    def check(self) -> None:
        if self.exclude and not self.all_databases:
            raise ConfigurationError("--exclude names databases a server target leaves out: give --all-databases too")
        for expression in (self.schedule, self.verify_schedule):
            if expression:
                check_cron(expression)
        check_timezone(self.timezone)
        RetentionPolicy(self.keep_days, self.keep_last, *self.gfs).check()
        if self.stale_after_hours is not None and self.stale_after_hours < 1:
            raise ConfigurationError("the staleness limit is at least 1 hour")
        invalid = [url for url in self.notify_urls if not is_apprise_url(url)]
        if invalid:
            raise ConfigurationError(f"not an Apprise notification URL: {', '.join(invalid)}")
        codecs.check(self.format, self.codec)


def check_timezone(name: str) -> str:
    zone_info(name)
    return name


def list_targets(session: Session, env_url: str | None = None) -> list[Target]:
    """Every target by name, BACKUP_DATABASE_URL's included (see `env_target`)."""
    stored = list(session.scalars(select(Target).order_by(Target.name)))
    env = env_target(session, env_url)
    if env is not None and env not in stored:
        stored = sorted([*stored, env], key=lambda target: target.name)
    return stored


def get_target(session: Session, name: str, env_url: str | None = None) -> Target:
    """The target called `name` (BACKUP_DATABASE_URL's too), or UnknownDatabase."""
    env = env_target(session, env_url)
    if env is not None and env.name == name:
        return env
    target = session.scalar(select(Target).where(Target.name == name))
    if target is None:
        raise UnknownDatabase(name, [t.name for t in list_targets(session, env_url)])
    return target


def env_target(session: Session, env_url: str | None) -> Target | None:
    """BACKUP_DATABASE_URL's target (named by its dbname): its row, or, until something stores
    it (`save_env_target`), one with the default settings that is not in the catalog. Reading
    never writes: a page that lists the targets changes nothing."""
    if not env_url:
        return None
    conn = ConnInfo.from_url(env_url)
    target = session.scalar(select(Target).where(Target.name == conn.dbname))
    if target is None:
        target = Target(name=conn.dbname, from_env=True, dbname=conn.dbname)
        _set_settings(target, TargetSettings())
        _set_env_address(target, conn)
    return target


def save_env_target(session: Session, env_url: str | None) -> Target | None:
    """Store BACKUP_DATABASE_URL's target if it is not stored yet (its settings, schedules and alerts
    live in its row), and the address it shows if the URL has changed; for the writers: a change of
    its settings, the scheduler's tick, a new target."""
    target = env_target(session, env_url)
    if target is None or not target.from_env:
        return target
    if inspect(target).persistent:
        _set_env_address(target, ConnInfo.from_url(env_url))  # no statement unless it changed
    else:
        session.add(target)
    try:
        session.commit()
    except IntegrityError:  # another request or worker added it at the same moment
        session.rollback()
    return env_target(session, env_url)


def _set_env_address(target: Target, conn: ConnInfo) -> None:
    target.host, target.port, target.user = conn.host, conn.port, conn.user
    target.sslmode = dict(conn.params).get("sslmode")


def default_target(session: Session, env_url: str | None) -> Target:
    """The target of BACKUP_DATABASE_URL, or the only target there is."""
    target = env_target(session, env_url)
    if target is not None:
        return target
    targets = list_targets(session)
    if len(targets) == 1:
        return targets[0]
    raise ConfigurationError("no default database: set BACKUP_DATABASE_URL or name a target (flask targets add)")


def resolve_target(session: Session, name: str | None, env_url: str | None) -> Target:
    """The target called `name`, or the default one."""
    return get_target(session, name, env_url) if name else default_target(session, env_url)


def target_conn(target: Target, env_url: str | None, key: MasterKey | None) -> ConnInfo:
    """How to connect to `target`, its password decrypted."""
    if target.from_env:
        if not env_url:
            raise ConfigurationError(f"target {target.name!r} comes from BACKUP_DATABASE_URL, which is not set")
        return ConnInfo.from_url(env_url)
    password = None
    if target.password_encrypted:
        if key is None:
            raise ConfigurationError(
                f"target {target.name!r} has a stored password but APP_ENCRYPTION_KEY is not set")
        password = key.decrypt_secret(target.password_encrypted)
    params = (("sslmode", target.sslmode),) if target.sslmode else ()
    return ConnInfo(target.dbname, target.host, target.port, target.user, password, params)


def verify_conn(target: Target | None, verify_url: str | None, env_url: str | None,
                key: MasterKey | None) -> ConnInfo:
    """The server a verification of `target`'s backups restores into: the target's own verify server,
    else `verify_url` (VERIFY_DATABASE_URL; a target that is gone needs it), else the target's server."""
    if target is not None and target.verify_url_encrypted:
        if key is None:
            raise ConfigurationError(f"target {target.name!r} has a stored verify server but APP_ENCRYPTION_KEY "
                                     "is not set")
        return ConnInfo.from_url(key.decrypt_secret(target.verify_url_encrypted))
    if verify_url or target is None:
        return ConnInfo.from_url(verify_url)
    return target_conn(target, env_url, key)


VERIFY_SERVER_UNREADABLE = "stored, unreadable with this APP_ENCRYPTION_KEY"


def verify_server_url(target: Target, key: MasterKey | None) -> str | None:
    """The target's own verify server as a URL without its password; None when it has none, a
    sentence when APP_ENCRYPTION_KEY is not set or is not the key it was stored with."""
    if not target.verify_url_encrypted:
        return None
    if key is None:
        return "stored encrypted (APP_ENCRYPTION_KEY is not set)"
    try:
        return url_without_password(key.decrypt_secret(target.verify_url_encrypted))
    except SecretUnreadable:
        return VERIFY_SERVER_UNREADABLE


def check_verify_server(url: str | None, key: MasterKey | None) -> None:
    """Refuse a verify server that is not a PostgreSQL URL (now, not at the next verify), or one to store
    without APP_ENCRYPTION_KEY."""
    if url:
        ConnInfo.from_url(url)
        if key is None:
            raise ConfigurationError("set APP_ENCRYPTION_KEY to store a verify server (its URL may hold a password)")


def set_verify_server(session: Session, name: str, url: str | None, key: MasterKey | None,
                      env_url: str | None = None) -> Target:
    """Make `url` the server `name`'s verifications restore into (None: back to VERIFY_DATABASE_URL or its
    own); stored encrypted, so APP_ENCRYPTION_KEY is needed."""
    save_env_target(session, env_url)
    target = get_target(session, name, env_url)
    check_verify_server(url, key)
    target.verify_url_encrypted = key.encrypt_secret(url) if url else None
    session.commit()
    return target


def dump_spec(target: Target, env_url: str | None, key: MasterKey | None) -> DumpSpec:
    if target.encrypt and key is None:
        raise ConfigurationError(f"target {target.name!r} is encrypted but APP_ENCRYPTION_KEY is not set")
    return DumpSpec(target.name, target_conn(target, env_url, key), target.format, target.codec,
                    target.encrypt, target.all_databases, tuple(target.excluded))


def add_target(session: Session, name: str, conn: ConnInfo, settings: TargetSettings,
               key: MasterKey | None, env_url: str | None = None,
               notify_hosts: tuple[str, ...] | None = None) -> Target:
    """Store a new target; its password (if `conn` has one) is encrypted with `key`; its notification
    URLs may only name `notify_hosts` (NOTIFY_ALLOWED_HOSTS; None: any)."""
    if not TARGET_NAME.fullmatch(name):
        raise ConfigurationError("a target name is 1-100 letters, digits, '-', '_' or '.'")
    check_new_settings(settings, conn, key, notify_hosts)
    save_env_target(session, env_url)
    if session.scalar(select(Target).where(Target.name == name)) is not None:
        raise TargetExists(f"a target named {name!r} already exists")
    target = Target(name=name)
    _set_connection(target, conn, key, clear_password=False)
    _set_settings(target, settings)
    reschedule(target)
    session.add(target)
    session.commit()
    return target


def update_target(session: Session, name: str, settings: TargetSettings, key: MasterKey | None,
                  conn: ConnInfo | None = None, *, clear_password: bool = False, env_url: str | None = None,
                  notify_hosts: tuple[str, ...] | None = None) -> Target:
    """Change a target's settings and, given `conn`, its connection.

    The stored password stays unless `conn` carries a new one, `clear_password` is set, or `conn`
    points elsewhere (see `forgets_password`). The connection of BACKUP_DATABASE_URL's target
    comes from the environment and is not changed here. A changed schedule, verify schedule, time
    zone or enabled flag recomputes the next runs. Notification URLs may only name `notify_hosts`.
    """
    save_env_target(session, env_url)
    target = get_target(session, name, env_url)
    check_new_settings(settings, conn, key, notify_hosts)
    if conn is not None and target.from_env:
        raise ConfigurationError(f"target {name!r} comes from BACKUP_DATABASE_URL; change its connection there")
    timing = (target.schedule, target.verify_schedule, target.timezone, target.schedule_enabled)
    if conn is not None:
        _set_connection(target, conn, key, clear_password)
    _set_settings(target, settings)
    if timing != (target.schedule, target.verify_schedule, target.timezone, target.schedule_enabled):
        reschedule(target)
    session.commit()
    return target


def check_new_settings(settings: TargetSettings, conn: ConnInfo | None, key: MasterKey | None,
                       notify_hosts: tuple[str, ...] | None = None) -> None:
    """Refuse bad settings, notification URLs naming a host not in `notify_hosts`, and a password or
    encryption without APP_ENCRYPTION_KEY, before any change."""
    settings.check()
    check_notification_urls(settings.notify_urls, notify_hosts)
    if conn is not None and conn.password and key is None:
        raise ConfigurationError("set APP_ENCRYPTION_KEY to store a target's password")
    if settings.encrypt and key is None:
        raise ConfigurationError("set APP_ENCRYPTION_KEY to encrypt backups")


def forgets_password(target: Target, conn: ConnInfo) -> bool:
    """Whether saving `conn` forgets the target's stored password: it gives none, and it changes
    the host, port, user, database or SSL mode. The password was entered for one server and one
    user; kept, whoever may edit the target could point it at a server of theirs and be sent it."""
    where = (conn.host, conn.port, conn.user, conn.dbname, dict(conn.params).get("sslmode"))
    stored = (target.host, target.port, target.user, target.dbname, target.sslmode)
    return bool(target.password_encrypted) and not conn.password and where != stored


def _set_connection(target: Target, conn: ConnInfo, key: MasterKey | None, clear_password: bool) -> None:
    if clear_password or forgets_password(target, conn):
        target.password_encrypted = None
    target.host, target.port, target.user, target.dbname = conn.host, conn.port, conn.user, conn.dbname
    target.sslmode = dict(conn.params).get("sslmode")
    if conn.password:
        target.password_encrypted = key.encrypt_secret(conn.password)


def _set_settings(target: Target, settings: TargetSettings) -> None:
    target.schedule, target.verify_schedule = settings.schedule or None, settings.verify_schedule or None
    target.timezone, target.schedule_enabled = settings.timezone, settings.schedule_enabled
    target.keep_days, target.keep_last = settings.keep_days, settings.keep_last
    target.gfs_daily, target.gfs_weekly, target.gfs_monthly = settings.gfs
    target.format, target.codec, target.encrypt = settings.format, settings.codec, settings.encrypt
    target.notify_urls = "\n".join(settings.notify_urls) or None
    target.notify_on_success, target.stale_after_hours = settings.notify_on_success, settings.stale_after_hours
    target.all_databases = settings.all_databases
    target.exclude_databases = "\n".join(name.strip() for name in settings.exclude if name.strip()) or None


def check_connection(conn: ConnInfo, pg: PgTools) -> str:
    """Connect and tell which pg_dump would back the server up: 'PostgreSQL 15.18 (pg_dump 15.18 in …)',
    and when that pg_dump's libpq cannot hold it to PG_REQUIRE_AUTH, that it cannot.

    Raises VersionMismatch when every pg_dump is older than the server, DumpFailed with
    psql's message when the connection fails (after 10 s at most unless the URL sets
    connect_timeout), naming PG_REQUIRE_AUTH when the server asked for another authentication.
    """
    if "connect_timeout" not in dict(conn.params):
        conn = replace(conn, params=conn.params + (("connect_timeout", "10"),))
    try:
        server, client = pg.for_dump(conn)
    except DumpFailed as exc:
        if "authentication method requirement" in str(exc):
            raise DumpFailed(f"{exc} (PG_REQUIRE_AUTH allows {require_auth()})") from exc
        raise
    found = f"PostgreSQL {server} (pg_dump {client.describe()})"
    if not client.requires_auth:
        found += (f"; warning: this pg_dump's libpq is older than 16 and cannot require {require_auth()} "
                  "(PG_REQUIRE_AUTH): it would answer a server that asks for the password in clear text")
    return found


def remove_target(session: Session, name: str) -> Target:
    """Forget a target; its backups stay in the catalog and in storage."""
    target = get_target(session, name)
    if target.from_env:
        raise ConfigurationError(f"target {name!r} comes from BACKUP_DATABASE_URL; unset it to remove the target")
    session.delete(target)
    session.commit()
    return target
