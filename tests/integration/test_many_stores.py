"""More than one S3 store (S3_STORES): every backup copied to each in the same stream, one killed.

The session's SeaweedFS is MINIO_*'s store ("s3"); each test starts a second SeaweedFS of its
own as the store "offsite" ("s3:offsite"), so it can kill and restart it.
"""
import hashlib
import io
import json

import pytest

from backup_app import wiring
from backup_app.adapters.local import sha256_of
from backup_app.extensions import db
from backup_app.models import Backup
from tests.helpers import copy_status, count_rows, create, error_line, invoke, sha256_file, show
from tests.web_helpers import add_user, sign_in

pytestmark = pytest.mark.integration

OFFSITE = "s3:offsite"
ALL_PRESENT = {"local": "present", "s3": "present", OFFSITE: "present"}


@pytest.fixture
def offsite(start_store):
    """A second SeaweedFS, for the test to kill and restart."""
    return start_store("offsite")


@pytest.fixture
def app(make_app, pg_cluster, source_db, s3_settings, offsite):
    """The app backing up `source_db` to the local folder, the session's S3 store and `offsite`."""
    store = {"name": "offsite", "endpoint": offsite.endpoint, "access_key": offsite.access_key,
             "secret_key": offsite.secret_key, "bucket": "offsite-backups", "secure": False, "region": None}
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), S3_STORES=[store], **s3_settings)
    result = invoke(app.test_cli_runner(), "storage", "init")
    assert "s3://offsite-backups on " + offsite.endpoint in result.stdout
    return app


@pytest.fixture
def stores(app):
    with app.app_context():
        return {store.location: store for store in wiring.s3_stores()}


def test_one_stream_fills_every_store_with_the_same_bytes(runner, stores, backup_dir, pg_cluster, source_db):
    backup = create(runner)

    assert copy_status(backup) == ALL_PRESENT
    assert backup["storage_url"] == stores["s3"].uri(backup["filename"])
    uris = {c["location"]: c["uri"] for c in backup["copies"]}
    assert uris[OFFSITE] == f"s3://offsite-backups/{backup['filename']}"
    for store in stores.values():
        with store.open(backup["filename"]) as stream:
            assert sha256_of(stream) == backup["sha256"]
        assert store.stat(backup["filename"]).metadata["x-backup-sha256"] == backup["sha256"]
        assert store.stat(backup["filename"]).metadata["x-database"] == source_db
    usage = json.loads(invoke(runner, "storage", "usage", "--json").stdout)
    assert usage[OFFSITE] == usage["s3"] == usage["local"] == {"bytes": backup["size_bytes"], "backups": 1,
                                                               "pitr_bytes": 0}

    # Local gone, the first store's copy corrupt: the offsite copy is the first healthy one.
    (backup_dir / backup["filename"]).unlink()
    stores["s3"].client.put_object(bucket_name=stores["s3"].bucket, object_name=backup["filename"],
                                   data=io.BytesIO(b"rotten"), length=6)
    pg_cluster.psql("DELETE FROM orders", source_db)
    invoke(runner, "backup", "restore", backup["id"], "--yes")

    assert count_rows(pg_cluster, source_db) == 3000
    assert sha256_file(backup_dir / backup["filename"]) == backup["sha256"]
    assert copy_status(show(runner, backup["id"])) == {"local": "present", "s3": "failed", OFFSITE: "present"}


