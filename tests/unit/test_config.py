"""Settings read from the environment: the extra S3 stores of S3_STORES, PITR_PRELOAD_LIBRARIES."""
import pytest

from backup_app.config import extra_s3_stores, preload_libraries


def test_each_named_store_reads_its_own_variables_with_defaults():
    env = {"S3_STORES": "offsite, archive_2", "S3_OFFSITE_ENDPOINT": "s3.example:9000",
           "S3_OFFSITE_ACCESS_KEY": "ak", "S3_OFFSITE_SECRET_KEY": "sk", "S3_OFFSITE_SECURE": "true",
           "S3_OFFSITE_REGION": "eu-west-1", "S3_ARCHIVE_2_ENDPOINT": "10.0.0.5:9000",
           "S3_ARCHIVE_2_BUCKET": "cold", "S3_OFFSITE_ALERT_BYTES": "5000000000"}

    assert extra_s3_stores(env) == [
        {"name": "offsite", "endpoint": "s3.example:9000", "access_key": "ak", "secret_key": "sk",
         "bucket": "backups", "secure": True, "region": "eu-west-1", "alert_bytes": 5_000_000_000},
        {"name": "archive_2", "endpoint": "10.0.0.5:9000", "access_key": None, "secret_key": None,
         "bucket": "cold", "secure": False, "region": None, "alert_bytes": None},
    ]


def test_no_stores_when_unset_or_empty():
    assert extra_s3_stores({}) == [] == extra_s3_stores({"S3_STORES": " , "})


@pytest.mark.parametrize("env, message", [
    ({"S3_STORES": "offsite"}, "S3_STORES names 'offsite' but S3_OFFSITE_ENDPOINT is not set"),
    ({"S3_STORES": "Off-site", "S3_OFF-SITE_ENDPOINT": "x"}, "S3_STORES: 'Off-site' is not a store name"),
    ({"S3_STORES": "a" * 30, f"S3_{'A' * 30}_ENDPOINT": "x"}, "is not a store name"),
    ({"S3_STORES": "x,x", "S3_X_ENDPOINT": "h:1"}, "S3_STORES names 'x' twice"),
    ({"S3_STORES": "x", "S3_X_ENDPOINT": "h:1", "S3_X_ALERT_BYTES": "5GB"},
     "S3_X_ALERT_BYTES must be a number of bytes"),
])
def test_a_malformed_store_list_is_refused_with_its_reason(env, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        extra_s3_stores(env)


def test_preload_libraries_are_bare_names():
    assert preload_libraries({"PITR_PRELOAD_LIBRARIES": "pg_stat_statements, timescaledb"}) == \
        ("pg_stat_statements", "timescaledb")
    assert preload_libraries({}) == ()


@pytest.mark.parametrize("name", ["./evil.so", "/tmp/evil.so", "$libdir/x", "..", "a/b"])
def test_a_preload_library_with_a_path_is_refused(name):
    with pytest.raises(ValueError, match="is not a library name"):
        preload_libraries({"PITR_PRELOAD_LIBRARIES": name})
