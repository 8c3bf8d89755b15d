"""Settings, read from environment variables (a `.env` file may set them)."""
import os
import re
from collections.abc import Mapping

from backup_app.core.conninfo import DEFAULT_REQUIRE_AUTH

MIB = 1024 * 1024
STORE_NAME = re.compile(r"[a-z][a-z0-9_]{0,28}")  # fits BackupCopy.location as "s3:<name>"
LIBRARY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a file of the server's own library folder, no path


def env_bool(name: str, default: bool = False, env: Mapping[str, str] = os.environ) -> bool:
    value = env.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_bytes(name: str, env: Mapping[str, str] = os.environ) -> int | None:
    """A number of bytes (a whole number, at least 1), or None when unset."""
    value = env.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a number of bytes (e.g. 500000000000), not {value!r}")
    return int(value)


def trusted_proxies(env: Mapping[str, str] = os.environ) -> int:
    """TRUSTED_PROXIES: how many reverse proxies stand in front of the app (0 when unset)."""
    value = env.get("TRUSTED_PROXIES", "").strip()
    if not value:
        return 0
    if not value.isdigit():
        raise ValueError(f"TRUSTED_PROXIES must be the number of reverse proxies in front of the app "
                         f"(0, 1, 2 …), not {value!r}")
    return int(value)


