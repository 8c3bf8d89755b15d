"""Target databases: the ones the app backs up and restores into."""
from dataclasses import dataclass

from ..adapters.postgres import ConnInfo
from ..errors import ConfigurationError, UnknownDatabase


@dataclass(frozen=True)
class Target:
    """A database to back up, known by its name."""

    name: str
    conn: ConnInfo


def configured_targets(default_url: str | None) -> dict[str, Target]:
    """The targets the configuration names; today only `BACKUP_DATABASE_URL`."""
    if not default_url:
        return {}
    conn = ConnInfo.from_url(default_url)
    return {conn.dbname: Target(conn.dbname, conn)}


def resolve_target(targets: dict[str, Target], name: str | None = None) -> Target:
    """The target called `name`, or the default one when `name` is None."""
    if name is None:
        if not targets:
            raise ConfigurationError("no database configured: set BACKUP_DATABASE_URL")
        return next(iter(targets.values()))
    if name not in targets:
        raise UnknownDatabase(name, sorted(targets))
    return targets[name]