def test_a_killed_store_fails_only_its_copy_and_sync_fills_it_later(runner, app, offsite, stores):
    offsite.kill()

    result = invoke(runner, "backup", "create", "--json")
    backup = json.loads(result.stdout)

    assert copy_status(backup) == {"local": "present", "s3": "present", OFFSITE: "failed"}
    error = next(c["error"] for c in backup["copies"] if c["location"] == OFFSITE)
    assert f"cannot reach S3 at {offsite.endpoint}" in error
    assert f"Warning: {OFFSITE} copy failed: cannot reach S3 at {offsite.endpoint}" in result.stderr

    with app.test_client() as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"].items() >= {"s3": "ok", OFFSITE: "fail", "local": "ok"}.items()

    # While offsite is down, sync still uploads nothing twice and names the store it could not reach.
    failed = invoke(runner, "backup", "sync", "--json", ok=False)
    assert json.loads(failed.stdout) == []
    assert error_line(failed).startswith(f"Error: {OFFSITE}: cannot reach S3 at {offsite.endpoint}")

    offsite.restart()
    synced = json.loads(invoke(runner, "backup", "sync", "--json").stdout)
    assert synced == [{"id": backup["id"], "filename": backup["filename"], "action": "uploaded",
                       "location": OFFSITE, "error": None}]
    assert copy_status(show(runner, backup["id"])) == ALL_PRESENT
    with stores[OFFSITE].open(backup["filename"]) as stream:
        assert sha256_of(stream) == backup["sha256"]
    assert json.loads(invoke(runner, "backup", "sync", "--json").stdout) == [], "nothing left to do"


def test_sync_fills_a_store_from_another_when_the_local_file_is_gone(runner, offsite, stores, backup_dir):
    backup = create(runner)
    (backup_dir / backup["filename"]).unlink()
    stores[OFFSITE].delete(backup["filename"])

    synced = json.loads(invoke(runner, "backup", "sync", "--json").stdout)

    assert [(a["action"], a["location"]) for a in synced] == [("uploaded", OFFSITE)]
    assert copy_status(show(runner, backup["id"])) == ALL_PRESENT
    assert sha256_file(backup_dir / backup["filename"]) == backup["sha256"], "fetched back on the way"


def test_download_reads_the_first_store_that_has_the_object(runner, app, stores, backup_dir, tmp_path):
    backup = create(runner)
    (backup_dir / backup["filename"]).unlink()
    stores["s3"].delete(backup["filename"])

    invoke(runner, "backup", "download", backup["id"], "--output", str(tmp_path / "out.dump"))
    assert sha256_file(tmp_path / "out.dump") == backup["sha256"]
    assert copy_status(show(runner, backup["id"])) == {"local": "missing", "s3": "missing", OFFSITE: "present"}

    add_user(app)
    with app.test_client() as client:
        sign_in(client)
        response = client.get(f"/backups/{backup['id']}/download")
        assert response.status_code == 200
        assert hashlib.sha256(response.data).hexdigest() == backup["sha256"]
        detail = client.get(f"/backups/{backup['id']}").get_data(as_text=True)
    assert "S3 objects" in detail and "offsite" in detail and "the object does not exist" in detail


def test_restore_with_no_readable_copy_names_every_place(runner, offsite, stores, backup_dir):
    backup = create(runner)
    (backup_dir / backup["filename"]).unlink()
    stores["s3"].delete(backup["filename"])
    offsite.kill()

    result = invoke(runner, "backup", "restore", backup["id"], "--yes", ok=False)

    assert error_line(result).startswith(
        f"Error: Backup file not found locally or in storage ({OFFSITE}: cannot reach S3 at {offsite.endpoint}")
    assert not (backup_dir / f"{backup['filename']}.partial").exists()


def test_delete_while_a_store_holding_a_copy_is_down_deletes_nothing(runner, offsite, stores, backup_dir):
    backup = create(runner)
    offsite.kill()

    result = invoke(runner, "backup", "delete", backup["id"], "--yes", ok=False)

    assert f"cannot reach S3 at {offsite.endpoint}" in error_line(result)
    after = show(runner, backup["id"])
    assert (backup_dir / backup["filename"]).exists(), "the local file stays"
    assert copy_status(after) == {"local": "present", "s3": "missing", OFFSITE: "present"}, \
        "the object already removed from the first store is recorded as missing"

    offsite.restart()
    invoke(runner, "backup", "delete", backup["id"], "--yes")
    assert stores[OFFSITE].stat(backup["filename"]) is None
    assert not (backup_dir / backup["filename"]).exists()


