"""Settings, read from environment variables (a `.env` file may set them)."""
import os

MIB = 1024 * 1024


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


class Config:
    """Production settings: every value from the environment, no default for secrets."""

    def __init__(self) -> None:
        self.SECRET_KEY = os.environ.get("SECRET_KEY")
        self.BACKUP_DATABASE_URL = os.environ.get("BACKUP_DATABASE_URL")
        # None means "inside the instance folder"; the factory fills these in.
        self.SQLALCHEMY_DATABASE_URI = os.environ.get("CATALOG_DATABASE_URL")
        self.BACKUP_DIR = os.environ.get("BACKUP_DIR")
        self.MINIO_ENDPOINT = os.environ.get("MINIO_ENDPOINT") or None
        self.MINIO_ACCESS_KEY = os.environ.get("MINIO_ACCESS_KEY")
        self.MINIO_SECRET_KEY = os.environ.get("MINIO_SECRET_KEY")
        self.MINIO_SECURE = env_bool("MINIO_SECURE")
        self.MINIO_BUCKET = os.environ.get("MINIO_BUCKET", "backups")
        self.MINIO_REGION = os.environ.get("MINIO_REGION") or None
        # 16 MiB parts with one upload thread keep the backup process under
        # ~100 MB RSS (DESIGN.md measurements); bigger parts upload faster.
        self.MINIO_PART_SIZE = int(os.environ.get("MINIO_PART_SIZE", 16 * MIB))
        self.PG_BIN_DIR = os.environ.get("PG_BIN_DIR") or None
        self.APP_ENCRYPTION_KEY = os.environ.get("APP_ENCRYPTION_KEY") or None
        self.SYNC_FETCH_LOCAL = env_bool("SYNC_FETCH_LOCAL")
        # Apprise URLs (space or comma separated) told about every target's failures.
        self.NOTIFY_URLS = os.environ.get("NOTIFY_URLS", "")
        self.NOTIFY_ON_SUCCESS = env_bool("NOTIFY_ON_SUCCESS")
        self.STALE_AFTER_HOURS = int(os.environ["STALE_AFTER_HOURS"]) if os.environ.get("STALE_AFTER_HOURS") else None
        # Seconds a restore waits for a lock held by another session before it fails.
        self.RESTORE_LOCK_TIMEOUT = int(os.environ.get("RESTORE_LOCK_TIMEOUT", 60))
        self.SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
        # Jobs: RedisHuey when REDIS_URL is set, else SqliteHuey (default <instance>/huey.db).
        self.REDIS_URL = os.environ.get("REDIS_URL") or None
        self.HUEY_SQLITE_PATH = os.environ.get("HUEY_SQLITE_PATH") or None
        self.HUEY_IMMEDIATE = False
        # The worker's periodic work: every SCHEDULER_INTERVAL seconds it queues the due scheduled
        # backups and verifies, the prune (PRUNE_SCHEDULE) and the sync (SYNC_SCHEDULE), cron in UTC;
        # an empty schedule turns that job off.
        self.SCHEDULER_INTERVAL = int(os.environ.get("SCHEDULER_INTERVAL", 60))
        self.PRUNE_SCHEDULE = os.environ.get("PRUNE_SCHEDULE", "30 3 * * *")
        self.SYNC_SCHEDULE = os.environ.get("SYNC_SCHEDULE", "*/10 * * * *")
        # The session cookie: never readable by scripts, not sent on cross-site requests.
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE")
        # /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`; unset, it is 404.
        self.METRICS_TOKEN = os.environ.get("METRICS_TOKEN") or None
        # Log lines as "text" or "json" (one object a line); see backup_app/logs.py.
        self.LOG_FORMAT = os.environ.get("LOG_FORMAT", "text").strip().lower() or "text"


class TestConfig(Config):
    """Settings for the test suite: the fixtures fill in servers and folders."""

    TESTING = True

    def __init__(self) -> None:
        super().__init__()
        self.SECRET_KEY = "test-secret-key"
        self.HUEY_IMMEDIATE = True  # jobs run inside the request; browser tests run a real worker
