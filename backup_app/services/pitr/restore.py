"""Restore to a moment: fetch a base backup chain and the WAL after it from any intact copy,
combine incrementals, write the recovery settings, start a server on 127.0.0.1 and wait until
it has left recovery, then check that it replayed as far as the moment needs and stopped at or
before it."""
import hashlib
import os
import re
import shutil
import stat
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from backup_app.adapters.pgtools import PgTools
from backup_app.adapters.physical import PhysicalClient, RestoredServer, check_reachable
from backup_app.adapters.ports import free_port, port_in_use
from backup_app.adapters.store import Store
from backup_app.core import codecs
from backup_app.core.crypto import MasterKey
from backup_app.core.streams import CountingReader, Progress, shifted
from backup_app.core.wal import (
    SEGMENT_SIZE,
    TARGET_NOT_REACHED,
    format_lsn,
    last_replayed_commit,
    new_timeline,
    parse_lsn,
    record_boundary,
    replay_stop_reason,
    segment_name,
    segment_number,
    switch_point,
)
from backup_app.errors import BackupError, ChecksumMismatch, PitrError
from backup_app.models import BaseBackup, WalFile, isoformat
from backup_app.services.pitr import archive
from backup_app.services.pitr.window import Reach, choose

WAL_FOLDER = "backup_app_wal"  # inside the data directory, removed once the server is up
SOURCE_CONFIG = "backup_app_source_config"  # the source's configuration files, never read
SOURCE_FILES = ("postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf")
ELF_MAGIC = b"\x7fELF"
SAFE_PATH = re.compile(r"[A-Za-z0-9._+/-]+")


@dataclass
class RestoreRequest:
    target: str
    to: datetime | None          # None: latest
    data_dir: Path
    port: int | None = None
    os_user: str = "postgres"
    preload_libraries: tuple[str, ...] = ()
    lineage: str | None = None   # the cluster archived now: "latest" is its latest


@dataclass
class RestoredCluster:
    """A running restored server: where it is and what it holds."""

    data_dir: Path
    port: int
    recovered_to: datetime
    base_backup: str
    last_transaction_at: datetime | None
    server: RestoredServer

    def to_dict(self) -> dict:
        return {"data_dir": str(self.data_dir), "port": self.port, "recovered_to": isoformat(self.recovered_to),
                "base_backup": self.base_backup, "last_transaction_at": isoformat(self.last_transaction_at)}


def chain_of(session: Session, base: BaseBackup) -> list[BaseBackup]:
    """The full backup and the incrementals up to `base`, oldest first."""
    chain = [base]
    while chain[0].parent_id:
        parent = session.get(BaseBackup, chain[0].parent_id)
        if parent is None:
            raise PitrError(f"base backup {chain[0].id} builds on {chain[0].parent_id}, which is gone")
        chain.insert(0, parent)
    return chain


def server_for(pg: PgTools, version: str) -> PhysicalClient:
    """The server programs of the backup's major version."""
    wanted = int(version.split(".")[0])
    for client in pg.clients:
        physical = PhysicalClient(client)
        if physical.major == wanted and physical.has("pg_ctl") and physical.has("postgres"):
            return physical
    raise PitrError(f"restoring this base backup needs PostgreSQL {wanted}'s server programs (pg_ctl, postgres); "
                    f"found {pg.found()}: install postgresql-{wanted} or point PG_BIN_DIR at its bin folder")


def check_data_dir(path: Path) -> None:
    """PitrError unless `path` is a new or empty directory whose name is safe where pg_ctl and the
    restore_command hand it to a shell."""
    if not SAFE_PATH.fullmatch(str(path)):
        raise PitrError(f"the data directory {str(path)!r} may hold only letters, digits and . _ - + / "
                        "(pg_ctl passes it through a shell)")
    path = path.resolve()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise PitrError(f"{path} exists and is not an empty directory: give a new one")