def test_rescan_records_the_copies_of_every_store(runner, app, stores, backup_dir):
    backup = create(runner)
    (backup_dir / backup["filename"]).unlink()
    with app.app_context():
        db.session.delete(db.session.get(Backup, backup["id"]))
        db.session.commit()

    report = json.loads(invoke(runner, "backup", "rescan", "--json").stdout)

    assert [item["id"] for item in report["added"]] == [backup["id"]]
    rebuilt = show(runner, backup["id"])
    assert copy_status(rebuilt) == {"s3": "present", OFFSITE: "present"}
    assert rebuilt["sha256"] == backup["sha256"]


def test_storage_init_names_the_store_it_could_not_reach_and_sets_up_the_others(runner, offsite, stores):
    offsite.kill()

    result = invoke(runner, "storage", "init", ok=False)

    assert f"Bucket exists: s3://{stores['s3'].bucket}" in result.stdout, "the reachable store is still set up"
    assert error_line(result).startswith(f"Error: {OFFSITE}: cannot reach S3 at {offsite.endpoint}")


class AlteringStore:
    """A real S3 store whose objects read back as other bytes of the same length once written: after
    each put the object in SeaweedFS is replaced (a disk or a gateway that alters what it keeps)."""

    def __init__(self, store):
        self.store = store

    def __getattr__(self, name):
        return getattr(self.store, name)

    def put(self, filename, stream, metadata, content_type) -> None:
        self.store.put(filename, stream, metadata, content_type)
        size = self.store.stat(filename).size
        self.store.client.put_object(bucket_name=self.store.bucket, object_name=self.store.key(filename),
                                     data=io.BytesIO(b"\0" * size), length=size)


def stored_sha256(store, filename: str) -> str:
    with store.open(filename) as stream:
        return sha256_of(stream)


def test_a_sync_that_reads_back_other_bytes_marks_that_copy_failed_and_overwrites_nothing(
        app, runner, stores, backup_dir, monkeypatch):
    backup = create(runner)
    local = backup_dir / backup["filename"]
    stores["s3"].delete(backup["filename"])  # lost: the sync uploads it again
    offsite_before = stores[OFFSITE].stat(backup["filename"])
    with app.app_context(), monkeypatch.context() as patch:
        patch.setattr(wiring.adapters(), "stores", [AlteringStore(stores["s3"]), stores[OFFSITE]])
        failed = invoke(runner, "backup", "sync", "--json", ok=False)

    message = f"the uploaded copy of {backup['filename']} reads back with another SHA-256"
    assert json.loads(failed.stdout) == [{"id": backup["id"], "filename": backup["filename"], "action": "failed",
                                          "location": "s3", "error": message}]
    assert error_line(failed) == f"Error: 1 backup(s) could not be synced: {backup['id']} (s3): {message}"
    after = show(runner, backup["id"])
    assert copy_status(after) == {"local": "present", "s3": "failed", OFFSITE: "present"}
    assert next(c["error"] for c in after["copies"] if c["location"] == "s3") == "SHA-256 mismatch after upload"
    assert sha256_file(local) == backup["sha256"], "the local file is untouched"
    assert stores[OFFSITE].stat(backup["filename"]) == offsite_before, "the good copy was not written over"
    assert stored_sha256(stores[OFFSITE], backup["filename"]) == backup["sha256"]

    synced = json.loads(invoke(runner, "backup", "sync", "--json").stdout)  # the store keeps bytes again

    assert [(a["action"], a["location"]) for a in synced] == [("uploaded", "s3")]
    assert copy_status(show(runner, backup["id"])) == ALL_PRESENT
    assert stored_sha256(stores["s3"], backup["filename"]) == backup["sha256"]
