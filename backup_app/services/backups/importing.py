"""Importing a dump made elsewhere: checked to be one, then stored like a backup the app made.

The file may be a custom archive (`pg_dump -Fc`), a tar archive (`-Ft`) or a plain SQL script,
each optionally gzip- or zstd-compressed (told by its first bytes, never by its name). Before
anything is written it is read whole: an archive by pg_restore (its table of contents, then every
data block into /dev/null, so a truncated or damaged one is refused; a tar's members are read in
Python first, since pg_restore never returns from a truncated tar), a script by a ScriptScanner
(SQL only, no psql meta-command, not cut short). A file that fails raises NotADump and leaves
nothing anywhere: no file, no object, no catalog row.

How it is stored: a custom archive as pg_dump wrote it (its own compression, codec "gzip"), a tar
archive or a script decompressed and then zstd-compressed (uncompressed when the target's codec is
"plain"); encrypted when the target encrypts. The versions are those the dump's header states.
"""
import gzip
import re
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from backup_app.adapters.local import LocalStorage, ScratchFile
from backup_app.adapters.pgtools import PgTools
from backup_app.adapters.pipeline import StreamResult, Upload, stream_to_file
from backup_app.adapters.store import Stores
from backup_app.core import codecs
from backup_app.core.crypto import MasterKey
from backup_app.core.sqlscript import ScriptScanner
from backup_app.core.streams import Progress, read_full
from backup_app.errors import ConfigurationError, NotADump, RestoreFailed
from backup_app.models import Backup, BackupFile, new_id, utcnow
from backup_app.services.backups.create import complete, make_filename, store_everywhere

GZIP_MAGIC, ZSTD_MAGIC, CUSTOM_MAGIC = b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"PGDMP"
READ_SIZE = 1024 * 1024
HEADER_LINE = re.compile(r";\s+(Archive created at|Dumped from database version:|Dumped by pg_dump version:)\s*(.+)")


@dataclass(frozen=True)
class DumpInfo:
    """What a checked dump is: its format (custom, tar, plain), the compression around it (gzip,
    zstd, None), and what its header says (None when it says nothing)."""

    format: str
    compression: str | None
    server_version: str | None = None
    client_version: str | None = None
    created_at: datetime | None = None


class Decompressed:
    """A gzip or zstd stream whose damage (a truncated or corrupt file) is a NotADump."""

    def __init__(self, stream: BinaryIO, compression: str):
        self._stream, self._compression = stream, compression

    def read(self, size: int = -1) -> bytes:
        import zstandard

        try:
            return self._stream.read(size)
        except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
            raise NotADump(f"the file is not a readable {self._compression} file (damaged or truncated?): "
                           f"{exc}") from None


@contextmanager
def open_dump(path: Path, compression: str | None) -> Iterator[BinaryIO]:
    """The dump's own bytes, decompressed as they are read."""
    with open(path, "rb") as raw:
        if compression == "gzip":
            yield Decompressed(gzip.GzipFile(fileobj=raw, mode="rb"), "gzip")
        elif compression == "zstd":
            yield Decompressed(ZstdFrames(raw), "zstd")
        else:
            yield raw


class ZstdFrames:
    """zstd frames, one after another, decompressed; ZstdError when the file ends inside one (the
    library's stream reader just stops there). Fed a little at a time, so what one read makes
    stays bounded even for data that compresses 30 000 to 1."""

    FEED = 1024

    def __init__(self, raw: BinaryIO):
        import zstandard

        self._zstd = zstandard
        self._raw, self._input = raw, b""
        self._parts: list[bytes] = []
        self._size = 0
        self._frame = zstandard.ZstdDecompressor().decompressobj()
        self._started = False

    def read(self, size: int = -1) -> bytes:
        want = READ_SIZE if size < 0 else size
        while self._size < want:
            if not self._input:
                self._input = self._raw.read(READ_SIZE)
                if not self._input:
                    if self._started and not self._frame.eof:
                        raise self._zstd.ZstdError("the file ends inside a zstd frame")
                    break
            if self._frame.eof:
                self._frame = self._zstd.ZstdDecompressor().decompressobj()
            piece, self._input = self._input[:self.FEED], self._input[self.FEED:]
            self._started = True
            made = self._frame.decompress(piece)
            self._parts.append(made)
            self._size += len(made)
            if self._frame.eof:
                self._input = self._frame.unused_data + self._input
        output = b"".join(self._parts)
        data, rest = output[:want], output[want:]
        self._parts, self._size = [rest], len(rest)
        return data


