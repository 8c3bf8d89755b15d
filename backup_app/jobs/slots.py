"""What a job holds while it runs: its slot, and the server it talks to. The catalog allows one
queued or running job per slot (a partial unique index on `jobs.slot`)."""
from backup_app.adapters.postgres import canonical_address, server_identity
from backup_app.core.conninfo import ConnInfo

# The database and the slot of prune, sync and delete jobs: they share one.
ALL_TARGETS, ALL_BACKUPS = "all targets", "all backups"


def database_slot(conn: ConnInfo) -> str:
    """The slot of a database: its server's identity and its name, however the URL spells the
    host, the port or the user (`system 7714575499734397009/shop`)."""
    return f"{server_identity(conn)}/{conn.dbname}"


def server_address(conn: ConnInfo) -> str:
    """`host:port` of a database's server, the host resolved (`loopback:5432`, `10.0.0.5:5432`),
    asking the server nothing: the jobs of one server share the worker's threads."""
    return canonical_address(conn).split(" ", 1)[1]


def backup_slot(backup_id: str) -> str:
    return f"backup {backup_id}"
