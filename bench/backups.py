"""Cases 1–7: dumping and restoring, bare PostgreSQL tools beside `flask backup …`."""
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backup_app.config import usable_cpus

from .lab import Lab
from .measure import BenchError, Sample, run

RESTORED = "bench_restored"
BASELINE_BUCKET = "baseline"
JOBS = usable_cpus()  # RESTORE_JOBS' default
# The same database as targets with other codecs (the default target, case 3, is gzip):
# case key suffix → (what the table calls it, `flask targets add` options).
CODECS = {
    "zstd": ("zstd", ["--codec", "zstd"]),
    "plain": ("plain (no compression)", ["--codec", "plain"]),
    "zstd_encrypted": ("zstd + encrypted", ["--codec", "zstd", "--encrypt"]),
}


@dataclass
class Case:
    """One measured thing; `measure` runs it once and returns its sample."""

    key: str
    label: str
    measure: Callable[[], Sample]


class BackupCases:
    """The dump and restore cases against one database of the lab."""

    def __init__(self, lab: Lab, dbname: str):
        self.lab = lab
        self.dbname = dbname
        self.cli = lab.cli
        self.rows = int(lab.cluster.psql("SELECT count(*) FROM pgbench_accounts", dbname))
        self.minio = lab.minio()
        if not self.minio.bucket_exists(bucket_name=BASELINE_BUCKET):
            self.minio.make_bucket(bucket_name=BASELINE_BUCKET)
        # The backup every restore case restores: made once, also warming the caches.
        self.fixture = self.create_backup()
        self.fixture_path = Path(next(c["uri"] for c in self.fixture["copies"] if c["location"] == "local"))
        for name, (_, options) in CODECS.items():
            self.cli.run("targets", "add", f"bench_{name}", "--url", lab.cluster.url(dbname), *options)

    def cases(self) -> list[Case]:
        return [
            Case("imports", "`python -c 'import flask, flask_sqlalchemy, sqlalchemy'` (the floor of a command)",
                 self.imports),
            Case("startup", "`flask backup list` (start-up of every `flask backup` command)", self.startup),
            Case("dump_devnull", "`pg_dump -Fc > /dev/null`", self.dump_to_devnull),
            Case("dump_then_upload", "`pg_dump -Fc -f FILE`, then `fput_object` (the seed's way)",
                 self.dump_then_upload),
            Case("create", "`flask backup create` (local + S3 + SHA-256), gzip: the default codec", self.create),
            *(Case(f"create_{name}", f"`flask backup create`, {label}",
                   lambda name=name: self.create(database=f"bench_{name}"))
              for name, (label, _) in CODECS.items()),
            Case("pg_restore", "`createdb` + `pg_restore` of a local file", self.pg_restore),
            Case("pg_restore_jobs", f"`createdb` + `pg_restore --jobs={JOBS}` of a local file",
                 lambda: self.pg_restore(JOBS)),
            Case("restore_local", "`flask backup restore` into a new database, local copy present",
                 self.restore_local),
            Case("restore_s3", "`flask backup restore` into a new database, S3 copy only", self.restore_s3),
            Case("restore_swap", f"`flask backup restore` over the database itself: built beside it, checked, "
                                 f"swapped in (RESTORE_JOBS={JOBS})", lambda: self.restore_swap(JOBS)),
            Case("restore_swap_1", "the same with RESTORE_JOBS=1", lambda: self.restore_swap(1)),
        ]

    def imports(self) -> Sample:
        """Case 0′: importing what any command of the app needs at least: Flask and SQLAlchemy."""
        return run([sys.executable, "-c", "import flask, flask_sqlalchemy, sqlalchemy"], None).sample

    def startup(self) -> Sample:
        """The fixed cost of a `flask backup` command: interpreter, imports, app, catalog check."""
        return self.cli.run("backup", "list", "--json").sample

    # --- backups -----------------------------------------------------------------------

    def dump_to_devnull(self, dbname: str | None = None) -> Sample:
        """Case 1: the limit for a logical dump (stdout, since `-f /dev/null` fails on fsync)."""
        with open(os.devnull, "wb") as devnull:
            return run([self.lab.pg.program("pg_dump"), "--format=custom", "--no-password"],
                       self.lab.pg_env(dbname or self.dbname), stdout=devnull).sample

    def dump_then_upload(self) -> Sample:
        """Case 2: dump to a file, then upload it with the minio client's defaults."""
        path = self.lab.workdir / "baseline.dump"
        start = time.perf_counter()
        dump = run([self.lab.pg.program("pg_dump"), "--format=custom", "--no-password",
                    f"--file={path}"], self.lab.pg_env(self.dbname))
        self.minio.fput_object(bucket_name=BASELINE_BUCKET, object_name=path.name, file_path=str(path))
        seconds = time.perf_counter() - start
        size = path.stat().st_size
        self.minio.remove_object(bucket_name=BASELINE_BUCKET, object_name=path.name)
        path.unlink()
        return Sample(seconds, dump.sample.max_rss, size, {"pg_dump": dump.sample.seconds})

    def create_backup(self, database: str | None = None, **settings: str) -> dict:
        """`flask backup create --json`; the backup, with its run's sample under "_sample"."""
        args = ["backup", "create", "--json"] + (["--database", database] if database else [])
        done = self.cli.run(*args, **settings)
        backup = json.loads(done.stdout)
        copies = {c["location"]: c["status"] for c in backup["copies"]}
        if copies != {"local": "present", "s3": "present"}:
            raise BenchError(f"backup {backup['id']} did not reach both places: {copies}")
        backup["_sample"] = Sample(done.sample.seconds, done.sample.max_rss, backup["size_bytes"])
        return backup

    def create(self, database: str | None = None, **settings: str) -> Sample:
        """Case 3 (and 4, 7): one backup through the CLI, deleted again afterwards."""
        backup = self.create_backup(database, **settings)
        self.cli.run("backup", "delete", backup["id"], "--yes")
        return backup["_sample"]

    # --- restores ----------------------------------------------------------------------

    def pg_restore(self, jobs: int = 1) -> Sample:
        """Case 5 (5′ with `jobs`): the bare restore of the same file into a fresh database."""
        self.lab.cluster.dropdb(RESTORED)
        env = self.lab.pg_env(RESTORED)
        start = time.perf_counter()
        run([self.lab.pg.program("createdb"), "--no-password", RESTORED], env)
        restore = run([self.lab.pg.program("pg_restore"), "--no-password", "--exit-on-error",
                       f"--dbname={RESTORED}", *([f"--jobs={jobs}"] if jobs > 1 else []),
                       str(self.fixture_path)], env)
        sample = Sample(time.perf_counter() - start, restore.sample.max_rss)
        self.check_restored()
        return sample

    def restore_local(self) -> Sample:
        """Case 6: restore with the local file present (hash check, then pg_restore)."""
        self.lab.cluster.dropdb(RESTORED)
        done = self.cli.run("backup", "restore", self.fixture["id"], "--yes",
                            "--target-url", self.lab.cluster.url(RESTORED))
        self.check_restored()
        return done.sample

    def restore_s3(self) -> Sample:
        """Case 6: restore with only the S3 copy (fetched, hashed, saved locally, restored)."""
        self.fixture_path.unlink()
        return self.restore_local()

    def restore_swap(self, jobs: int) -> Sample:
        """Case 6c/6d: restore over the benchmark's own database, as a user restores a target:
        built beside it, its rows checked, swapped in. The kept previous database is dropped
        afterwards, outside the timing; how long the swap held the database is a step."""
        done = self.cli.run("backup", "restore", self.fixture["id"], "--yes", RESTORE_JOBS=str(jobs))
        unavailable = re.search(r"unavailable for ([\d.]+) s", done.stdout)
        kept = re.search(r"kept as (\S+)", done.stdout)
        if not (unavailable and kept):
            raise BenchError(f"the restore did not swap: {done.stdout.strip()}")
        self.lab.cluster.dropdb(kept.group(1))
        self.check_restored(self.dbname)
        return Sample(done.sample.seconds, done.sample.max_rss, steps={"unavailable": float(unavailable.group(1))})

    def check_restored(self, dbname: str = RESTORED) -> None:
        """A restore that is fast because it restored nothing must not count."""
        rows = int(self.lab.cluster.psql("SELECT count(*) FROM pgbench_accounts", dbname))
        if rows != self.rows:
            raise BenchError(f"restore gave {rows} accounts, expected {self.rows}")
