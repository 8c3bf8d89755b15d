"""Encryption with the master key `APP_ENCRYPTION_KEY` (urlsafe base64 of 32 bytes).

Two uses, each with its own subkey derived by HKDF, so neither can be turned on the other:
- target passwords stored in the catalog (Fernet tokens);
- backups encrypted at rest: AES-256-GCM over fixed-size chunks with a random per-backup
  data key, wrapped by the master key and stored in the file's header. Each chunk's nonce
  carries its counter and a last-chunk flag (the STREAM construction), so reordered,
  truncated or extended ciphertext fails to decrypt instead of yielding garbage.

Encrypted file layout:
    MAGIC | key id (8) | wrap nonce (12) | wrapped data key (48) | chunk size (4, BE) | nonce prefix (7)
    then chunks of `chunk size` plaintext bytes + 16-byte tag; the last chunk is always
    shorter than a full one (empty if need be).

`cryptography` is imported when a key is first used, not when this module is.
"""
from __future__ import annotations

import base64
import binascii
import os
import struct
from functools import cached_property
from typing import TYPE_CHECKING, BinaryIO

from backup_app.core.streams import read_full
from backup_app.errors import BackupError, ConfigurationError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"BKAPPENC1\n"
CHUNK_SIZE = 1024 * 1024
TAG_SIZE = 16
HEADER = struct.Struct(f">{len(MAGIC)}s8s12s48sI7s")


class DecryptionFailed(BackupError):
    """Encrypted bytes could not be decrypted: wrong key, or damaged data."""


class SecretUnreadable(DecryptionFailed, ConfigurationError):
    """A secret in the catalog was stored under another APP_ENCRYPTION_KEY: a setting to fix
    (pages and API answer 400, as for a missing key), not damaged data."""


def is_encrypted(head: bytes) -> bool:
    return head.startswith(MAGIC)


class MasterKey:
    """The app's master key and the subkeys derived from it."""

    def __init__(self, encoded: str):
        try:
            raw = base64.urlsafe_b64decode(encoded.encode())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ConfigurationError(
                "APP_ENCRYPTION_KEY must be urlsafe base64 of 32 bytes; make one with "
                "python -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'")
        self._raw = raw

    @cached_property
    def key_id(self) -> bytes:
        """8 bytes that name this key in the header of what it encrypts."""
        return self._derive(b"backup_app key id")[:8]

    @classmethod
    def from_config(cls, value: str | None, purpose: str) -> "MasterKey":
        if not value:
            raise ConfigurationError(f"APP_ENCRYPTION_KEY is not set; it is needed to {purpose}")
        return cls(value)

    def _derive(self, info: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(self._raw)

    def _secrets(self) -> Fernet:
        from cryptography.fernet import Fernet

        return Fernet(base64.urlsafe_b64encode(self._derive(b"backup_app stored secrets")))

    def encrypt_secret(self, plaintext: str) -> str:
        """A Fernet token for a secret kept in the catalog (a target's password)."""
        return self._secrets().encrypt(plaintext.encode()).decode()

    def decrypt_secret(self, token: str) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._secrets().decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable(
                "a stored password cannot be decrypted: APP_ENCRYPTION_KEY is not the key it was "
                "stored with") from None

    def _wrapping(self) -> AESGCM:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(self._derive(b"backup_app data key wrapping"))

    def wrap(self, data_key: bytes) -> tuple[bytes, bytes]:
        nonce = os.urandom(12)
        return nonce, self._wrapping().encrypt(nonce, data_key, MAGIC)

    def unwrap(self, key_id: bytes, nonce: bytes, wrapped: bytes) -> bytes:
        if key_id != self.key_id:
            raise DecryptionFailed(
                f"this backup was encrypted with another APP_ENCRYPTION_KEY (key id {key_id.hex()}, "
                f"the configured key is {self.key_id.hex()})")
        from cryptography.exceptions import InvalidTag

        try:
            return self._wrapping().decrypt(nonce, wrapped, MAGIC)
        except InvalidTag:
            raise DecryptionFailed("the backup's key header is damaged") from None


def chunk_nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


class BufferedTransform:
    """A reader producing transformed bytes block by block: subclasses define `_next_block()`."""

    def __init__(self):
        self._buffer = b""
        self._done = False

    def _next_block(self) -> bytes | None:
        raise NotImplementedError

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buffer) < size):
            block = self._next_block()
            if block is None:
                self._done = True
            else:
                self._buffer += block
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


class EncryptingReader(BufferedTransform):
    """Reads `source` and yields its encryption under a fresh data key."""

    def __init__(self, source: BinaryIO, key: MasterKey, chunk_size: int = CHUNK_SIZE):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        super().__init__()
        data_key = AESGCM.generate_key(bit_length=256)
        wrap_nonce, wrapped = key.wrap(data_key)
        self._aead = AESGCM(data_key)
        self._prefix = os.urandom(7)
        self._source = source
        self._chunk_size = chunk_size
        self._counter = 0
        self._finished = False
        self._buffer = HEADER.pack(MAGIC, key.key_id, wrap_nonce, wrapped, chunk_size, self._prefix)

    def _next_block(self) -> bytes | None:
        if self._finished:
            return None
        plaintext = read_full(self._source, self._chunk_size)
        last = len(plaintext) < self._chunk_size
        block = self._aead.encrypt(chunk_nonce(self._prefix, self._counter, last), plaintext, None)
        self._counter += 1
        self._finished = last
        return block


class DecryptingReader(BufferedTransform):
    """Reads an encrypted stream and yields the plaintext; raises DecryptionFailed on any damage."""

    def __init__(self, source: BinaryIO, key: MasterKey):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        super().__init__()
        header = read_full(source, HEADER.size)
        if len(header) < HEADER.size or not is_encrypted(header):
            raise DecryptionFailed("not an encrypted backup (header missing)")
        _, key_id, wrap_nonce, wrapped, chunk_size, prefix = HEADER.unpack(header)
        self._aead = AESGCM(key.unwrap(key_id, wrap_nonce, wrapped))
        self._source = source
        self._prefix = prefix
        self._chunk_size = chunk_size
        self._counter = 0
        self._finished = False

    def _next_block(self) -> bytes | None:
        if self._finished:
            if self._source.read(1):
                raise DecryptionFailed("encrypted backup has data after its last chunk")
            return None
        block = read_full(self._source, self._chunk_size + TAG_SIZE)
        last = len(block) < self._chunk_size + TAG_SIZE
        from cryptography.exceptions import InvalidTag

        try:
            plaintext = self._aead.decrypt(chunk_nonce(self._prefix, self._counter, last), block, None)
        except InvalidTag:
            raise DecryptionFailed(
                f"encrypted backup is damaged or truncated (chunk {self._counter})") from None
        self._counter += 1
        self._finished = last
        return plaintext