def check_under_root(data_dir: Path, root: str) -> None:
    """PitrError unless `data_dir` lies under `root` (PITR_RESTORE_ROOT) once both are resolved on
    this machine: no `..` and no link leads out of it."""
    base = Path(root).resolve()
    if ".." in data_dir.parts:
        raise PitrError(f"the data directory {data_dir} may not contain '..': give one under {base} "
                        "(PITR_RESTORE_ROOT)")
    resolved = data_dir.resolve()
    if base not in resolved.parents:
        through = f" (through a link, it is {resolved})" if resolved != data_dir.absolute() else ""
        raise PitrError(f"the data directory {data_dir}{through} is not under {base}: a restore asked for from the "
                        "pages or the API goes into a new folder under PITR_RESTORE_ROOT")


def prepare_data_dir(path: Path) -> Path:
    """Make the data directory (0700). Folders made on the way to it are 0711: the server's user
    (PITR_OS_USER) must pass through them, and need not list them."""
    check_data_dir(path)
    path = path.resolve()
    for folder in reversed(path.parents):
        if not folder.exists():
            folder.mkdir()
            folder.chmod(0o711)
    path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)
    return path


class HashingReader:
    def __init__(self, stream):
        self._stream, self.digest = stream, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.digest.update(data)
        return data


def extract(backup: BaseBackup, stores: Sequence[Store], key: MasterKey | None, into: Path,
            progress: Progress | None = None) -> str:
    """Extract one base backup into `into` from the first intact copy (its stored bytes read told to
    `progress`); the store it came from."""
    if backup.encrypted and key is None:
        raise PitrError(f"base backup {backup.id} is encrypted but APP_ENCRYPTION_KEY is not set")
    problems = []
    for store in archive.ordered(stores, backup.copies):
        try:
            with store.open(backup.filename) as stream:
                hashing = HashingReader(CountingReader(stream, progress) if progress else stream)
                decoded = codecs.decode(hashing, "custom", "zstd", key if backup.encrypted else None)
                with tarfile.open(fileobj=decoded, mode="r|") as tar:
                    tar.extractall(into, filter=no_links)
                while hashing.read(1024 * 1024):
                    pass
        except (BackupError, OSError, tarfile.TarError) as exc:
            problems.append(f"{store.location}: {exc}")
        else:
            if hashing.digest.hexdigest() == backup.sha256:
                return store.location
            problems.append(f"{store.location}: SHA-256 mismatch")
        shutil.rmtree(into, ignore_errors=True)
        into.mkdir(mode=0o700)
    raise ChecksumMismatch(f"no intact copy of base backup {backup.id}: " + "; ".join(problems))


