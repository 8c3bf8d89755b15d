"""`python -m bench`: build the database, run every case in alternating rounds, report."""
import argparse
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from devtools.localservers import RedisServer, exit_on_sigterm

from . import dataset, report
from .appcli import AppCli
from .backups import BackupCases, Case
from .lab import Lab
from .measure import BenchError, Sample, run
from .web import web_cases
from .workers import FLEET, WORKER_COUNTS, WorkerCases, make_fleet

DB = "bench"
DB_BIG = "bench_big"
FLEET_SCALE = 1  # pgbench scale of each of the worker case's small databases
RESULTS = Path(__file__).resolve().parent / "results"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--scale", type=int, default=int(env("BENCH_SCALE", 13)),
                        help="pgbench scale S; each unit adds ~23 MB (default 13 ≈ 300 MB; env BENCH_SCALE)")
    parser.add_argument("--repeat", type=int, default=int(env("BENCH_REPEAT", 5)),
                        help="rounds of every case (default 5; env BENCH_REPEAT)")
    parser.add_argument("--rss-multiplier", type=int, default=4,
                        help="peak RSS is measured again at this multiple of S (default 4)")
    parser.add_argument("--web-rows", type=int, default=100_000, help="catalog rows for the web case")
    parser.add_argument("--web-seconds", type=float, default=10, help="seconds of load per web run")
    parser.add_argument("--connections", type=int, default=4, help="concurrent keep-alive connections")
    parser.add_argument("--fleet", type=int, default=FLEET,
                        help=f"small databases backed up by the workers of case 9 (default {FLEET})")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the JSON file")
    return parser.parse_args(argv)


def run_rounds(cases: list[Case], repeat: int) -> tuple[dict[str, list[Sample]], dict[str, str]]:
    """Every case once per round, in reverse order every other round; a failing case is dropped."""
    samples: dict[str, list[Sample]] = {case.key: [] for case in cases}
    errors: dict[str, str] = {}
    for round_ in range(repeat):
        for case in cases if round_ % 2 == 0 else cases[::-1]:
            if case.key in errors:
                continue
            try:
                sample = case.measure()
            except BenchError as exc:
                errors[case.key] = str(exc)
                log(f"{case.label} failed: {exc}")
                continue
            samples[case.key].append(sample)
            log(f"round {round_ + 1}/{repeat}  {case.label}: {sample.seconds:.2f} s, "
                f"peak RSS {sample.max_rss / 1e6:.0f} MB")
    return samples, errors


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    memory = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    return {
        "description": f"{os.cpu_count()} × {cpu}, {memory / 2**30:.0f} GiB RAM, {platform.system()} "
                       f"{platform.release()}, Python {platform.python_version()}",
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def measure(lab: Lab, args: argparse.Namespace) -> dict:
    """Run every case; the results as plain data (see report.Table for how they are read)."""
    log(f"building the database (pgbench scale {args.scale} + wide table)")
    size = dataset.build(lab.cluster, DB, args.scale)
    lab.start_app(DB)
    backups = BackupCases(lab, DB)
    cases = backups.cases()
    log(f"database {size / 1e6:.0f} MB; {args.repeat} rounds of {len(cases)} cases")
    samples, errors = run_rounds(cases, args.repeat)

    times = f"{args.rss_multiplier}×S"
    log(f"building the {times} database")
    dataset.build(lab.cluster, DB_BIG, args.scale * args.rss_multiplier)
    big_cases = [
        Case("dump_devnull_big", f"`pg_dump -Fc > /dev/null`, {times}", lambda: backups.dump_to_devnull(DB_BIG)),
        Case("create_big", f"`flask backup create`, {times}",
             lambda: backups.create(BACKUP_DATABASE_URL=lab.cluster.url(DB_BIG))),
    ]
    big_samples, big_errors = run_rounds(big_cases, args.repeat)
    lab.cluster.dropdb(DB_BIG)

    worker_cases, worker_samples, worker_errors = measure_workers(lab, args.fleet, args.repeat)

    web_cli = AppCli(lab.settings(DB, lab.workdir / "web-catalog.db"))
    try:
        web = web_cases(web_cli, lab.workdir, args.web_rows, args.web_seconds, args.connections, args.repeat, log)
    except BenchError as exc:
        web, errors["web"] = {}, str(exc)
        log(f"web case failed: {exc}")
    return {
        "database": {"name": DB, "bytes": size, "server": lab.cluster.psql("SHOW server_version"),
                     "pg_dump": run([lab.pg.program("pg_dump"), "--version"], None).stdout.strip()},
        "labels": {case.key: case.label for case in [*cases, *big_cases, *worker_cases]},
        "samples": {key: [asdict(s) for s in runs]
                    for key, runs in {**samples, **big_samples, **worker_samples}.items()},
        "errors": {**errors, **big_errors, **worker_errors},
        "web": web,
    }


def measure_workers(lab: Lab, size: int, repeat: int) -> tuple[list[Case], dict[str, list[Sample]], dict[str, str]]:
    """Case 9: backups of `size` small databases through Redis by 1 and by 3 worker processes, alternating."""
    log(f"building {size} small databases for the worker case")
    fleet = make_fleet(lab, FLEET_SCALE, size)
    with RedisServer(lab.workdir / "redis") as redis:
        settings = {**lab.settings(DB, lab.workdir / "workers-catalog.db"), "REDIS_URL": redis.url}
        workers = WorkerCases(lab, settings, fleet)
        cases = [Case(f"workers_{count}", f"{size} small backups queued to {count} × `flask worker --workers 1` "
                      "(Redis)", lambda count=count: workers.measure(count)) for count in WORKER_COUNTS]
        samples, errors = run_rounds(cases, repeat)
    return cases, samples, errors


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()  # unwinds the with-blocks, which stop the servers
    started = datetime.now(timezone.utc).replace(microsecond=0)
    results = {"started_at": started.isoformat(), "machine": machine(),
               "params": {**vars(args), "results": str(args.results)}}
    workdir = Path(tempfile.mkdtemp(prefix="backup-bench-"))
    try:
        with Lab(workdir) as lab:
            results.update(measure(lab, args))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["machine"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    table, numbers = report.markdown(results)
    results.update(table=table, figures=numbers)
    print(table)
    print(f"\nJSON: {report.save(results, args.results)}")
    return 1 if results["errors"] else 0
