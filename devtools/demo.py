"""`make run`: serve the app on http://127.0.0.1:5000 with embedded defaults.

Unless the environment (or `.env`) points elsewhere, this starts a PostgreSQL cluster with a small
demo database and a SeaweedFS S3 server (loopback only, with generated keys), both kept under the
instance folder with their ports, so backups and the targets added against them survive a restart.
Its generated settings (SECRET_KEY, APP_ENCRYPTION_KEY, passwords, ports) are made once and kept in
instance/demo.json; instance/demo.env exports them for the `flask` CLI beside it. It then migrates
the catalog, creates the bucket and, on the first run, an admin user whose password it prints once.
It runs the job worker and gunicorn in the foreground; Ctrl-C stops everything it started, the
PostgreSQL servers that PITR restores from the pages started included.
"""
import base64
import json
import os
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

from flask.cli import load_dotenv

from devtools.localservers import PostgresCluster, SeaweedS3, exit_on_sigterm, hold_port, reserve_port

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"
DEMO_DB = "shop"
ADMIN_EMAIL = "admin@localhost"

# What the demo makes up once and keeps (instance/demo.json), each made by its function.
GENERATED = {
    "SECRET_KEY": lambda: secrets.token_urlsafe(32),
    "APP_ENCRYPTION_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "pg_password": lambda: secrets.token_urlsafe(16),
    "pg_port": reserve_port,
    "s3_access_key": lambda: "demo-" + secrets.token_hex(4),
    "s3_secret_key": lambda: secrets.token_urlsafe(24),
    "s3_ports": SeaweedS3.reserve_ports,
}


class DemoError(Exception):
    """Why the demo cannot start, said in one line."""


def demo_settings(instance: Path = INSTANCE) -> dict:
    """Generated secrets and ports, made once and kept in instance/demo.json (a file from an older
    demo gets the ones it lacks)."""
    path = instance / "demo.json"
    settings = json.loads(path.read_text()) if path.exists() else {}
    missing = {name: make() for name, make in GENERATED.items() if name not in settings}
    if missing:
        settings.update(missing)
        instance.mkdir(mode=0o700, parents=True, exist_ok=True)  # its backups and catalog are the owner's
        path.write_text(json.dumps(settings, indent=2))
        path.chmod(0o600)
    return settings


def hold_kept_ports(ports: list[int], what: str, instance: Path) -> None:
    """Hold the ports the demo keeps, or say which one something else took."""
    for port in ports:
        if not hold_port(port):
            raise DemoError(f"port {port}, kept in {instance / 'demo.json'} for the demo's {what}, is in use by "
                            "another program; stop it (or remove the entry from demo.json to choose a new port: "
                            "targets added against the old one would then need editing)")


def start_demo_postgres(settings: dict, instance: Path = INSTANCE) -> PostgresCluster:
    """The demo PostgreSQL on its kept port, with the `shop` database filled on its first start."""
    hold_kept_ports([settings["pg_port"]], "PostgreSQL", instance)
    cluster = PostgresCluster(instance / "demo-postgres", port=settings["pg_port"],
                              password=settings["pg_password"]).start()
    if cluster.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DEMO_DB}'") != "1":
        cluster.createdb(DEMO_DB)
        cluster.psql("""
            CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text);
            CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers(id),
                                 total numeric(10,2), placed_at timestamptz DEFAULT now());
            INSERT INTO customers SELECT g, 'Customer ' || g, 'c' || g || '@example.com'
                FROM generate_series(1, 5000) g;
            INSERT INTO orders (customer_id, total) SELECT 1 + g % 5000, (g % 997) * 1.25
                FROM generate_series(1, 50000) g;
        """, DEMO_DB)
    return cluster


def start_demo_s3(settings: dict, instance: Path = INSTANCE) -> SeaweedS3:
    """The demo SeaweedFS on its kept ports."""
    hold_kept_ports(list(settings["s3_ports"].values()), "S3 server", instance)
    return SeaweedS3(instance / "demo-s3", settings["s3_access_key"], settings["s3_secret_key"],
                     ports=settings["s3_ports"]).start()


def write_cli_env(values: dict[str, str], instance: Path = INSTANCE) -> Path:
    """instance/demo.env: `export NAME=value` lines for a shell that runs `flask` beside the demo."""
    path = instance / "demo.env"
    path.write_text("".join(f"export {name}={shlex.quote(value)}\n" for name, value in sorted(values.items())))
    path.chmod(0o600)
    return path


def create_first_admin(flask: str, env: dict) -> None:
    """Create the admin user on the first run and print its password, this once."""
    password = secrets.token_urlsafe(12)
    result = subprocess.run([flask, "users", "create", ADMIN_EMAIL, "--password-stdin"], env=env, cwd=ROOT,
                            input=password + "\n", text=True, capture_output=True)
    if result.returncode == 0:
        print(f"created the admin user: sign in as {ADMIN_EMAIL} with password {password}\n"
              "(shown this once; `flask users create EMAIL` adds more users)")
    elif "already exists" in result.stderr:
        print(f"sign in as {ADMIN_EMAIL} (its password was printed when `make run` first created it)")
    else:
        raise DemoError(result.stderr.strip())


