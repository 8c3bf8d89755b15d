"""How dump bytes are stored: compressed by pg_dump (gzip), by zstd, or not at all; then
optionally encrypted. `encode` wraps pg_dump's output; `decode` undoes it for restore (zstandard and
the cipher are imported when a stream is coded)."""
from __future__ import annotations

import gzip
from typing import TYPE_CHECKING, BinaryIO

from backup_app.errors import ConfigurationError

if TYPE_CHECKING:
    from backup_app.core.crypto import MasterKey

CODECS = ("gzip", "zstd", "plain")
FORMATS = ("custom", "plain")  # what pg_dump makes here; an imported dump may also be a "tar" archive
GLOBALS = "globals"  # pg_dumpall --globals-only: SQL, stored plain or zstd, never pg_dump's gzip
STORED_FORMATS = (*FORMATS, GLOBALS)  # a target dumps in FORMATS; its runs also store GLOBALS
ZSTD_LEVEL = 3
READ_SIZE = 1024 * 1024


def check(fmt: str, codec: str, formats: tuple[str, ...] = FORMATS) -> None:
    if fmt not in formats:
        raise ConfigurationError(f"unknown format {fmt!r}; use one of: {', '.join(formats)}")
    if codec not in CODECS:
        raise ConfigurationError(f"unknown codec {codec!r}; use one of: {', '.join(CODECS)}")


def pg_dump_compression(fmt: str, codec: str) -> list[str]:
    """pg_dump's own compression option for this codec."""
    if fmt == GLOBALS:
        return []  # pg_dumpall has no compression
    if codec == "gzip":
        return [] if fmt == "custom" else ["--compress=6"]  # custom compresses by default
    return ["--compress=0"]


def file_suffix(fmt: str, codec: str, encrypted: bool) -> str:
    """`.dump`, `.sql.gz`, `.dump.zst.enc`, `.tar.zst`, …: the name says what the bytes are."""
    suffix = {"custom": ".dump", "tar": ".tar", GLOBALS: ".globals.sql"}.get(fmt, ".sql")
    if codec == "zstd":
        suffix += ".zst"
    elif codec == "gzip" and fmt == "plain":
        suffix += ".gz"
    return suffix + (".enc" if encrypted else "")


def content_type(fmt: str, codec: str, encrypted: bool) -> str:
    if encrypted or fmt != "plain" or codec != "plain":
        return "application/octet-stream"
    return "application/sql"


def is_bare_archive(fmt: str, codec: str, encrypted: bool) -> bool:
    """Whether the stored bytes are pg_dump's own custom archive, which pg_restore can read
    (and seek in, for a parallel restore) itself."""
    return fmt == "custom" and codec in ("gzip", "plain") and not encrypted


def encode(dump_output: BinaryIO, codec: str, key: MasterKey | None) -> BinaryIO:
    """The bytes to store, read from pg_dump's output: zstd-compressed and/or encrypted."""
    from backup_app.core.crypto import EncryptingReader

    stream = dump_output
    if codec == "zstd":
        import zstandard

        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1)
        stream = compressor.stream_reader(stream, read_size=READ_SIZE)
    if key is not None:
        stream = EncryptingReader(stream, key)
    return stream


def decode(stored: BinaryIO, fmt: str, codec: str, key: MasterKey | None) -> BinaryIO:
    """pg_dump's original output, read from the stored bytes. `key` is required when encrypted."""
    from backup_app.core.crypto import DecryptingReader

    stream = stored
    if key is not None:
        stream = DecryptingReader(stream, key)
    if codec == "zstd":
        import zstandard

        stream = zstandard.ZstdDecompressor().stream_reader(stream, read_size=READ_SIZE)
    elif codec == "gzip" and fmt == "plain":
        stream = gzip.GzipFile(fileobj=stream, mode="rb")
    return stream