def no_links(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
    """tarfile's `data` filter, and no links at all: a base backup of a server without extra
    tablespaces has none, and links are what every known escape from the filter goes through."""
    if member.islnk() or member.issym():
        raise tarfile.FilterError(f"the base backup holds a link ({member.name}), which none of ours has: refused")
    return tarfile.data_filter(member, path)


def wal_needed(chosen: Reach, to: datetime | None) -> list[WalFile]:
    """The archived WAL files recovery to `to` (None: latest) must replay: up to the first that
    covers `to`, all of them for latest."""
    if to is None:
        return chosen.wal
    for index, row in enumerate(chosen.wal):
        if row.covers_until >= to:
            return chosen.wal[:index + 1]
    return chosen.wal


def fetch_wal(rows: Sequence[WalFile], needed: int, stores: Sequence[Store], key: MasterKey | None,
              into: Path, moment: str, progress: Progress | None = None) -> None:
    """Fetch `rows` into `into`, telling `progress` the stored bytes fetched. The first `needed`
    must be read (PitrError naming the one that cannot); those after them are fetched while they
    can be (the commit that tells recovery to stop may be there, and recovery stops at the first
    file missing anyway)."""
    fetched = 0
    for index, row in enumerate(rows):
        try:
            data = archive.fetch(row, stores, key)
        except BackupError as exc:
            if index >= needed:
                return
            raise PitrError(f"WAL file {row.name} could not be read: recovery to {moment} needs it, and the "
                            f"archive lists it, but {exc}") from exc
        (into / row.name).write_bytes(data)
        fetched += row.size_bytes
        if progress:
            progress(fetched)


def needed_position(row: WalFile) -> int:
    """The WAL position recovery must reach to have replayed every commit made before
    `row.covers_until`: `row.covers_lsn` or, for a file archived before that was recorded, the
    start of the file (a lower bound)."""
    if row.covers_lsn is None:
        return segment_number(row.name) * SEGMENT_SIZE
    return record_boundary(parse_lsn(row.covers_lsn))


def replay_end(restored: RestoredServer) -> tuple[int, int]:
    """(timeline, WAL position) where the promoted server's replay ended: the switch point that
    its promotion wrote into the new timeline's history file (the end of the last record it
    replayed). The file is the server user's: read without following a link."""
    timeline = new_timeline(restored.log())
    try:
        if timeline is None:
            raise ValueError("its log names no new timeline")
        return switch_point(read_no_follow(restored.data_dir / "pg_wal" / f"{timeline:08X}.history"))
    except (OSError, ValueError) as exc:
        raise PitrError(f"cannot tell where the restored server's replay ended: {exc}") from exc


def check_replayed(restored: RestoredServer, chosen: Reach, needed: Sequence[WalFile], moment: str) -> None:
    """PitrError naming the WAL file that could not be read unless replay reached the position the
    archive recorded for the moment (that of the last needed file)."""
    position = needed_position(needed[-1])
    timeline, end = replay_end(restored)
    if end >= position:
        return
    name = segment_name(timeline, end // SEGMENT_SIZE)
    if name in {row.name for row in chosen.wal}:
        reason = replay_stop_reason(restored.log())
        listed = ("the archive lists it and its copy was fetched intact, but it does not hold the WAL that belongs "
                  "there" + (f" (the server: {reason})" if reason else ""))
    else:
        listed = "the archive does not list it"
    raise PitrError(f"WAL file {name} could not be read: recovery to {moment} needs the WAL up to "
                    f"{format_lsn(position)}, but replay ended at {format_lsn(end)}; {listed}. The restored "
                    "server was stopped and its files deleted")


def conf_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def set_source_config_aside(data_dir: Path) -> None:
    """Move the source server's configuration files into SOURCE_CONFIG, where no server reads them:
    they are the source's to choose, and settings such as ssl_passphrase_command, archive_command,
    shared_preload_libraries or include would run its code here."""
    aside = data_dir / SOURCE_CONFIG
    aside.mkdir(mode=0o700, exist_ok=True)
    for name in SOURCE_FILES:
        if (data_dir / name).is_file() or (data_dir / name).is_symlink():
            (data_dir / name).rename(aside / name)


def check_no_programs(data_dir: Path) -> None:
    """PitrError if a file in the restored data directory is a program or a library (ELF): a role
    or database setting of the source (session_preload_libraries = './x.so') could make the
    restored server load it. A data directory holds none."""
    for root, _dirs, files in os.walk(data_dir):
        for name in files:
            path = Path(root, name)
            if path.is_symlink():
                continue
            with open(path, "rb") as file:
                if file.read(4) == ELF_MAGIC:
                    raise PitrError(f"the base backup holds a program file ({path.relative_to(data_dir)}), which "
                                    "no data directory has: refused, as a restored server could be made to load it")


def write_server_config(data_dir: Path, port: int, to: datetime | None, timeline: int,
                        server_programs: PhysicalClient, libraries: Sequence[str] = ()) -> None:
    """The restored server's whole configuration, written by the app (the source's set aside):
    loopback only, no archiving, no SSL, WAL from the fetched folder along the history to `timeline`,
    stop at `to` and promote;
    the limits recovery checks against the source's (from pg_control); `libraries` (the
    admin's PITR_PRELOAD_LIBRARIES) the only ones preloaded."""
    set_source_config_aside(data_dir)
    wal_dir = data_dir / WAL_FOLDER
    settings = {
        **server_programs.control_limits(data_dir),
        "port": str(port), "listen_addresses": "'127.0.0.1'", "unix_socket_directories": "''",
        # Nothing of the source's runs by itself once promoted: no subscription's apply worker
        # (it would connect where the source says and fire its triggers), no autovacuum (ANALYZE
        # runs index expressions as the table's owner).
        "max_logical_replication_workers": "0", "autovacuum": "off",
        "lc_messages": "'C'",  # the log is read for recovery's own messages
        "shared_preload_libraries": conf_value(",".join(libraries)),
        "archive_mode": "off", "logging_collector": "off", "log_destination": "'stderr'",
        "hot_standby": "off", "restore_command": conf_value(f'cp "{wal_dir}/%f" "%p"'),
        "recovery_target_action": "'promote'", "recovery_target_timeline": f"'{timeline}'",
    }
    if server_programs.major >= 17:
        settings["event_triggers"] = "off"  # a login trigger of the source would run on our connections
    if to is not None:
        settings["recovery_target_time"] = conf_value(to.isoformat())
    header = f"# written by backup_app's point-in-time restore; the source's own files are in {SOURCE_CONFIG}/"
    lines = [header] + [f"{name} = {value}" for name, value in settings.items()]
    (data_dir / "postgresql.conf").write_text("\n".join(lines) + "\n")
    (data_dir / "postgresql.auto.conf").write_text("# ALTER SYSTEM of the restored server writes here\n")
    (data_dir / "pg_hba.conf").write_text("host all all 127.0.0.1/32 scram-sha-256\n")
    (data_dir / "pg_ident.conf").write_text("")
    for leftover in ("standby.signal", "postmaster.pid", "postmaster.opts"):
        (data_dir / leftover).unlink(missing_ok=True)
    (data_dir / "recovery.signal").touch()


def drop_recovery_target(data_dir: Path) -> None:
    """Take the moment out of the configuration, to replay to the end. The server has run on these
    files: each is written anew, never through a link its user could have put in its place."""
    conf = data_dir / "postgresql.conf"
    kept = [line for line in read_no_follow(conf).splitlines() if not line.startswith("recovery_target_time")]
    write_anew(conf, "\n".join(kept) + "\n")
    write_anew(data_dir / "recovery.signal", "")


def read_no_follow(path: Path) -> str:
    """The text of the regular file `path`, never read through a link (nor from a pipe its user
    could have put there, which would never end: OSError)."""
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), encoding="utf-8") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        return file.read()


