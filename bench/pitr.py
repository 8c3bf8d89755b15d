"""`python -m bench.pitr`: point-in-time recovery figures, beside the plain tools in the same run.

P1/P2  a base backup of the bench server: bare `pg_basebackup -D - -Ft -X none > /dev/null`
       against `flask pitr base-backup` (zstd, SHA-256, the local folder and S3 at once);
P3     `flask pitr restore --to latest` of that server (fetch, recover, promote);
P4     the loss window under a steady write load: seconds from a commit to its WAL being in every
       store (the local folder and S3), with a `flask worker` archiving at the app's default
       settings (or --partial-seconds);
P5     on PostgreSQL 18: the size of an incremental base backup after 1% of the accounts
       changed, against a full one.
"""
import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from backup_app.adapters.pgtools import wheel_bin_dir
from backup_app.config import Config
from backup_app.core.wal import parse_lsn, segment_end_lsn
from devtools.localservers import AS_POSTGRES, PostgresCluster, exit_on_sigterm

from . import dataset
from .appcli import FLASK, PROJECT, AppCli
from .lab import Lab
from .measure import Summary, percentile, run

DB = "bench"


def log(message: str) -> None:
    print(f"[bench.pitr] {message}", file=sys.stderr, flush=True)


def stop_server(data_dir: Path, bin_dir: Path) -> None:
    prefix = AS_POSTGRES if os.geteuid() == 0 else []
    subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"],
                   check=False, capture_output=True, cwd="/")


def base_backups(lab: Lab, cli: AppCli, repeat: int) -> tuple[list[float], list[float], int]:
    bare, ours, size = [], [], 0
    for round_ in range(repeat):
        for which in (("bare", "ours") if round_ % 2 == 0 else ("ours", "bare")):
            if which == "bare":
                with open(os.devnull, "wb") as devnull:
                    sample = run([str(lab.cluster.bin_dir / "pg_basebackup"), "-D", "-", "-Ft", "-X", "none",
                                  "-c", "fast", "-h", "127.0.0.1", "-p", str(lab.cluster.port), "-U", "postgres"],
                                 {**os.environ, "PGPASSWORD": lab.cluster.password}, stdout=devnull).sample
                bare.append(sample.seconds)
            else:
                done = cli.run("pitr", "base-backup", DB, "--json")
                ours.append(done.sample.seconds)
                size = json.loads(done.stdout)["size_bytes"]
            log(f"round {round_ + 1} {which}: {(bare if which == 'bare' else ours)[-1]:.2f} s")
    return bare, ours, size


