"""Moments a user names: an ISO 8601 time with its zone or `latest` (the CLI and the API), or a
date and time read on the clock of a named time zone (the pages' forms). No I/O."""
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backup_app.errors import ConfigurationError


def parse_moment(value: str) -> datetime | None:
    """`latest` → None; an ISO 8601 time with its zone → an aware datetime."""
    if value.strip().lower() == "latest":
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigurationError(f"--to takes an ISO 8601 time with its zone (2026-12-01T14:05:00Z, "
                                 f"…+01:00) or latest, not {value!r}") from None
    if moment.tzinfo is None:
        raise ConfigurationError(f"--to {value!r} has no time zone: add Z for UTC or an offset like +01:00")
    return moment


def zone_info(name: str) -> ZoneInfo:
    """The time zone called `name` (e.g. Europe/Berlin); ConfigurationError if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder of zones, or a name too long
        raise ConfigurationError(f"unknown time zone {name!r} (use e.g. UTC, Europe/Berlin)") from None


def local_moment(naive: datetime, zone: str) -> datetime:
    """The moment a clock in `zone` showed `naive`, as an aware UTC datetime. Of a time the clocks
    show twice (when they go back) it is the first; a time they skip is refused."""
    tz = zone_info(zone)
    moment = naive.replace(tzinfo=tz).astimezone(timezone.utc)
    if moment.astimezone(tz).replace(tzinfo=None) != naive:
        raise ConfigurationError(f"{naive:%Y-%m-%d %H:%M:%S} never happened in {zone}: "
                                 "the clocks skipped it (they went forward)")
    return moment
