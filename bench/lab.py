"""The benchmark's own servers and settings: a PostgreSQL cluster, a SeaweedFS S3 server,
and the app configured to use them, all inside one working folder."""
import base64
import os
import secrets
from pathlib import Path

from minio import Minio

from backup_app.adapters.pgtools import find_clients
from backup_app.core.conninfo import ConnInfo
from devtools.localservers import PostgresCluster, SeaweedS3

from .appcli import AppCli

BUCKET = "backups"


class Lab:
    """Start with `with Lab(workdir) as lab:`; everything stops on the way out."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.cluster = PostgresCluster(workdir / "pg")
        self.s3 = SeaweedS3(workdir / "s3")
        self.pg = find_clients(str(self.cluster.bin_dir))[0]  # the cluster's own client
        self.backup_dir = workdir / "backups"
        self.cli: AppCli | None = None

    def __enter__(self) -> "Lab":
        self.cluster.start()
        try:
            self.s3.start()
        except BaseException:
            self.cluster.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.s3.stop()
        self.cluster.stop()

    def settings(self, dbname: str, catalog: Path) -> dict[str, str]:
        """The app's environment: back up `dbname`, catalog in `catalog`, both copies on."""
        return {
            "BACKUP_DATABASE_URL": self.cluster.url(dbname),
            "CATALOG_DATABASE_URL": f"sqlite:///{catalog}",
            "BACKUP_DIR": str(self.backup_dir),
            "MINIO_ENDPOINT": self.s3.endpoint,
            "MINIO_ACCESS_KEY": self.s3.access_key,
            "MINIO_SECRET_KEY": self.s3.secret_key,
            "MINIO_BUCKET": BUCKET,
            "SECRET_KEY": secrets.token_urlsafe(32),
            "APP_ENCRYPTION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "FLASK_SKIP_DOTENV": "1",
        }

    def start_app(self, dbname: str) -> AppCli:
        """Point the app at `dbname`, migrate its catalog and create the bucket."""
        self.cli = AppCli(self.settings(dbname, self.workdir / "catalog.db"))
        self.cli.run("db", "upgrade")
        self.cli.run("storage", "init")
        return self.cli

    def pg_env(self, dbname: str) -> dict[str, str]:
        """Environment for PostgreSQL's client programs connecting to `dbname`."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return {**base, **ConnInfo.from_url(self.cluster.url(dbname)).env()}

    def minio(self) -> Minio:
        """A plain minio client with its defaults, as the seed used it."""
        return Minio(self.s3.endpoint, access_key=self.s3.access_key,
                     secret_key=self.s3.secret_key, secure=False)
