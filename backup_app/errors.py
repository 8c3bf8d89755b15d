"""Domain errors. Views and CLI commands turn each into a one-line message."""
import math

from backup_app.core.formatting import duration


def shown(value: str) -> str:
    """`value` as given, or its repr if it holds control characters (a message stays one plain line)."""
    return value if value.isprintable() else repr(value)


class BackupError(Exception):
    """Base class of every error a user of the app can be shown."""


class BackupNotFound(BackupError):
    def __init__(self, backup_id: str, what: str = "Backup"):
        super().__init__(f"{what} not found: {shown(backup_id)}")


class SetNotFound(BackupNotFound):
    """No backup has this set id."""

    def __init__(self, set_id: str):
        super().__init__(set_id, "Backup set")


class UnknownDatabase(BackupError):
    def __init__(self, name: str, known: list[str]):
        choices = ", ".join(known) or "none configured (set BACKUP_DATABASE_URL)"
        super().__init__(f"Unknown database {name!r}; known: {choices}")


class ConfigurationError(BackupError):
    """A setting is missing or malformed."""


class TargetExists(BackupError):
    """A target of that name is already configured."""


class StorageUnavailable(BackupError):
    """The S3 store cannot be reached or refuses the request."""


class DumpFailed(BackupError):
    """pg_dump exited non-zero; the message is pg_dump's own."""


class RestoreFailed(BackupError):
    """pg_restore or psql exited non-zero; the message is the server's."""


class JobStalled(BackupError):
    """A job's programs moved no bytes for JOB_STALL_SECONDS: its watchdog stopped them."""


class BackupFileMissing(BackupError):
    def __init__(self, detail: str = ""):
        message = "Backup file not found locally or in storage"
        super().__init__(f"{message} ({detail})" if detail else message)


class UnsafeFilename(BackupError):
    """A backup's file name is not a plain name inside BACKUP_DIR or the bucket (a tampered row)."""

    def __init__(self, filename: str):
        super().__init__(f"invalid backup file name: {filename!r}")


class ChecksumMismatch(BackupError):
    """Bytes read back do not match the SHA-256 recorded at backup time."""


class InvalidBackupState(BackupError):
    """The backup exists but is not in a state the operation accepts."""


class ObjectNotFound(BackupError):
    """The S3 store answered, but has no such object."""


class VersionMismatch(BackupError):
    """No PostgreSQL client found fits the server (dump) or the server and the dump (restore)."""


class JobConflict(BackupError):
    """Another job for the same target database is queued or running."""


class VerificationFailed(BackupError):
    """A restore-verify found a bad copy, or the backup did not restore into a scratch database."""


class SomeBackupsFailed(BackupError):
    """A prune or sync went through every backup, but some of them could not be handled;
    `report` is what it did."""

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


class QueueUnavailable(BackupError):
    """The job queue (SQLite file or Redis) refused the job."""


class HostNotAllowed(ConfigurationError):
    """A notification URL or a restore aims at a host the settings do not allow."""


class MissingRoles(ConfigurationError):
    """A restore needs roles the server lacks (the message names them and what to do)."""


class ConfirmationMismatch(BackupError):
    """The typed confirmation is not the name of the database the restore changes (`expected`).
    When that is the backup's own database (`own`), the message says it would be replaced and how
    to restore beside it instead, never just "type its name"."""

    def __init__(self, expected: str, own: bool = False, what: str = "target database name"):
        if own:
            super().__init__(f"Confirmation does not match: this restore replaces {expected} itself (its own "
                             "database, swapped out and kept aside); to leave it untouched, restore into a new "
                             "database on the same server and give that database's name")
        else:
            super().__init__(f"Confirmation does not match: type the {what} {expected!r}")


class LeftoverNotFound(BackupError):
    """No database kept by a restore, nor server left running by one, has the name given."""


class UserExists(BackupError):
    def __init__(self, email: str):
        super().__init__(f"A user {email} already exists")


class UserNotFound(BackupError):
    def __init__(self, email: str):
        super().__init__(f"No user {email}")


class LoginFailed(BackupError):
    def __init__(self, message: str = "Wrong email or password"):
        super().__init__(message)


class AccountDisabled(LoginFailed):
    def __init__(self):
        super().__init__("This account is disabled; ask an admin to enable it")


class SignInFailed(BackupError):
    """A single sign-on did not verify (a forged state, a bad or expired ID token, the provider's
    refusal) or the provider could not be reached; `status` is the HTTP answer's."""

    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.status = status


class SignInRefused(SignInFailed):
    """Single sign-on verified who this is, and the app refuses them: the message says why."""

    def __init__(self, message: str):
        super().__init__(message, 403)


class WrongCode(LoginFailed):
    def __init__(self):
        super().__init__("Wrong code: enter the one your authenticator app shows now, or an unused recovery code")


class LastAdmin(BackupError):
    def __init__(self, email: str):
        super().__init__(f"{email} is the last enabled admin; make another user an admin first")


class TokenNotFound(BackupError):
    def __init__(self, token_id):
        super().__init__(f"No API token {shown(str(token_id))}")


class TooManyLoginAttempts(BackupError):
    """A sign-in refused unchecked: too many failures `scope` ("for this account", "from your address")."""

    def __init__(self, wait_seconds: float, scope: str):
        self.wait_seconds = max(1, math.ceil(wait_seconds))
        super().__init__(f"Too many failed sign-ins {scope}; try again in {duration(self.wait_seconds)}")


class JobNotFound(BackupError):
    def __init__(self, job_id: str):
        super().__init__(f"Job not found: {shown(job_id)}")


class InvalidRequest(BackupError):
    """An API call's body or parameters are malformed."""


class PitrError(BackupError):
    """Point-in-time recovery cannot go on: the server's settings, the archive, or a restore."""


class NotificationFailed(BackupError):
    """A notification (a test message) did not go; the message says why."""


class NotADump(InvalidRequest):
    """A file given to import is not a PostgreSQL dump (or not one that can be stored safely)."""
