"""Deleting a backup from every store, the catalog and disk.
"""

from sqlalchemy.orm import Session

from backup_app.adapters.local import LocalStorage
from backup_app.adapters.store import Stores
from backup_app.errors import (
    InvalidBackupState,
    StorageUnavailable,
)
from backup_app.models import (
    LOCAL,
    MISSING,
    PRESENT,
    RUNNING,
    S3,
    Backup,
)
from backup_app.services.backups.copies import set_copy
from backup_app.services.backups.queries import get_backup


def has_store_copy(backup: Backup, location: str) -> bool:
    """Whether the catalog says `backup` has an object at that store (so deleting it matters)."""
    copy = backup.copy(location)
    if copy is None:  # rows from before copies were recorded name their object in storage_url
        return location == S3 and backup.storage_url is not None
    return copy.status == PRESENT


def delete_backup(session: Session, backup_id: str, local: LocalStorage, stores: Stores) -> Backup:
    """Remove a backup from every S3 store, then the catalog, then disk. A copy already gone is fine.

    If an object the catalog knows of cannot be removed (its store is down, or no longer
    configured), the catalog row and the local file stay; an object already removed from
    another store is then recorded as missing.
    """
    backup = get_backup(session, backup_id)
    if backup.status == RUNNING:
        raise InvalidBackupState(f"backup {backup.id} is still running")
    unconfigured = {S3, *(copy.location for copy in backup.copies)} - {LOCAL, *(store.location for store in stores)}
    for location in sorted(unconfigured):
        if has_store_copy(backup, location):
            where = "S3 but MINIO_ENDPOINT is not set" if location == S3 else f"{location} but it is not in S3_STORES"
            raise StorageUnavailable(f"backup {backup.id} has a copy in {where}; nothing deleted")
    removed = []
    for store in stores:
        try:
            store.delete(backup.filename)
        except StorageUnavailable:
            if has_store_copy(backup, store.location):
                for gone in removed:
                    set_copy(backup, gone.location, gone.uri(backup.filename), MISSING, error="deleted")
                session.commit()
                raise
        else:
            removed.append(store)
    filename = backup.filename
    session.delete(backup)
    session.commit()
    local.delete(filename)
    return backup