def start_archiving(flask: str, env: dict) -> None:
    """PITR on for the demo database, with a first base backup: the worker then streams its WAL
    and the target's PITR page shows a recoverable window within a minute."""
    subprocess.run([flask, "pitr", "enable", DEMO_DB], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    status = subprocess.run([flask, "pitr", "status", DEMO_DB, "--json"], env=env, cwd=ROOT, check=True,
                            capture_output=True, text=True)
    if not any(base["status"] == "completed" for base in json.loads(status.stdout)["base_backups"]):
        subprocess.run([flask, "pitr", "base-backup", DEMO_DB], env=env, cwd=ROOT, check=True)


def stop_restored_servers(flask: str, env: dict, restore_root: Path) -> None:
    """Stop the PostgreSQL servers that PITR restores from the pages started (their data directories are
    under the restore root), as the catalog lists them (`flask restores list`)."""
    listed = subprocess.run([flask, "restores", "list", "--json"], env=env, cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        print(f"could not list the servers restores started: {listed.stderr.strip()}", file=sys.stderr)
        return
    for item in json.loads(listed.stdout):
        if item["kind"] == "pitr-server" and Path(item["data_dir"]).is_relative_to(restore_root):
            subprocess.run([flask, "restores", "stop", item["name"], "--yes"], env=env, cwd=ROOT)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def demo_environment(settings: dict) -> tuple[dict, dict]:
    """The environment of the processes the demo starts (ours, `.env`'s, then the demo's own settings
    for what neither sets), and those own settings alone."""
    load_dotenv()  # `.env` as `flask` reads it: its BACKUP_DATABASE_URL decides whether a demo one starts
    own = {"FLASK_APP": str(ROOT / "app.py"), "SECRET_KEY": settings["SECRET_KEY"],
           "APP_ENCRYPTION_KEY": settings["APP_ENCRYPTION_KEY"]}
    own = {name: value for name, value in own.items() if not os.environ.get(name)}
    return {**os.environ, **own}, own


def main(instance: Path = INSTANCE) -> int:
    exit_on_sigterm()
    instance.mkdir(exist_ok=True)
    settings = demo_settings(instance)
    env, own = demo_environment(settings)
    flask = str(Path(sys.executable).parent / "flask")
    started = []
    try:
        if env.get("BACKUP_DATABASE_URL"):
            print("BACKUP_DATABASE_URL is set: backing it up (no demo database started)")
        else:
            cluster = start_demo_postgres(settings, instance)
            started.append(cluster)
            own["BACKUP_DATABASE_URL"] = cluster.url(DEMO_DB)
            print(f"demo PostgreSQL: {cluster.url(DEMO_DB, password='***')}")
        if not env.get("MINIO_ENDPOINT"):
            s3 = start_demo_s3(settings, instance)
            started.append(s3)
            own.update(MINIO_ENDPOINT=s3.endpoint, MINIO_ACCESS_KEY=s3.access_key, MINIO_SECRET_KEY=s3.secret_key)
            print(f"demo S3 (SeaweedFS): http://{s3.endpoint}  bucket {env.get('MINIO_BUCKET', 'backups')}")
        env.update(own)
        subprocess.run([flask, "db", "upgrade"], env=env, cwd=ROOT, check=True)
        subprocess.run([flask, "storage", "init"], env=env, cwd=ROOT, check=True)
        if "BACKUP_DATABASE_URL" in own:
            start_archiving(flask, env)
        create_first_admin(flask, env)
        cli_env = write_cli_env(own, instance)
        worker = subprocess.Popen([flask, "worker"], env=env, cwd=ROOT)
        try:
            port = env.get("PORT", "5000")
            print(f"the CLI beside it: `source {os.path.relpath(cli_env)}`, then e.g. `flask backup list`")
            print(f"serving http://127.0.0.1:{port}  (Ctrl-C stops)", flush=True)
            return subprocess.run([str(Path(flask).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}",
                                   "--workers", "2", "--threads", "4", "app:app"],
                                  env=env, cwd=ROOT).returncode
        finally:
            stop(worker)
            stop_restored_servers(flask, env, Path(env.get("PITR_RESTORE_ROOT") or instance / "pitr-restores"))
    except KeyboardInterrupt:
        return 0
    except DemoError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        said = exc.stderr.decode(errors="replace").strip() if isinstance(exc.stderr, bytes) else exc.stderr
        print(f"Error: `{' '.join(map(str, exc.cmd))}` exited with {exc.returncode}: {said or 'see above'}",
              file=sys.stderr)
        return 1
    finally:
        for server in reversed(started):
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
