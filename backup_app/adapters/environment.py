"""The environment every child process starts with: what a PostgreSQL program needs to run, and
none of the app's own settings (SECRET_KEY, APP_ENCRYPTION_KEY, MINIO_SECRET_KEY, database URLs …),
which a restored server or a program reading a hostile server's answers could otherwise see.
"""
import os

# Where programs are, the locale, the time zone and the temporary folder: nothing secret.
PASSED_ON = ("PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR")


def child_env(libpq: dict[str, str] | None = None) -> dict[str, str]:
    """A fresh environment for a child process: PASSED_ON and the LC_* variables taken from ours,
    then `libpq`'s PG* variables (a connection's, see ConnInfo.env())."""
    env = {name: value for name, value in os.environ.items() if name in PASSED_ON or name.startswith("LC_")}
    env.update(libpq or {})
    return env
