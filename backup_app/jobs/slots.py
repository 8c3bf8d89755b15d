"""What a job holds while it runs: its slot. The catalog allows one queued or running job per slot
(a partial unique index on `jobs.slot`)."""
from backup_app.adapters.postgres import server_identity
from backup_app.core.conninfo import ConnInfo

# The database and the slot of prune, sync and delete jobs: they share one.
ALL_TARGETS, ALL_BACKUPS = "all targets", "all backups"


def database_slot(conn: ConnInfo) -> str:
    """The slot of a database: its server's identity and its name, however the URL spells the
    host, the port or the user (`system 7714575499734397009/shop`)."""
    return f"{server_identity(conn)}/{conn.dbname}"


def backup_slot(backup_id: str) -> str:
    return f"backup {backup_id}"