def usable_cpus() -> int:
    """The CPUs this process may run on (a container's share, not the whole machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def preload_libraries(env: Mapping[str, str]) -> tuple[str, ...]:
    """PITR_PRELOAD_LIBRARIES: the libraries a restored server may preload, by bare name only (a
    path could name a file that came with the restored data)."""
    names = tuple(name for name in re.split(r"[\s,]+", env.get("PITR_PRELOAD_LIBRARIES", "").strip()) if name)
    for name in names:
        if not LIBRARY_NAME.fullmatch(name):
            raise ValueError(f"PITR_PRELOAD_LIBRARIES: {name!r} is not a library name (no paths: the server's "
                             "own library folder only)")
    return names


def extra_s3_stores(env: Mapping[str, str]) -> list[dict]:
    """The S3 stores named in S3_STORES (beside MINIO_*'s), each from its S3_<NAME>_* variables."""
    stores: list[dict] = []
    for name in re.split(r"[\s,]+", env.get("S3_STORES", "").strip()):
        if not name:
            continue
        if not STORE_NAME.fullmatch(name):
            raise ValueError(f"S3_STORES: {name!r} is not a store name "
                             "(a lowercase letter, then letters, digits or _; at most 29)")
        if any(store["name"] == name for store in stores):
            raise ValueError(f"S3_STORES names {name!r} twice")
        prefix = f"S3_{name.upper()}_"
        if not env.get(prefix + "ENDPOINT"):
            raise ValueError(f"S3_STORES names {name!r} but {prefix}ENDPOINT is not set")
        stores.append({
            "name": name,
            "endpoint": env[prefix + "ENDPOINT"],
            "access_key": env.get(prefix + "ACCESS_KEY"),
            "secret_key": env.get(prefix + "SECRET_KEY"),
            "bucket": env.get(prefix + "BUCKET") or "backups",
            "secure": env_bool(prefix + "SECURE", env=env),
            "region": env.get(prefix + "REGION") or None,
            "alert_bytes": env_bytes(prefix + "ALERT_BYTES", env),
        })
    return stores


class Config:
    """Production settings: every value from the environment, no default for secrets."""

    def __init__(self) -> None:
        self.SECRET_KEY = os.environ.get("SECRET_KEY")
        self.BACKUP_DATABASE_URL = os.environ.get("BACKUP_DATABASE_URL")
        # A server used only for verification's scratch restores (a target may name its own instead);
        # unset: each target's own server.
        self.VERIFY_DATABASE_URL = os.environ.get("VERIFY_DATABASE_URL") or None
        # None means "inside the instance folder"; the factory fills these in.
        self.SQLALCHEMY_DATABASE_URI = os.environ.get("CATALOG_DATABASE_URL")
        self.BACKUP_DIR = os.environ.get("BACKUP_DIR")
        self.MINIO_ENDPOINT = os.environ.get("MINIO_ENDPOINT") or None
        self.MINIO_ACCESS_KEY = os.environ.get("MINIO_ACCESS_KEY")
        self.MINIO_SECRET_KEY = os.environ.get("MINIO_SECRET_KEY")
        self.MINIO_SECURE = env_bool("MINIO_SECURE")
        self.MINIO_BUCKET = os.environ.get("MINIO_BUCKET", "backups")
        self.MINIO_REGION = os.environ.get("MINIO_REGION") or None
        # The first parts of an upload (they grow as it does): 8 MiB keeps `flask backup create` under
        # 100 MB RSS (one part in memory per store); bigger parts upload with fewer requests.
        self.MINIO_PART_SIZE = int(os.environ.get("MINIO_PART_SIZE", 8 * MIB))
        # More S3-compatible stores: every backup is copied to each one in the same stream.
        self.S3_STORES = extra_s3_stores(os.environ)
        self.PG_BIN_DIR = os.environ.get("PG_BIN_DIR") or None
        # The authentication requests every connection to a database may answer (libpq's require_auth).
        self.PG_REQUIRE_AUTH = os.environ.get("PG_REQUIRE_AUTH") or DEFAULT_REQUIRE_AUTH
        self.APP_ENCRYPTION_KEY = os.environ.get("APP_ENCRYPTION_KEY") or None
        self.SYNC_FETCH_LOCAL = env_bool("SYNC_FETCH_LOCAL")
        # Apprise URLs (space or comma separated) told about every target's failures.
        self.NOTIFY_URLS = os.environ.get("NOTIFY_URLS", "")
        self.NOTIFY_ON_SUCCESS = env_bool("NOTIFY_ON_SUCCESS")
        # Hosts (comma separated) notifications may reach; unset: any. Hosts a restore may go to
        # besides those the targets name.
        self.NOTIFY_ALLOWED_HOSTS = os.environ.get("NOTIFY_ALLOWED_HOSTS") or None
        self.RESTORE_ALLOWED_HOSTS = os.environ.get("RESTORE_ALLOWED_HOSTS") or None
        # A location holding more than this (backups, base backups and WAL) is in the dashboard's
        # attention panel and notified, once each time it crosses; MINIO_ALERT_BYTES and
        # S3_<NAME>_ALERT_BYTES set a store's own.
        self.STORAGE_ALERT_BYTES = env_bytes("STORAGE_ALERT_BYTES")
        self.MINIO_ALERT_BYTES = env_bytes("MINIO_ALERT_BYTES")
        self.STALE_AFTER_HOURS = int(os.environ["STALE_AFTER_HOURS"]) if os.environ.get("STALE_AFTER_HOURS") else None
        # Seconds an in-place restore waits for a lock held by another session before it fails.
        self.RESTORE_LOCK_TIMEOUT = int(os.environ.get("RESTORE_LOCK_TIMEOUT", 60))
        # pg_restore jobs at once, when it restores into a new database from a file it can seek.
        self.RESTORE_JOBS = max(1, int(os.environ.get("RESTORE_JOBS") or usable_cpus()))
        # Databases of a server target's set dumped at once.
        self.SET_PARALLEL = max(1, int(os.environ.get("SET_PARALLEL") or 2))
        # Hours a database replaced by a restore is kept (<name>_before_restore_<time>) before the
        # worker drops it; 0 keeps it until it is dropped by hand.
        self.KEEP_PREVIOUS_HOURS = int(os.environ.get("KEEP_PREVIOUS_HOURS") or 24)
        self.SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
        # Jobs: RedisHuey when REDIS_URL is set, else SqliteHuey (default <instance>/huey.db).
        self.REDIS_URL = os.environ.get("REDIS_URL") or None
        self.HUEY_SQLITE_PATH = os.environ.get("HUEY_SQLITE_PATH") or None
        self.HUEY_IMMEDIATE = False
        # The worker's periodic work: every SCHEDULER_INTERVAL seconds it queues the due scheduled
        # backups and verifies, the prune (PRUNE_SCHEDULE) and the sync (SYNC_SCHEDULE), cron in UTC;
        # an empty schedule turns that job off.
        self.SCHEDULER_INTERVAL = int(os.environ.get("SCHEDULER_INTERVAL", 60))
        # A running job writes a heartbeat this often; one silent for STALE_HEARTBEATS of them is
        # taken as dead (its worker killed, its machine gone) and marked interrupted by any worker.
        self.JOB_HEARTBEAT_SECONDS = int(os.environ.get("JOB_HEARTBEAT_SECONDS", 10))
        # A job whose client programs (pg_dump, pg_restore, psql, pg_basebackup) move no bytes for
        # this long fails, its programs killed (checked at each heartbeat); 0 never stops one.
        self.JOB_STALL_SECONDS = int(os.environ.get("JOB_STALL_SECONDS", 300))
        self.PRUNE_SCHEDULE = os.environ.get("PRUNE_SCHEDULE", "30 3 * * *")
        self.SYNC_SCHEDULE = os.environ.get("SYNC_SCHEDULE", "*/10 * * * *")
        # Point-in-time recovery: the segment being filled is uploaded at most this often, once it
        # grew (the loss window); a worker holds a target's WAL receiver while it renews its lease (every
        # second, on its own thread), another takes it over
        # once the lease is PITR_LEASE_SECONDS old; restored servers run as PITR_OS_USER under root.
        self.WAL_PARTIAL_UPLOAD_SECONDS = int(os.environ.get("WAL_PARTIAL_UPLOAD_SECONDS", 5))
        self.PITR_LEASE_SECONDS = int(os.environ.get("PITR_LEASE_SECONDS", 30))
        self.PITR_OS_USER = os.environ.get("PITR_OS_USER") or "postgres"
        self.PITR_PRELOAD_LIBRARIES = preload_libraries(os.environ)
        # Where a restore asked for from the pages or the API may put its data directory (the CLI
        # may name any); None: <instance>/pitr-restores.
        self.PITR_RESTORE_ROOT = os.environ.get("PITR_RESTORE_ROOT") or None
        # Request bodies past this many bytes get a 413 before any view reads them (forms and API
        # JSON are small; an import's upload has IMPORT_MAX_BYTES instead).
        self.MAX_CONTENT_LENGTH = int(os.environ.get("MAX_CONTENT_LENGTH") or MIB)
        # The largest dump the upload form (and POST /api/backups/import) takes, streamed to a
        # temporary file (in TMPDIR), never held in memory; `flask backup import` has no limit.
        self.IMPORT_MAX_BYTES = int(os.environ.get("IMPORT_MAX_BYTES") or 10 * 1024 * MIB)
        # The session cookie: never readable by scripts, not sent on cross-site requests.
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE")
        # Reverse proxies in front of the app: their X-Forwarded-For and X-Forwarded-Proto are believed
        # (werkzeug's ProxyFix); with 0, a client's own X-Forwarded-For is ignored.
        self.TRUSTED_PROXIES = trusted_proxies()
        # werkzeug's method for the password hashes of new users.
        self.PASSWORD_HASH_METHOD = os.environ.get("PASSWORD_HASH_METHOD") or "scrypt"
        # Every account with a password must set up two-factor sign-in (TOTP) before anything else.
        self.REQUIRE_2FA = env_bool("REQUIRE_2FA")
        # /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`; unset, it is 404.
        self.METRICS_TOKEN = os.environ.get("METRICS_TOKEN") or None
        # Single sign-on through OpenID Connect, on when OIDC_ISSUER is set (docs/security.md); the
        # role map, default role and domains are checked as the app starts (web/auth/oidc.py).
        # LOCAL_LOGIN=false leaves single sign-on only.
        self.OIDC_ISSUER = os.environ.get("OIDC_ISSUER") or None
        self.OIDC_CLIENT_ID = os.environ.get("OIDC_CLIENT_ID") or None
        self.OIDC_CLIENT_SECRET = os.environ.get("OIDC_CLIENT_SECRET") or None
        self.OIDC_PROVIDER_NAME = os.environ.get("OIDC_PROVIDER_NAME") or "Sign in with single sign-on"
        self.OIDC_SCOPES = os.environ.get("OIDC_SCOPES") or "openid email profile"
        self.OIDC_ROLES_CLAIM = os.environ.get("OIDC_ROLES_CLAIM") or "groups"
        self.OIDC_ROLE_MAP = os.environ.get("OIDC_ROLE_MAP", "")
        self.OIDC_DEFAULT_ROLE = os.environ.get("OIDC_DEFAULT_ROLE") or None
        self.OIDC_ALLOWED_DOMAINS = os.environ.get("OIDC_ALLOWED_DOMAINS", "")
        self.LOCAL_LOGIN = env_bool("LOCAL_LOGIN", True)
        # Log lines as "text" or "json" (one object a line); see backup_app/logs.py.
        self.LOG_FORMAT = os.environ.get("LOG_FORMAT", "text").strip().lower() or "text"


class TestConfig(Config):
    """Settings for the test suite: the fixtures fill in servers and folders."""

    TESTING = True

    def __init__(self) -> None:
        super().__init__()
        self.SECRET_KEY = "test-secret-key"
        self.HUEY_IMMEDIATE = True  # jobs run inside the request; browser tests run a real worker
        self.PASSWORD_HASH_METHOD = "pbkdf2:sha256:1000"  # scrypt takes 0.1 s a hash: fine for users, slow for tests
