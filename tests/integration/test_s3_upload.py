"""S3Storage.upload's own multipart loop against the real S3 server: parts, edges, abort."""
import io
import os

import pytest

from backup_app.adapters.s3 import S3Storage
from backup_app.errors import StorageUnavailable

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
PART = 5 * MIB  # S3's smallest part size


@pytest.fixture
def storage(s3_settings):
    store = S3Storage.connect(s3_settings["MINIO_ENDPOINT"], s3_settings["MINIO_ACCESS_KEY"],
                              s3_settings["MINIO_SECRET_KEY"], bucket=s3_settings["MINIO_BUCKET"],
                              part_size=PART)
    store.ensure_bucket()
    return store


def read_back(storage, name: str) -> bytes:
    with storage.open(name) as stream:
        return stream.read()


@pytest.mark.parametrize("size", [0, 1000, PART, 2 * PART + 123])
def test_upload_round_trips_any_size_with_metadata(storage, size):
    data = os.urandom(size)

    storage.put("obj.dump", io.BytesIO(data), {"X-Database": "shop"}, "application/octet-stream")

    assert read_back(storage, "obj.dump") == data
    stat = storage.stat("obj.dump")
    assert stat.content_type == "application/octet-stream"
    assert {k.lower(): v for k, v in stat.metadata.items()}["x-database"] == "shop"


class FailingStream(io.BytesIO):
    """Gives one whole part, then fails as an aborted dump does."""

    def read(self, size=-1):
        if self.tell() >= PART:
            raise RuntimeError("dump failed")
        return super().read(size)


def test_failed_stream_leaves_no_object_and_no_pending_upload(storage):
    with pytest.raises(RuntimeError, match="dump failed"):
        storage.put("obj.dump", FailingStream(os.urandom(2 * PART)), {}, "application/octet-stream")

    assert storage.stat("obj.dump") is None
    uploads = storage.client._list_multipart_uploads(bucket_name=storage.bucket)
    assert list(uploads.uploads) == []


def test_unreachable_store_is_storage_unavailable(storage):
    dead = S3Storage.connect("127.0.0.1:9", "k", "s", bucket="b", part_size=PART)
    with pytest.raises(StorageUnavailable):
        dead.put("obj.dump", io.BytesIO(b"x"), {}, "application/octet-stream")


class Trickle(io.BytesIO):
    """A stream that, like a pipe or a socket, returns at most 1000 bytes per read."""

    def read(self, size=-1):
        return super().read(1000 if size < 0 else min(size, 1000))


def test_short_reads_are_not_taken_for_the_end(storage):
    data = os.urandom(2 * PART + 4567)

    storage.put("trickle.dump", Trickle(data), {}, "application/octet-stream")

    assert read_back(storage, "trickle.dump") == data


def test_parts_grow_so_the_largest_object_fits_in_the_part_limit(s3_settings, storage):
    """S3 allows 10,000 parts: fixed 16 MiB parts would fail at 156 GiB, hours into an upload.
    Scaled down here: 4 parts must hold 50 MiB, so they grow 5, 10, 15, 20 MiB."""
    small = S3Storage(storage.client, storage.bucket, storage.endpoint, PART, max_parts=4, max_object=50 * MIB)
    data = os.urandom(45 * MIB)

    small.put("big.dump", io.BytesIO(data), {}, "application/octet-stream")

    assert read_back(storage, "big.dump") == data
    assert storage.stat("big.dump").etag.endswith("-4"), "four parts, not nine of 5 MiB"
    with pytest.raises(StorageUnavailable, match="larger than one S3 object can be"):
        small.put("huge.dump", io.BytesIO(os.urandom(51 * MIB)), {}, "application/octet-stream")
    assert storage.stat("huge.dump") is None


def test_a_failed_abort_keeps_the_original_error(start_store):
    """The dump fails, and the store is gone by the time the upload is aborted: the error raised
    is the dump's, not the abort's."""
    server = start_store()
    store = S3Storage.connect(server.endpoint, server.access_key, server.secret_key, bucket="aborts",
                              part_size=PART)
    store.ensure_bucket()

    class DiesAfterOnePart(io.BytesIO):
        def read(self, size=-1):
            if self.tell() >= PART:
                server.kill()
                raise RuntimeError("dump failed")
            return super().read(size)

    with pytest.raises(RuntimeError, match="dump failed"):
        store.put("obj.dump", DiesAfterOnePart(os.urandom(2 * PART)), {}, "application/octet-stream")
