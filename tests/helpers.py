"""Helpers shared by the tests."""
import base64
import functools
import hashlib
import json
import os
import socket
import stat
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Self

from backup_app.core.conninfo import ConnInfo
from backup_app.extensions import db
from backup_app.jobs.slots import database_slot
from backup_app.models import RUNNING, Backup, Job, utcnow


def invoke(runner, *args: str, ok: bool = True):
    """Run a `flask` command in-process; check the exit code."""
    result = runner.invoke(args=list(args))
    if ok:
        assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    else:
        assert result.exit_code == 1, f"{args} should fail: {result.output}"
    return result


def create(runner, *args: str) -> dict:
    """`flask backup create --json` → the backup as a dict."""
    return json.loads(invoke(runner, "backup", "create", "--json", *args).stdout)


def show(runner, backup_id: str) -> dict:
    return json.loads(invoke(runner, "backup", "show", backup_id, "--json").stdout)


def copy_status(backup: dict) -> dict[str, str]:
    return {c["location"]: c["status"] for c in backup["copies"]}


def listed(runner) -> list[dict]:
    """`flask backup list --json`: every backup in the catalog."""
    return json.loads(invoke(runner, "backup", "list", "--json").stdout)


def leftovers(folder: Path) -> list[str]:
    """The names in `folder`, sorted (none when it does not exist)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def bucket_keys(store) -> list[str]:
    """Every object key in an S3 store."""
    return [key for key, _ in store.list()]


def count_rows(cluster, dbname: str, table: str = "orders") -> int:
    return int(cluster.psql(f"SELECT count(*) FROM {table}", dbname))


def all_jobs(app) -> list[Job]:
    """Every job row, oldest first, detached from the session."""
    with app.app_context():
        found = db.session.query(Job).order_by(Job.created_at).all()
        db.session.expunge_all()
        return found


def running_job(app, **fields) -> str:
    """A job another worker is running, with these fields (kind, database, target, slot, …); returns its id."""
    with app.app_context():
        job = Job(**{"status": RUNNING, "phase": "running", "log": "", "worker": "another-host:1",
                     "started_at": utcnow(), **fields})
        db.session.add(job)
        db.session.commit()
        return job.id


def hold_target(app, url: str, kind: str = "restore", **fields) -> str:
    """A running `kind` job of another process on the database `url` names (however it spells it),
    holding its slot; returns its id."""
    conn = ConnInfo.from_url(url)
    return running_job(app, kind=kind, database=conn.dbname, target=conn.display(), slot=database_slot(conn),
                       **fields)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def error_line(result) -> str:
    """The `Error: …` line a failed command printed on stderr."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def new_key() -> str:
    """A fresh APP_ENCRYPTION_KEY."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def add_target(runner, name, url, *options, ok=True):
    return invoke(runner, "targets", "add", name, "--url", url, *options, ok=ok)


def age_backups(app, days_by_id: dict[str, float]) -> None:
    """Move backups' created_at back by the given days, as if they had been made then."""
    with app.app_context():
        for backup_id, days in days_by_id.items():
            db.session.get(Backup, backup_id).created_at -= timedelta(days=days)
        db.session.commit()


def dead_pid() -> int:
    """A process id that no process can have (one above the kernel's largest), so never reused."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def modes_under(root: Path) -> dict[str, int]:
    """Every file's and folder's permission bits under `root` (itself included), by relative path."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def not_private(root: Path) -> dict[str, str]:
    """What under `root` is not a 0600 file or a 0700 folder, with its mode."""
    return {path: f"{mode:04o}" for path, mode in modes_under(root).items()
            if mode != (0o700 if (root / path).is_dir() else 0o600)}


class Tarpit:
    """A port on 127.0.0.1 that accepts connections and never answers: a server gone silent, or
    a port a firewall holds open. Use it in a `with`; `connected()` counts the clients still there."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="tarpit", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            client.setblocking(False)
            with self._lock:
                self._clients.append(client)

    def url(self, dbname: str, query: str = "") -> str:
        return f"postgresql://app@127.0.0.1:{self.port}/{dbname}" + (f"?{query}" if query else "")

    def connected(self) -> int:
        """Clients still connected (what they sent is read and dropped)."""
        with self._lock:
            for client in list(self._clients):
                try:
                    while client.recv(65536):
                        pass
                except BlockingIOError:
                    continue  # nothing more to read: still connected
                except OSError:
                    pass  # reset
                client.close()
                self._clients.remove(client)
            return len(self._clients)

    def close(self) -> None:
        """Stop listening and drop every client (they see the connection closed)."""
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join()
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        if self._listener.fileno() != -1:
            self.close()


class SlowProxy:
    """A TCP proxy on 127.0.0.1 in front of `upstream` (host, port), as a slow network or store
    looks: each answer starts `delay` seconds late, and not at all while `hold()` is in force
    (until `release()`). Use it in a `with`."""

    def __init__(self, upstream: tuple[str, int], delay: float = 0.0):
        self.upstream, self.delay = upstream, delay
        self._released = threading.Event()
        self._released.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"127.0.0.1:{self.port}"
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="slow-proxy", daemon=True)
        self._thread.start()

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(self.upstream)
            except OSError:  # closed
                return
            self._sockets += [client, server]
            asked = threading.Event()
            threading.Thread(target=self._pump, args=(client, server, asked.set), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, functools.partial(self._late, asked)),
                             daemon=True).start()

    def _late(self, asked: threading.Event) -> None:
        """Before the first bytes of an answer: the delay, then the hold."""
        if asked.is_set():
            asked.clear()
            time.sleep(self.delay)
            self._released.wait()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, before) -> None:
        try:
            while data := source.recv(65536):
                before()
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join()
        self._released.set()
        for end in self._sockets:
            end.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
