"""/metrics: computed from the catalog, scraped and parsed with prometheus_client's own parser."""
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from backup_app.extensions import db
from backup_app.models import (
    COMPLETED,
    COPY_FAILED,
    CREATE,
    FAILED,
    LOCAL,
    PRESENT,
    QUEUED,
    RESTORE,
    RUNNING,
    S3,
    Backup,
    BackupCopy,
    Job,
    Target,
    Verification,
    utcnow,
)

TOKEN = {"Authorization": "Bearer metrics-token"}
NOW = utcnow().replace(microsecond=0)


def scrape(app) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    response = app.test_client().get("/metrics", headers=TOKEN)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


def backup(backup_id, status=COMPLETED, *, hours_ago, took=30, size=1000, copies=((LOCAL, PRESENT),)):
    created = NOW - timedelta(hours=hours_ago)
    row = Backup(id=backup_id, filename=f"backup-shop-{backup_id}.dump", database="shop", status=status,
                 size_bytes=size, created_at=created,
                 completed_at=created + timedelta(seconds=took) if status == COMPLETED else None)
    row.copies = [BackupCopy(location=location, uri=f"{location}:{backup_id}", status=copy_status)
                  for location, copy_status in copies]
    return row


def fill_catalog(app) -> None:
    with app.app_context():
        newest = backup("bnew01", hours_ago=1, took=42, size=4096, copies=((LOCAL, PRESENT), (S3, COPY_FAILED)))
        db.session.add_all([
            newest,
            backup("bold01", hours_ago=30, copies=((LOCAL, PRESENT), (S3, PRESENT))),
            backup("bfail1", FAILED, hours_ago=0.5, copies=()),
            Target(name="vault", dbname="vault"),  # never backed up
            Job(kind=CREATE, status=QUEUED, database="vault", target="postgresql://h/vault", slot="h/vault"),
            Job(kind=RESTORE, status=RUNNING, database="shop", target="postgresql://h/shop", slot="h/shop"),
            Job(kind=CREATE, status=COMPLETED, database="shop", target="postgresql://h/shop", slot="h/shop"),
            Verification(backup_id="bnew01", database="shop", status="passed", started_at=NOW - timedelta(minutes=50),
                         finished_at=NOW - timedelta(minutes=49)),
            Verification(backup_id="bold01", database="shop", status=FAILED, started_at=NOW - timedelta(minutes=20),
                         finished_at=NOW - timedelta(minutes=19)),
            Verification(backup_id="bnew01", database="shop", status=RUNNING, started_at=NOW),
        ])
        db.session.commit()


def test_metrics_from_the_catalog(make_app):
    app = make_app(METRICS_TOKEN="metrics-token")
    fill_catalog(app)
    samples = scrape(app)
    shop, vault = (("database", "shop"),), (("database", "vault"),)
    newest_done = (NOW - timedelta(hours=1) + timedelta(seconds=42)).timestamp()
    assert samples[("backup_last_success_timestamp_seconds", shop)] == newest_done
    assert samples[("backup_last_success_timestamp_seconds", vault)] == 0  # never
    assert samples[("backup_last_duration_seconds", shop)] == 42
    assert samples[("backup_last_size_bytes", shop)] == 4096
    assert samples[("backup_backups", (("database", "shop"), ("status", "completed")))] == 2
    assert samples[("backup_backups", (("database", "shop"), ("status", "failed")))] == 1
    assert samples[("backup_copies", (("location", "local"), ("status", "present")))] == 2
    assert samples[("backup_copies", (("location", "s3"), ("status", "failed")))] == 1
    assert samples[("backup_copies", (("location", "s3"), ("status", "present")))] == 1
    assert samples[("backup_jobs", (("status", "queued"),))] == 1
    assert samples[("backup_jobs", (("status", "running"),))] == 1
    # The newest finished verify of shop's backups failed (the running one does not count yet).
    assert samples[("backup_last_verify_success", shop)] == 0
    assert samples[("backup_last_verify_timestamp_seconds", shop)] == (NOW - timedelta(minutes=19)).timestamp()
    assert all(name.startswith("backup_") for name, _labels in samples)


def test_every_process_on_one_catalog_answers_the_same(make_app):
    first, second = make_app(METRICS_TOKEN="metrics-token"), make_app(METRICS_TOKEN="metrics-token")
    fill_catalog(first)
    assert scrape(first) == scrape(second)


def test_openmetrics_when_asked(make_app):
    response = make_app(METRICS_TOKEN="metrics-token").test_client().get(
        "/metrics", headers={**TOKEN, "Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.mimetype == "application/openmetrics-text"
    assert response.get_data(as_text=True).endswith("# EOF\n")