def restores(lab: Lab, cli: AppCli, repeat: int, root: Path) -> list[float]:
    seconds = []
    for round_ in range(repeat):
        data_dir = root / f"restore{round_}"
        done = cli.run("pitr", "restore", DB, "--to", "latest", "--data-dir", str(data_dir), "--json")
        seconds.append(done.sample.seconds)
        stop_server(data_dir, lab.cluster.bin_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
        log(f"restore {round_ + 1}: {seconds[-1]:.2f} s")
    return seconds


def loss_window(lab: Lab, cli: AppCli, catalog: Path, seconds: float) -> list[float]:
    """Commit a row every 0.2 s for `seconds`; for each, the delay until a WAL file (a completed
    segment, or a partial one) that reaches its commit position is recorded present in every store."""
    commits: list[tuple[float, int]] = []
    stored: dict[tuple[str, str], tuple[float, int]] = {}
    stop = threading.Event()
    lab.cluster.psql("CREATE TABLE IF NOT EXISTS ticks (at timestamptz DEFAULT now(), pad text)", DB)

    def write() -> None:
        while not stop.is_set():
            lsn = lab.cluster.psql("INSERT INTO ticks (pad) VALUES (repeat('x', 200)); "
                                   "SELECT pg_current_wal_insert_lsn()", DB)
            commits.append((time.time(), parse_lsn(lsn.splitlines()[-1])))
            stop.wait(0.2)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    deadline = time.time() + seconds
    with sqlite3.connect(catalog) as db:
        while time.time() < deadline + 90:
            for name, kind, end_lsn, copies in db.execute(
                    "SELECT name, kind, end_lsn, copies FROM wal_files WHERE kind != 'history'"):
                if any(copy["status"] != "present" for copy in json.loads(copies).values()):
                    continue
                end = parse_lsn(end_lsn if kind == "partial" else segment_end_lsn(name))
                stored.setdefault((name, end_lsn or ""), (time.time(), end))
            if time.time() >= deadline:
                stop.set()
                last = commits[-1][1] if commits else 0
                if any(end >= last for _, end in stored.values()):
                    break
            time.sleep(0.2)
    writer.join()
    delays = []
    for committed_at, lsn in commits:
        arrivals = [at for at, end in stored.values() if end >= lsn and at >= committed_at]
        if arrivals:
            delays.append(min(arrivals) - committed_at)
    return delays


def incremental_sizes(workdir: Path, scale: int) -> tuple[int, int]:
    """(full, incremental) base backup bytes on PostgreSQL 18 after 1% of the accounts changed."""
    cluster = PostgresCluster(workdir / "pg18", bin_dir=str(wheel_bin_dir())).start()
    try:
        cluster.psql("ALTER SYSTEM SET summarize_wal = on")
        cluster.psql("SELECT pg_reload_conf()")
        dataset.build(cluster, DB, scale)
        lab18 = AppCli({"BACKUP_DATABASE_URL": cluster.url(DB), "CATALOG_DATABASE_URL": f"sqlite:///{workdir}/c18.db",
                        "BACKUP_DIR": str(workdir / "backups18"), "SECRET_KEY": "bench", "FLASK_SKIP_DOTENV": "1"})
        lab18.run("pitr", "enable", DB)
        worker = subprocess.Popen([FLASK, "worker"], env=lab18.env, cwd=PROJECT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            full = json.loads(lab18.run("pitr", "base-backup", DB, "--json").stdout)["size_bytes"]
            cluster.psql("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 0", DB)
            cluster.psql("CHECKPOINT")
            time.sleep(2)  # the WAL summarizer catches up
            incremental = json.loads(lab18.run("pitr", "base-backup", DB, "--incremental", "--json").stdout)
        finally:
            worker.terminate()
            worker.wait(30)
        return full, incremental["size_bytes"]
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pitr", description=__doc__)
    parser.add_argument("--scale", type=int, default=int(os.environ.get("BENCH_SCALE", 13)))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--load-seconds", type=float, default=150)
    parser.add_argument("--partial-seconds", type=int, help="WAL_PARTIAL_UPLOAD_SECONDS (default: the app's)")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix="backup-bench-pitr-"))
    workdir.chmod(0o755)  # the restored server's user walks into it
    rows = []
    try:
        with Lab(workdir) as lab:
            log(f"building the database (pgbench scale {args.scale} + wide table)")
            size = dataset.build(lab.cluster, DB, args.scale)
            cli = lab.start_app(DB)
            if args.partial_seconds is not None:
                cli.env["WAL_PARTIAL_UPLOAD_SECONDS"] = str(args.partial_seconds)
            partial = args.partial_seconds if args.partial_seconds is not None else Config().WAL_PARTIAL_UPLOAD_SECONDS
            cli.run("pitr", "enable", DB)
            worker = subprocess.Popen([FLASK, "worker"], env=cli.env, cwd=PROJECT, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            try:
                bare, ours, stored = base_backups(lab, cli, args.repeat)
                rows.append(("P1", "bare `pg_basebackup -D - -Ft -X none > /dev/null`", f"{Summary.of(bare).median:.2f} s", ""))
                ratio = Summary.of([o / b for o, b in zip(ours, bare, strict=True)])
                rows.append(("P2", "`flask pitr base-backup` (zstd, SHA-256, local + S3)",
                             f"{Summary.of(ours).median:.2f} s · {stored / 1e6:.1f} MB stored",
                             f"{ratio.median:.2f}× (P1) ({ratio.low:.2f} – {ratio.high:.2f})"))
                log(f"loss window: {args.load_seconds:.0f} s of commits every 0.2 s")
                delays = loss_window(lab, cli, lab.workdir / "catalog.db", args.load_seconds)
                rows.append(("P4", f"commit → its WAL in every store, steady writes, WAL_PARTIAL_UPLOAD_SECONDS={partial}",
                             f"p50 {percentile(delays, 50):.1f} s · p99 {percentile(delays, 99):.1f} s · "
                             f"max {max(delays):.1f} s", f"{len(delays)} commits"))
                seconds = restores(lab, cli, args.repeat, workdir)
                rows.append(("P3", f"`flask pitr restore --to latest` ({size / 1e6:.0f} MB database)",
                             f"{Summary.of(seconds).median:.2f} s", f"{min(seconds):.2f} – {max(seconds):.2f} s"))
            finally:
                worker.terminate()
                worker.wait(30)
        full, incremental = incremental_sizes(workdir, args.scale)
        rows.append(("P5", "PostgreSQL 18: incremental base backup after 1% of accounts updated, against a full one",
                     f"{incremental / 1e6:.1f} MB vs {full / 1e6:.1f} MB", f"{incremental / full:.2f}×"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nPITR figures, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    print("| # | what | figure | against |\n|---|---|---|---|")
    for row in sorted(rows):
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