def write_anew(path: Path, text: str) -> None:
    """Replace `path` with a new file holding `text` (a link there is removed, not followed)."""
    path.unlink(missing_ok=True)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "w") as file:
        file.write(text)


def restore_to_moment(session: Session, request: RestoreRequest, stores: Sequence[Store], pg: PgTools,
                      key: MasterKey | None, phase: Callable[[str, int | None], None] = lambda _phase, _total: None,
                      progress: Progress | None = None) -> RestoredCluster:
    """Restore `request.target`'s server as of `request.to` into `request.data_dir` and leave it
    running on 127.0.0.1:`port`. PitrError, naming the window, for a moment outside it.

    `phase(name, total)` is told each step and the stored bytes it fetches (None: none), `progress`
    the bytes fetched so far in it."""
    fresh = not request.data_dir.exists()
    check_data_dir(request.data_dir)
    check_reachable(request.data_dir.resolve(), request.os_user)
    port = request.port or free_port()
    if port_in_use(port):
        raise PitrError(f"port {port} is in use on 127.0.0.1: give another --port")
    chosen = choose(session, request.target, request.to, request.lineage)
    chain = chain_of(session, chosen.base)
    needed = wal_needed(chosen, request.to)
    wal = chosen.wal[:len(needed) + 1]  # the commit after the moment, that tells recovery to stop, may be in one more
    moment = isoformat(request.to) or "the latest moment"
    server_programs = server_for(pg, chosen.base.server_version)
    try:
        data_dir = prepare_data_dir(request.data_dir)
    except OSError as exc:
        raise PitrError(f"cannot make the data directory {request.data_dir}: {exc.strerror or exc}") from exc
    restored = RestoredServer(server_programs, data_dir, port, request.os_user)
    wal_rows = [*chosen.histories, *wal]
    base_bytes, wal_bytes = sum(b.size_bytes or 0 for b in chain), sum(row.size_bytes for row in wal_rows)
    session.commit()  # nothing held open while gigabytes move
    try:
        phase(f"fetching base backup {chain[-1].id}", base_bytes or None)
        extract_chain(chain, stores, key, data_dir, server_programs, progress)
        phase(f"fetching {len(wal)} WAL files", wal_bytes or None)
        wal_dir = data_dir / WAL_FOLDER
        wal_dir.mkdir(mode=0o700)
        fetch_wal(wal_rows, len(chosen.histories) + len(needed), stores, key, wal_dir, moment, progress)
        write_server_config(data_dir, port, request.to, chosen.timeline, server_programs, request.preload_libraries)
        phase("recovering", None)
        if recover(restored, request.to is not None):
            check_replayed(restored, chosen, needed, moment)
        last = last_replayed_commit(restored.log())
        if request.to is not None and last is not None and last > request.to:
            raise PitrError(f"recovery went past {isoformat(request.to)} (last transaction at {isoformat(last)}): "
                            "the restored server was stopped and its files deleted")
    except BaseException as exc:
        restored.stop()
        empty_out(data_dir, remove=fresh)  # it was new or empty: a retry can use it again
        if isinstance(exc, OSError):
            raise PitrError(f"writing the restored files into {data_dir} failed: {exc.strerror or exc}") from exc
        raise
    shutil.rmtree(data_dir / WAL_FOLDER, ignore_errors=True)
    recovered_to = request.to or chosen.until
    return RestoredCluster(data_dir, port, recovered_to, chosen.base.id, last, restored)