def inspect_dump(path: Path, pg: PgTools) -> DumpInfo:
    """Check that `path` is a whole dump psql or pg_restore can restore (NotADump otherwise)."""
    try:
        with open(path, "rb") as raw:
            magic = raw.read(4)
    except OSError as exc:
        raise NotADump(f"cannot read {path}: {exc.strerror or exc}") from None
    compression = "gzip" if magic[:2] == GZIP_MAGIC else "zstd" if magic == ZSTD_MAGIC else None
    with open_dump(path, compression) as stream:
        head = read_full(stream, 512)
    if not head:
        raise NotADump("the file is empty" if not magic else f"the {compression} file holds nothing")
    if head.startswith(CUSTOM_MAGIC):
        return read_archive(path, DumpInfo("custom", compression), pg)
    if head[257:262] == b"ustar":
        check_tar(path, compression)
        return read_archive(path, DumpInfo("tar", compression), pg)
    return read_script(path, compression)


def check_tar(path: Path, compression: str | None) -> None:
    """Every member of a tar archive read to its end, and pg_dump's toc.dat among them."""
    names = set()
    with open_dump(path, compression) as stream:
        try:
            with tarfile.open(fileobj=stream, mode="r|") as archive:
                for member in archive:
                    names.add(member.name)
                    content = archive.extractfile(member)
                    while content is not None and content.read(READ_SIZE):
                        pass
        except tarfile.TarError as exc:
            raise NotADump(f"the tar archive is damaged or truncated: {exc}") from None
    if "toc.dat" not in names:
        raise NotADump("the tar archive is not one pg_dump made (it has no toc.dat)")


def read_archive(path: Path, info: DumpInfo, pg: PgTools) -> DumpInfo:
    """pg_restore (the newest here) reads the archive's table of contents, then all of it."""
    client = pg.clients[-1]
    try:
        with open_dump(path, info.compression) as stream:
            listing = client.read_archive(stream, list_only=True)
        with open_dump(path, info.compression) as stream:
            client.read_archive(stream, list_only=False)
    except RestoreFailed as exc:
        raise NotADump(f"pg_restore {client.version} cannot read this {info.format} archive: {exc}") from None
    header = dict(match.groups() for line in listing.splitlines()[:20] if (match := HEADER_LINE.match(line)))
    return DumpInfo(info.format, info.compression, version(header.get("Dumped from database version:")),
                    version(header.get("Dumped by pg_dump version:")), archive_time(header.get("Archive created at")))


def version(text: str | None) -> str | None:
    """'15.18' from '15.18 (Debian 15.18-0+deb12u1)'."""
    match = re.match(r"\d+(?:\.\d+)*", text or "")
    return match.group() if match else None


def archive_time(text: str | None) -> datetime | None:
    """When pg_dump made the archive, if its header says so in UTC."""
    try:
        return datetime.strptime(text or "", "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def read_script(path: Path, compression: str | None) -> DumpInfo:
    """A plain script read whole by a strict ScriptScanner."""
    scanner = ScriptScanner(strict=True)
    with open_dump(path, compression) as stream:
        while chunk := stream.read(READ_SIZE):
            scanner.feed(chunk)
    scanner.close()
    return DumpInfo("plain", compression, scanner.versions.get("from"), scanner.versions.get("by"))


def stored_codec(fmt: str, target_codec: str) -> str:
    """A custom archive is kept as pg_dump wrote it; a tar archive or a script is zstd-compressed
    unless the target stores its backups uncompressed."""
    if fmt == "custom":
        return "gzip"
    return "plain" if target_codec == "plain" else "zstd"


def import_dump(session: Session, path: Path, database: str, local: LocalStorage, stores: Stores, pg: PgTools, *,
                codec: str = "gzip", encrypt: bool = False, key: MasterKey | None = None,
                progress: Progress | None = None, backup_id: str | None = None) -> Backup:
    """Check the dump at `path` and store it as a completed backup of `database` (a target's name or a
    label) in the local folder and every store, with `codec` and `encrypt` the target's settings.

    NotADump (nothing stored) when it is not a whole dump; a store that fails has a `failed` copy,
    as for a backup the app makes. Its time is the archive's own when the archive states it."""
    if encrypt and key is None:
        raise ConfigurationError(f"{database} is set to encrypt backups but APP_ENCRYPTION_KEY is not set")
    info = inspect_dump(path, pg)
    fmt, stored = info.format, stored_codec(info.format, codec)
    backup_id = backup_id or new_id()
    created_at = info.created_at or utcnow()
    file = BackupFile(backup_id, make_filename(database, created_at, backup_id,
                                               codecs.file_suffix(fmt, stored, encrypt)),
                      database, fmt, stored, encrypt, created_at, server_version=info.server_version,
                      client_version=info.client_version)

    def write(partial: ScratchFile, uploads: list[Upload]) -> StreamResult:
        with open_dump(path, info.compression) as stream:
            return stream_to_file(codecs.encode(stream, stored, key if encrypt else None), partial, uploads,
                                  progress)
    dumped = store_everywhere(file, write, local, stores)
    backup = Backup(id=file.id, filename=file.filename, database=database, format=fmt, codec=stored,
                    encrypted=encrypt, created_at=created_at, server_version=info.server_version,
                    client_version=info.client_version)
    complete(backup, dumped, stores)
    session.add(backup)
    session.commit()
    return backup
