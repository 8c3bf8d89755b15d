from datetime import datetime, timedelta, timezone

import pytest

from backup_app.errors import ConfigurationError
from backup_app.extensions import db
from backup_app.models import Target
from backup_app.services.schedules import check_cron, claim_due_targets, longest_gap, next_run_time
from tests.conftest import both_catalogs


def test_next_run_honours_the_time_zone():
    after = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)

    assert next_run_time("0 3 * * *", "UTC", after) == datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)
    assert next_run_time("0 3 * * *", "Europe/Berlin", after) == datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)


def test_bad_cron_is_explained():
    with pytest.raises(ConfigurationError, match="invalid cron expression"):
        check_cron("every day at 3")


@both_catalogs
def test_a_due_run_is_claimed_exactly_once(make_app, tmp_path):
    app = make_app()
    now = datetime(2026, 11, 25, 12, 0, 30, tzinfo=timezone.utc)
    with app.app_context():
        db.session.add_all([
            Target(name="due", dbname="a", schedule="* * * * *", next_run_at=now - timedelta(seconds=30)),
            Target(name="later", dbname="b", schedule="* * * * *", next_run_at=now + timedelta(minutes=5)),
            Target(name="off", dbname="c", schedule="* * * * *", schedule_enabled=False,
                   next_run_at=now - timedelta(minutes=1)),
        ])
        db.session.commit()

        first = claim_due_targets(db.session, now)
        second = claim_due_targets(db.session, now)

        assert [t.name for t in first] == ["due"] and second == []
        assert first[0].next_run_at == datetime(2026, 11, 25, 12, 1, tzinfo=timezone.utc)


def test_an_office_hours_schedule_is_not_stale_overnight():
    # */5 during 9-17: at 18:10 the next runs are tomorrow's, 5 minutes apart; the night between counts
    evening = datetime(2026, 12, 7, 18, 10, tzinfo=timezone.utc)
    assert longest_gap("*/5 9-17 * * *", "UTC", evening) == timedelta(hours=15, minutes=5)
    midday = datetime(2026, 12, 7, 12, 1, tzinfo=timezone.utc)
    assert longest_gap("*/5 9-17 * * *", "UTC", midday) == timedelta(minutes=5)