def extract_chain(chain: list[BaseBackup], stores: Sequence[Store], key: MasterKey | None, data_dir: Path,
                  server_programs: PhysicalClient, progress: Progress | None = None) -> None:
    """Extract a full backup (or combine a full one and its incrementals) into `data_dir`, checked
    with pg_verifybackup where the client has it; the stored bytes read are told to `progress`."""
    if len(chain) == 1:
        extract(chain[0], stores, key, data_dir, progress)
    else:
        parts, done = [], 0
        try:
            for backup in chain:
                part = data_dir.parent / f".{data_dir.name}.{backup.id}"
                shutil.rmtree(part, ignore_errors=True)
                part.mkdir(mode=0o700)
                parts.append(part)
                extract(backup, stores, key, part, shifted(progress, done))
                done += backup.size_bytes or 0
            data_dir.rmdir()
            server_programs.combine(parts, data_dir)
        finally:
            for part in parts:
                shutil.rmtree(part, ignore_errors=True)
    problem = server_programs.verify(data_dir)
    if problem:
        raise PitrError(f"pg_verifybackup found the restored files damaged: {problem}")
    check_no_programs(data_dir)
    os.chmod(data_dir, 0o700)


def recover(restored: RestoredServer, has_target: bool) -> bool:
    """Start the server and wait until it is promoted; True when it replayed all the WAL it could
    read (no target, or one it did not reach), False when it stopped at the target. A moment after
    the last archived commit makes PostgreSQL stop with "recovery ended before configured recovery
    target was reached": it is started again without the target to finish the same replay and
    promote (the caller then checks that the replay reached as far as the moment needs: WAL that
    could not be read ends it the same way)."""
    try:
        restored.start()
        restored.wait_promoted()
        return not has_target
    except PitrError:
        if not (has_target and TARGET_NOT_REACHED in restored.log()):
            raise
        restored.stop()
        drop_recovery_target(restored.data_dir)
        restored.start()
        restored.wait_promoted()
        return True


def empty_out(path: Path, remove: bool) -> None:
    """Delete what a failed restore wrote into `path` (and `path` itself if the restore made it)."""
    if remove:
        shutil.rmtree(path, ignore_errors=True)
        return
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def remove_cluster(cluster: RestoredCluster) -> None:
    """Stop a restored server and delete its data directory."""
    cluster.server.stop()
    shutil.rmtree(cluster.data_dir, ignore_errors=True)

