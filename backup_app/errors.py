"""Domain errors. Views and CLI commands turn each into a one-line message."""


class BackupError(Exception):
    """Base class of every error a user of the app can be shown."""


class BackupNotFound(BackupError):
    def __init__(self, backup_id: str):
        super().__init__(f"Backup not found: {backup_id}")


class UnknownDatabase(BackupError):
    def __init__(self, name: str, known: list[str]):
        choices = ", ".join(known) or "none configured (set BACKUP_DATABASE_URL)"
        super().__init__(f"Unknown database {name!r}; known: {choices}")


class ConfigurationError(BackupError):
    """A setting is missing or malformed."""


class StorageUnavailable(BackupError):
    """The S3 store cannot be reached or refuses the request."""


class DumpFailed(BackupError):
    """pg_dump exited non-zero; the message is pg_dump's own."""


class RestoreFailed(BackupError):
    """pg_restore or psql exited non-zero; the message is the server's."""


class BackupFileMissing(BackupError):
    def __init__(self, detail: str = ""):
        message = "Backup file not found locally or in storage"
        super().__init__(f"{message} ({detail})" if detail else message)


class ChecksumMismatch(BackupError):
    """Bytes read back do not match the SHA-256 recorded at backup time."""


class InvalidBackupState(BackupError):
    """The backup exists but is not in a state the operation accepts."""


class ObjectNotFound(BackupError):
    """The S3 store answered, but has no such object."""


class VersionMismatch(BackupError):
    """No PostgreSQL client found fits the server (dump) or the server and the dump (restore)."""
