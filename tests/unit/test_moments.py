"""Moments a user names: ISO 8601 with a zone (CLI, API) and a local time in a named zone (the pages)."""
from datetime import datetime, timedelta, timezone

import pytest

from backup_app.core.moments import local_moment, parse_moment, zone_info
from backup_app.errors import ConfigurationError

UTC = timezone.utc


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-12-01T14:05:00Z", datetime(2026, 12, 1, 14, 5, tzinfo=UTC)),
    (" 2026-12-01t14:05:00z ", datetime(2026, 12, 1, 14, 5, tzinfo=UTC)),
    ("2026-12-01T15:05:00+01:00", datetime(2026, 12, 1, 14, 5, tzinfo=UTC)),
    ("latest", None),
    (" LATEST ", None),
])
def test_parse_moment(value, expected):
    assert parse_moment(value) == expected


def test_parse_moment_refuses_a_time_without_zone_or_not_a_time():
    with pytest.raises(ConfigurationError, match=r"--to '2026-12-01T14:05:00' has no time zone: add Z for UTC"):
        parse_moment("2026-12-01T14:05:00")
    with pytest.raises(ConfigurationError, match=r"--to takes an ISO 8601 time with its zone .* not 'soon'"):
        parse_moment("soon")


@pytest.mark.parametrize(("naive", "zone", "expected"), [
    (datetime(2026, 1, 15, 10, 30), "Europe/Berlin", datetime(2026, 1, 15, 9, 30, tzinfo=UTC)),
    (datetime(2026, 7, 15, 10, 30, 5), "Europe/Berlin", datetime(2026, 7, 15, 8, 30, 5, tzinfo=UTC)),
    (datetime(2026, 7, 15, 10, 30), "UTC", datetime(2026, 7, 15, 10, 30, tzinfo=UTC)),
    (datetime(2026, 7, 15, 10, 30), "America/New_York", datetime(2026, 7, 15, 14, 30, tzinfo=UTC)),
    # 02:30 happens twice on 25 October 2026 in Berlin: the first, still summer time.
    (datetime(2026, 10, 25, 2, 30), "Europe/Berlin", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
])
def test_local_moment_is_aware_utc(naive, zone, expected):
    moment = local_moment(naive, zone)
    assert moment == expected and moment.utcoffset() == timedelta(0)


def test_local_moment_refuses_a_time_the_clocks_skipped_and_an_unknown_zone():
    with pytest.raises(ConfigurationError, match="2026-03-29 02:30:00 never happened in Europe/Berlin"):
        local_moment(datetime(2026, 3, 29, 2, 30), "Europe/Berlin")
    for name in ("Mars/Olympus", "Europe", "", "../etc/passwd", "a" * 5000):
        with pytest.raises(ConfigurationError, match="unknown time zone"):
            zone_info(name)
