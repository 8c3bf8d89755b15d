"""An S3-compatible bucket (one per store), spoken to with the minio client.
"""
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

import urllib3
from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from minio.datatypes import Part
from minio.error import MinioException, S3Error

from backup_app.adapters.local import check_name
from backup_app.adapters.store import StoredObject
from backup_app.core.streams import read_full
from backup_app.errors import ObjectNotFound, StorageUnavailable

CREDENTIAL_ERRORS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"}


# S3's limits on one multipart upload.
MAX_PARTS, MAX_OBJECT, MAX_PART = 10_000, 5 * 1024 ** 4, 5 * 1024 ** 3


log = logging.getLogger(__name__)


def part_sizes(first: int, max_parts: int = MAX_PARTS, max_object: int = MAX_OBJECT) -> Iterator[int]:
    """The size of each part of an upload whose length is unknown: `first` for the first tenth
    of the parts, then one same step larger for each next tenth, chosen so that `max_parts`
    parts hold `max_object` bytes. Memory holds one part: with 8 MiB, 8 MiB parts up to 7.8 GiB,
    128 MiB parts for the next tenth, …, 1.06 GiB for the last tenth (past 4.2 TiB)."""
    tenth = max(1, max_parts // 10)
    steps = -(-max_parts // tenth)
    # tenth × first × Σ (1 + k·step) for k < steps ≥ max_object
    step = max(0, math.ceil((max_object / (tenth * first) - steps) / (steps * (steps - 1) / 2 or 1)))
    for number in range(max_parts):
        yield min(first * (1 + number // tenth * step), MAX_PART)


def user_metadata(stat) -> dict[str, str]:
    """An object's user metadata (from its stat) with lowercase names and no `x-amz-meta-` prefix."""
    return {k.lower().removeprefix("x-amz-meta-"): v for k, v in stat.metadata.items()
            if k.lower().startswith("x-amz-meta-")}


def describe_s3_error(exc: Exception, endpoint: str, key_settings: str) -> str:
    """A one-line reason for an S3 failure that names what the admin should check."""
    if isinstance(exc, S3Error):
        if exc.code in CREDENTIAL_ERRORS:
            return f"S3 at {endpoint} refused the credentials ({exc.code}): check {key_settings}"
        return f"S3 at {endpoint} answered {exc.code}: {exc.message}"
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    return f"cannot reach S3 at {endpoint}: {type(exc).__name__}: {exc}"


class S3Storage:
    """Backups as objects in one private bucket of an S3-compatible store.

    `location` names the store's copies in the catalog: "s3" for MINIO_*'s store, "s3:<name>"
    for each of S3_STORES; `key_settings` names its credential settings in error messages.
    `probe_client` (default: `client`) answers `check()`: it gives up sooner than the client
    that moves the data.
    """

    def __init__(self, client: Minio, bucket: str, endpoint: str, part_size: int, *,
                 location: str = "s3", key_settings: str = "MINIO_ACCESS_KEY and MINIO_SECRET_KEY",
                 probe_client: Minio | None = None, max_parts: int = MAX_PARTS, max_object: int = MAX_OBJECT,
                 prefix: str = ""):
        self.client = client
        self.prefix = prefix
        self.probe_client = probe_client or client
        self.bucket = bucket
        self.endpoint = endpoint
        self.part_size = part_size
        self.location = location
        self.key_settings = key_settings
        self.max_parts, self.max_object = max_parts, max_object

    @classmethod
    def connect(cls, endpoint: str, access_key: str | None, secret_key: str | None, *,
                bucket: str, secure: bool = False, region: str | None = None,
                part_size: int = 16 * 1024 * 1024, **names: str) -> "S3Storage":
        """Clients that fail in seconds when the store is down or hangs, not after minutes of retries.

        The probe (`check()`) tries once with a 5 s read timeout; the data client retries a
        failed request once or twice, waiting at most 20 s for an answer each time.
        `names`: the store's `location` and `key_settings` (see the class)."""
        def client(timeout: urllib3.Timeout, retries: urllib3.Retry) -> Minio:
            http = urllib3.PoolManager(timeout=timeout, retries=retries)
            return Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure,
                         region=region, http_client=http)
        data = client(urllib3.Timeout(connect=3, read=20),
                      urllib3.Retry(total=2, connect=1, read=1, backoff_factor=0.2,
                                    status_forcelist=(500, 502, 503, 504)))
        probe = client(urllib3.Timeout(connect=3, read=5), urllib3.Retry(total=0))
        return cls(data, bucket, endpoint, part_size, probe_client=probe, **names)

    def with_prefix(self, prefix: str) -> "S3Storage":
        """The same store and clients, keeping its objects under `prefix` (`pitr/`)."""
        return S3Storage(self.client, self.bucket, self.endpoint, self.part_size, location=self.location,
                         key_settings=self.key_settings, probe_client=self.probe_client,
                         max_parts=self.max_parts, max_object=self.max_object, prefix=prefix)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectNotFound(f"s3://{self.bucket}/{exc.object_name} does not exist") from exc
            raise StorageUnavailable(describe_s3_error(exc, self.endpoint, self.key_settings)) from exc
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            raise StorageUnavailable(describe_s3_error(exc, self.endpoint, self.key_settings)) from exc

    def key(self, filename: str) -> str:
        return self.prefix + check_name(filename)

    def uri(self, filename: str) -> str:
        return f"s3://{self.bucket}/{self.key(filename)}"

    def check(self) -> None:
        """Raise StorageUnavailable unless the bucket exists and the keys work."""
        with self._errors():
            exists = self.probe_client.bucket_exists(bucket_name=self.bucket)
        if not exists:
            raise StorageUnavailable(
                f"bucket {self.bucket!r} does not exist on {self.endpoint}; run `flask storage init`")

    def ensure_bucket(self) -> bool:
        """Create the (private) bucket if missing; True if it was created."""
        with self._errors():
            if self.client.bucket_exists(bucket_name=self.bucket):
                return False
            self.client.make_bucket(bucket_name=self.bucket)
            return True

    def put(self, filename: str, stream: BinaryIO, metadata: dict[str, str], content_type: str) -> None:
        """Upload a stream of unknown length as a multipart upload, one part in memory at a time.

        Parts grow as the upload does (see `part_sizes`), so any object up to S3's 5 TiB fits
        in its 10,000 parts. minio's put_object(length=-1) keeps three parts alive at once;
        this loop uses minio's multipart calls directly (not public API: minio < 8) and drops
        each part before reading the next. On failure the upload is aborted; if the abort
        fails too, the original error is the one raised.
        """
        key = self.key(filename)
        headers = {"Content-Type": content_type, **{f"X-Amz-Meta-{k}": v for k, v in metadata.items()}}
        client = self.client
        with self._errors():
            upload_id = client._create_multipart_upload(
                bucket_name=self.bucket, object_name=key, headers=headers)
            try:
                parts = self._upload_parts(key, upload_id, stream)
                client._complete_multipart_upload(
                    bucket_name=self.bucket, object_name=key, upload_id=upload_id, parts=parts)
            except Exception:
                try:
                    client._abort_multipart_upload(bucket_name=self.bucket, object_name=key, upload_id=upload_id)
                except Exception:  # noqa: BLE001 - the failure that made us abort is the one to report
                    log.warning("could not abort the multipart upload of %s to %s", key, self.endpoint,
                                exc_info=True)
                raise

    def _upload_parts(self, key: str, upload_id: str, stream: BinaryIO) -> list[Part]:
        parts = []
        for number, size in enumerate(part_sizes(self.part_size, self.max_parts, self.max_object), start=1):
            data = read_full(stream, size)  # a short read means the end
            if data or not parts:
                etag = self.client._upload_part(bucket_name=self.bucket, object_name=key, data=data, headers=None,
                                                upload_id=upload_id, part_number=number)
                parts.append(Part(number, etag))
            last = len(data) < size
            del data
            if last:
                return parts
        raise StorageUnavailable(f"the backup is larger than one S3 object can be ({self.max_parts} parts, "
                                 f"{self.max_object / 1024 ** 4:g} TiB)")

    def set_metadata(self, filename: str, metadata: dict[str, str], content_type: str) -> None:
        """Replace an object's metadata (a server-side copy onto itself)."""
        key = self.key(filename)
        with self._errors():
            self.client.copy_object(
                bucket_name=self.bucket, object_name=key,
                source=CopySource(bucket_name=self.bucket, object_name=key),
                metadata={"Content-Type": content_type, **metadata}, metadata_directive=REPLACE)

    def stat(self, filename: str) -> StoredObject | None:
        """The object's size, time, content type, ETag and user metadata, or None when it does not exist."""
        try:
            with self._errors():
                found = self.client.stat_object(bucket_name=self.bucket, object_name=self.key(filename))
        except ObjectNotFound:
            return None
        return StoredObject(found.size, found.last_modified, found.content_type, found.etag, user_metadata(found))

    def list(self) -> Iterator[tuple[str, int]]:
        """(name, size) of every object in the bucket (under the prefix, without it)."""
        with self._errors():
            for obj in self.client.list_objects(bucket_name=self.bucket, prefix=self.prefix or None,
                                                recursive=True):
                yield obj.object_name.removeprefix(self.prefix), obj.size

    @contextmanager
    def open(self, filename: str) -> Iterator[BinaryIO]:
        """The object's bytes as a stream; raises StorageUnavailable when it cannot be read."""
        with self._errors():
            response = self.client.get_object(bucket_name=self.bucket, object_name=self.key(filename))
        try:
            with self._errors():
                yield response
        finally:
            response.close()
            response.release_conn()

    def delete(self, filename: str) -> None:
        """Remove the object; deleting a missing object is not an error in S3."""
        with self._errors():
            self.client.remove_object(bucket_name=self.bucket, object_name=self.key(filename))
