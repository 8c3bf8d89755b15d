"""`python -m bench.sets`: a server target's backup set of a bench server with several databases,
timed against the bare commands run one after another: `pg_dumpall --globals-only`, then
`pg_dump -Fc` of each database to a file. The set also writes every dump to S3 and records it;
it dumps SET_PARALLEL databases at once (goal: the set ≤ 1.0× the serial bare commands)."""
import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from devtools.localservers import exit_on_sigterm

from . import dataset
from .lab import Lab
from .measure import run


def bare_serial(lab: Lab, databases: list[str], folder: Path) -> float:
    """Seconds for pg_dumpall --globals-only, then pg_dump -Fc of each database, one after another."""
    bin_dir = lab.cluster.bin_dir
    seconds = run([str(bin_dir / "pg_dumpall"), "--globals-only", f"--file={folder / 'globals.sql'}"],
                  lab.pg_env("postgres")).sample.seconds
    for name in databases:
        seconds += run([str(bin_dir / "pg_dump"), "-Fc", f"--file={folder / name}.dump"],
                       lab.pg_env(name)).sample.seconds
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sets", description=__doc__)
    parser.add_argument("--databases", type=int, default=4, help="databases on the bench server (default 4)")
    parser.add_argument("--scale", type=int, default=int(os.environ.get("BENCH_SET_SCALE", 8)),
                        help="pgbench scale of each (default 8 ≈ 185 MB; env BENCH_SET_SCALE)")
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", 3)))
    parser.add_argument("--parallel", type=int, default=2, help="SET_PARALLEL (default 2)")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="bench-sets-") as work, Lab(Path(work)) as lab:
        names = [f"bench_set_{n}" for n in range(1, args.databases + 1)]
        for name in names:
            dataset.build(lab.cluster, name, args.scale)
        cli = lab.start_app("postgres")
        server_url = lab.cluster.url("")
        cli.run("targets", "add", "server", "--url", server_url, "--all-databases", "--codec", "gzip")
        set_times, bare_times = [], []
        for round_ in range(args.repeat):
            order = ["set", "bare"] if round_ % 2 == 0 else ["bare", "set"]
            for case in order:
                if case == "set":
                    done = cli.run("backup", "create", "--database", "server", "--json", SET_PARALLEL=str(args.parallel))
                    made = json.loads(done.stdout)
                    assert all(b["status"] == "completed" for b in made["backups"]), made
                    set_times.append(done.sample.seconds)
                else:
                    with tempfile.TemporaryDirectory(dir=work) as folder:
                        bare_times.append(bare_serial(lab, ["postgres", *names], Path(folder)))
            print(f"[bench.sets] round {round_ + 1}: set {set_times[-1]:.2f} s, bare serial {bare_times[-1]:.2f} s",
                  file=sys.stderr, flush=True)
    ratios = [s / b for s, b in zip(set_times, bare_times)]
    print(f"backup set of {args.databases} databases (pgbench scale {args.scale} each) + postgres + globals, "
          f"SET_PARALLEL={args.parallel}, local file and S3, {args.repeat} rounds")
    print(f"  set (flask backup create):            median {statistics.median(set_times):.2f} s")
    print(f"  bare serial (pg_dumpall -g, pg_dump -Fc each): median {statistics.median(bare_times):.2f} s")
    print(f"  ratio set / bare serial:               median {statistics.median(ratios):.2f}× "
          f"(min {min(ratios):.2f}×, max {max(ratios):.2f}×; goal ≤ 1.0×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
