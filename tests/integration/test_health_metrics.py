"""/readyz and /metrics against real PostgreSQL and SeaweedFS."""
from datetime import datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import create

pytestmark = pytest.mark.integration


def test_ready_when_every_part_answers_and_not_when_one_does_not(app, make_app, pg_cluster, source_db, s3_settings):
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "ok", "checks": {"catalog": "ok", "local": "ok", "s3": "ok", "queue": "ok"}}

    wrong_key = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), **{**s3_settings,
                                                                          "MINIO_SECRET_KEY": "not-the-secret"})
    down = wrong_key.test_client().get("/readyz")
    assert down.status_code == 503 and down.json["status"] == "fail"
    assert down.json["checks"] == {"catalog": "ok", "local": "ok", "s3": "fail", "queue": "ok"}
    assert "not-the-secret" not in down.get_data(as_text=True)


def test_metrics_after_a_real_backup(app, runner, source_db):
    backup = create(runner)
    app.config["METRICS_TOKEN"] = "metrics-token"
    response = app.test_client().get("/metrics", headers={"Authorization": "Bearer metrics-token"})
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(response.get_data(as_text=True))
               for sample in family.samples}
    database = (("database", source_db),)
    completed = datetime.fromisoformat(backup["completed_at"].replace("Z", "+00:00"))
    assert samples[("backup_last_success_timestamp_seconds", database)] == completed.timestamp()
    assert samples[("backup_last_size_bytes", database)] == backup["size_bytes"]
    assert samples[("backup_last_duration_seconds", database)] > 0
    assert samples[("backup_backups", (("database", source_db), ("status", "completed")))] == 1
    for location in ("local", "s3"):
        assert samples[("backup_copies", (("location", location), ("status", "present")))] == 1
