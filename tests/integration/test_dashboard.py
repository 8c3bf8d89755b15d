"""The dashboard: per target coverage, staleness in red, and the server-drawn charts."""
import pytest

from tests.helpers import add_target, age_backups, create, invoke
from tests.web_helpers import add_user, sign_in, text

pytestmark = pytest.mark.integration


def signed_in(app):
    add_user(app)
    client = app.test_client()
    assert sign_in(client).status_code == 302
    return client


def test_one_row_per_target_with_its_coverage(keyed_app, pg_cluster, source_db, other_db):
    runner = keyed_app.test_cli_runner()
    add_target(runner, "other", pg_cluster.url(other_db), "--schedule", "0 3 * * *", "--stale-after-hours", "48")
    first = create(runner)
    create(runner)
    create(runner, "--database", "other")
    invoke(runner, "backup", "verify", first["id"])
    age_backups(keyed_app, {first["id"]: 1})
    client = signed_in(keyed_app)

    page = text(client.get("/dashboard"))

    rows = page.split("<tr>")[2:]
    assert [r.split("</a>")[0].rsplit(">", 1)[1] for r in rows] == ["other", source_db]
    other, source = rows
    assert "4 / 4" in source and "2 / 2" in other, "local and MinIO copies of each backup"
    assert 'class="fresh"' in source and "passed" in source
    assert "not scheduled" in source and "not scheduled" not in other
    assert page.count("<svg") == 2 and "<polyline" in page and "style=" not in page.split("<svg")[1]


def test_a_target_without_a_recent_good_backup_is_red(make_app, pg_cluster, source_db):
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), STALE_AFTER_HOURS=24)
    backup = create(app.test_cli_runner())
    age_backups(app, {backup["id"]: 2})
    client = signed_in(app)

    page = text(client.get("/dashboard"))

    assert 'class="stale"' in page and "older than 24 h" in page
    assert "Backup size: no completed backups in this period" not in page, "one backup is drawn as a point"


def test_signing_in_lands_on_the_dashboard(make_app, pg_cluster, source_db):
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db))
    add_user(app)
    client = app.test_client()

    response = sign_in(client)

    assert response.headers["Location"].endswith("/dashboard")
    assert "never" in text(client.get("/dashboard")), "the default target is listed before its first backup"
