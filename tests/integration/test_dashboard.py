"""The dashboard: per target coverage, staleness in red, failures with their errors, and the
server-drawn charts."""
import pytest

from backup_app.extensions import db
from backup_app.models import FAILING, Job, Target, WalReceiver
from devtools.localservers import reserve_port
from tests.helpers import add_target, age_backups, create, error_line, invoke, new_key
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


def row_of(page: str, name: str) -> str:
    """The dashboard's table row of the target `name`."""
    start = page.index(f">{name}</a>")
    return page[start:page.index("</tr>", start)]


def test_a_failed_last_run_a_failed_copy_and_a_failing_receiver_are_shown_with_their_errors(
        make_app, pg_cluster, source_db, other_db):
    dead_s3 = f"127.0.0.1:{reserve_port()}"
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), MINIO_ENDPOINT=dead_s3, MINIO_ACCESS_KEY="k",
                   MINIO_SECRET_KEY="s", APP_ENCRYPTION_KEY=new_key())
    runner = app.test_cli_runner()
    add_target(runner, "other", pg_cluster.url(other_db))
    made = create(runner)  # its S3 copy fails: the store is down
    create(runner, "--database", "other")
    pg_cluster.psql(f'ALTER DATABASE "{other_db}" RENAME TO "{other_db}_gone"')
    try:
        failed = invoke(runner, "backup", "create", "--database", "other", ok=False)
    finally:
        pg_cluster.psql(f'ALTER DATABASE "{other_db}_gone" RENAME TO "{other_db}"')
    receiver_error = "could not connect to the server: Connection refused"
    with app.app_context():
        db.session.query(Target).filter_by(name=source_db).one().pitr_enabled = True
        db.session.add(WalReceiver(target=source_db, state=FAILING, error=receiver_error))
        db.session.commit()
        [failed_job] = db.session.query(Job).filter_by(status="failed").all()
    client = signed_in(app)

    page = text(client.get("/dashboard"))

    source, other = row_of(page, source_db), row_of(page, "other")
    assert f'database "{other_db}" does not exist' in error_line(failed)
    assert 'class="fresh"' in other, "a good backup of today is still the last good one"
    assert f'highlight={failed_job.id}"><span class="badge failed">failed</span>' in other
    assert f'database &#34;{other_db}&#34; does not exist' in other, "the last run's error"
    assert '<span class="badge failed">copy failed</span>' in source, "a lost copy is a failure, not a green completed"
    assert f"s3 copy failed: cannot reach S3 at {dead_s3}" in source
    assert "1 / 2" in source and '<span class="badge failed">1 failed</span>' in source
    assert f"MinIO: cannot reach S3 at {dead_s3}" in source, "the failed copy's error"
    assert made["copies"][1]["error"].startswith(f"cannot reach S3 at {dead_s3}")
    assert '<span class="badge failed">failing</span>' in source and receiver_error in source
    assert "failing" not in other and "badge failed\">failed" not in source
    panel = page.split('<section class="attention"')[1].split("</section>")[0]
    items = [(item.split('data-kind="')[1].split('"')[0], item.split('data-subject="')[1].split('"')[0])
             for item in panel.split("<li")[1:]]
    assert items == [("failed-run", "other"), ("store-down", "s3"), ("copies", "other"), ("copies", source_db),
                     ("pitr", source_db)]
    assert f'href="/jobs/?highlight={failed_job.id}">The last backup of other (failed, ' in panel
    assert f"Storage MinIO is down: cannot reach S3 at {dead_s3}" in panel and 'href="/storage"' in panel
