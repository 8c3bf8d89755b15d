"""Everything the app writes is its own: files 0600, folders 0700 (dumps, base backups with
pg_authid's password hashes, WAL and the catalog are no other local user's business)."""
import logging
import os
from pathlib import Path

PRIVATE_UMASK = 0o077
log = logging.getLogger(__name__)


def make_private() -> None:
    """Every file and folder this process (and its children) creates from now on: 0600 / 0700."""
    os.umask(PRIVATE_UMASK)


def loose_folders(folders: list[Path]) -> list[str]:
    """A warning for each existing folder that other local users may enter or read."""
    warnings = []
    for folder in dict.fromkeys(folders):
        try:
            mode = folder.stat().st_mode & 0o777
        except OSError:
            continue
        if mode & 0o077:
            warnings.append(f"{folder} is {mode:04o}: other local users may read the backups and the catalog "
                            f"in it; chmod 700 {folder}")
    return warnings


def warn_if_loose(folders: list[Path]) -> None:
    for warning in loose_folders(folders):
        log.warning(warning)
