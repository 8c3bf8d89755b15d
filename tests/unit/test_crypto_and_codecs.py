import base64
import io
import os

import pytest

from backup_app.core import codecs
from backup_app.core.crypto import DecryptingReader, DecryptionFailed, EncryptingReader, MasterKey
from backup_app.errors import ConfigurationError


def new_key() -> MasterKey:
    return MasterKey(base64.urlsafe_b64encode(os.urandom(32)).decode())


@pytest.mark.parametrize("size", [0, 1, 1000, 64 * 1024, 64 * 1024 + 1, 3 * 64 * 1024])
def test_encryption_round_trip_at_chunk_boundaries(size):
    key, data = new_key(), os.urandom(size)

    sealed = EncryptingReader(io.BytesIO(data), key, chunk_size=64 * 1024).read()

    assert not sealed.startswith(b"PGDMP")
    if size >= 64:
        assert data[:64] not in sealed
    assert DecryptingReader(io.BytesIO(sealed), key).read() == data


def sealed_sample(key, size=200_000):
    return EncryptingReader(io.BytesIO(b"PGDMP" + os.urandom(size)), key, chunk_size=64 * 1024).read()


def test_wrong_key_is_named_before_any_plaintext():
    sealed = sealed_sample(new_key())

    with pytest.raises(DecryptionFailed, match="another APP_ENCRYPTION_KEY"):
        DecryptingReader(io.BytesIO(sealed), new_key())


@pytest.mark.parametrize("damage", ["truncate-chunk", "drop-last-chunk", "flip", "append"])
def test_damaged_ciphertext_never_decrypts(damage):
    key = new_key()
    sealed = bytearray(sealed_sample(key))
    if damage == "truncate-chunk":
        sealed = sealed[:-10]
    elif damage == "drop-last-chunk":
        sealed = sealed[:-(200_005 % (64 * 1024) + 16)]
    elif damage == "flip":
        sealed[len(sealed) // 2] ^= 1
    else:
        sealed += b"x"

    with pytest.raises(DecryptionFailed):
        DecryptingReader(io.BytesIO(bytes(sealed)), key).read()


def test_master_key_must_be_32_bytes():
    with pytest.raises(ConfigurationError, match="urlsafe base64 of 32 bytes"):
        MasterKey("too-short")


def test_stored_secrets_need_the_same_key():
    key = new_key()
    token = key.encrypt_secret("hunter2")

    assert "hunter2" not in token and key.decrypt_secret(token) == "hunter2"
    with pytest.raises(DecryptionFailed, match="not the key it was stored with"):
        new_key().decrypt_secret(token)


@pytest.mark.parametrize("fmt, codec, encrypted", [
    ("custom", "gzip", False), ("custom", "zstd", False), ("custom", "plain", True),
    ("custom", "zstd", True), ("plain", "gzip", False), ("plain", "zstd", True),
])
def test_decode_undoes_encode(fmt, codec, encrypted):
    key = new_key() if encrypted else None
    original = b"-- SQL dump\n" + b"INSERT INTO t VALUES (1);\n" * 50_000
    if fmt == "plain" and codec == "gzip":
        import gzip
        from_pg_dump = gzip.compress(original)  # pg_dump -Fp -Z6 writes gzip itself
    else:
        from_pg_dump = original

    stored = codecs.encode(io.BytesIO(from_pg_dump), codec, key).read()
    decoded = codecs.decode(io.BytesIO(stored), fmt, codec, key).read()

    expected = original if (fmt == "plain" and codec == "gzip") else from_pg_dump
    assert decoded == expected
    if codec == "zstd" and not encrypted:
        assert stored[:4] == b"\x28\xb5\x2f\xfd", "a bare zstd frame"
        assert len(stored) < len(original) / 10


def test_file_names_say_what_the_bytes_are():
    assert codecs.file_suffix("custom", "gzip", False) == ".dump"
    assert codecs.file_suffix("custom", "zstd", True) == ".dump.zst.enc"
    assert codecs.file_suffix("plain", "gzip", False) == ".sql.gz"
    assert codecs.file_suffix("plain", "plain", False) == ".sql"
