"""`make run`: serve the app on http://127.0.0.1:5000 with embedded defaults.

Unless the environment points elsewhere, this starts a PostgreSQL cluster with a small
demo database and a SeaweedFS S3 server (loopback only, with generated keys), both kept
under the instance folder so backups survive a restart. It then migrates the catalog,
creates the bucket and, on the first run, an admin user whose password it prints once.
It runs the job worker and gunicorn in the foreground; Ctrl-C stops everything.
"""
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from devtools.localservers import PostgresCluster, SeaweedS3, exit_on_sigterm

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"
DEMO_DB = "shop"
ADMIN_EMAIL = "admin@localhost"


def demo_settings() -> dict:
    """Generated secrets, made once and kept in instance/demo.json."""
    path = INSTANCE / "demo.json"
    if path.exists():
        return json.loads(path.read_text())
    settings = {
        "SECRET_KEY": secrets.token_urlsafe(32),
        "pg_password": secrets.token_urlsafe(16),
        "s3_access_key": "demo-" + secrets.token_hex(4),
        "s3_secret_key": secrets.token_urlsafe(24),
    }
    path.write_text(json.dumps(settings, indent=2))
    path.chmod(0o600)
    return settings


def start_demo_postgres(password: str) -> tuple[PostgresCluster, str]:
    cluster = PostgresCluster(INSTANCE / "demo-postgres", password=password).start()
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
    return cluster, cluster.url(DEMO_DB)


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
        raise RuntimeError(result.stderr.strip())


def start_archiving(flask: str, env: dict) -> None:
    """PITR on for the demo database, with a first base backup: the worker then streams its WAL
    and the target's PITR page shows a recoverable window within a minute."""
    subprocess.run([flask, "pitr", "enable", DEMO_DB], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    status = subprocess.run([flask, "pitr", "status", DEMO_DB, "--json"], env=env, cwd=ROOT, check=True,
                            capture_output=True, text=True)
    if not any(base["status"] == "completed" for base in json.loads(status.stdout)["base_backups"]):
        subprocess.run([flask, "pitr", "base-backup", DEMO_DB], env=env, cwd=ROOT, check=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    exit_on_sigterm()
    INSTANCE.mkdir(exist_ok=True)
    settings = demo_settings()
    env = dict(os.environ)
    env.setdefault("SECRET_KEY", settings["SECRET_KEY"])
    env.setdefault("FLASK_APP", "app.py")
    started = []
    try:
        if not env.get("BACKUP_DATABASE_URL"):
            cluster, url = start_demo_postgres(settings["pg_password"])
            started.append(cluster)
            env["BACKUP_DATABASE_URL"] = url
            print(f"demo PostgreSQL: {cluster.url(DEMO_DB, password='***')}")
        if not env.get("MINIO_ENDPOINT"):
            s3 = SeaweedS3(INSTANCE / "demo-s3", settings["s3_access_key"], settings["s3_secret_key"]).start()
            started.append(s3)
            env.update(MINIO_ENDPOINT=s3.endpoint, MINIO_ACCESS_KEY=s3.access_key,
                       MINIO_SECRET_KEY=s3.secret_key)
            print(f"demo S3 (SeaweedFS): http://{s3.endpoint}  bucket {env.get('MINIO_BUCKET', 'backups')}")
        bin_dir = Path(sys.executable).parent
        flask = str(bin_dir / "flask")
        subprocess.run([flask, "db", "upgrade"], env=env, cwd=ROOT, check=True)
        subprocess.run([flask, "storage", "init"], env=env, cwd=ROOT, check=True)
        if started and isinstance(started[0], PostgresCluster):
            start_archiving(flask, env)
        create_first_admin(flask, env)
        worker = subprocess.Popen([flask, "worker"], env=env, cwd=ROOT)
        try:
            port = env.get("PORT", "5000")
            print(f"serving http://127.0.0.1:{port}  (Ctrl-C stops)", flush=True)
            return subprocess.run([str(bin_dir / "gunicorn"), "--bind", f"127.0.0.1:{port}",
                                   "--workers", "2", "--threads", "4", "app:app"],
                                  env=env, cwd=ROOT).returncode
        finally:
            stop(worker)
    except KeyboardInterrupt:
        return 0
    finally:
        for server in reversed(started):
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
