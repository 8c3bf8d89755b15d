"""`make bench` cannot rot: a tiny run must finish and leave a well-formed table and JSON file.

Speed is not checked here; only that every case ran and reported figures.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
ROWS = ("0′", "0", "0″", "1", "2", "2′", "3", "3′", "4a", "4a′", "4b", "4b′", "4c", "4c′", "5", "5′", "6a", "6b", "6c", "6d",
        "6e", "7a", "7b", "7c", "7d", "8a", "8b", "9a", "9b")
TIMED = ("imports", "startup", "dump_devnull", "dump_then_upload", "create", "create_zstd", "create_plain",
         "create_zstd_encrypted", "pg_restore", "pg_restore_jobs", "restore_local", "restore_s3", "restore_swap",
         "restore_swap_1", "dump_devnull_big", "create_big", "workers_1", "workers_3")


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One tiny benchmark run for the module: its process result and its results folder."""
    results = tmp_path_factory.mktemp("bench-results")
    args = [sys.executable, "-m", "bench", "--scale=1", "--repeat=1", "--rss-multiplier=2",
            "--web-rows=300", "--web-seconds=0.5", "--fleet=3", f"--results={results}"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the benchmark stops its servers on SIGTERM
        proc.communicate()
        raise
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr), results


def test_tiny_run_prints_the_table_and_writes_the_json(bench_run):
    result, results = bench_run

    assert result.returncode == 0, result.stderr[-3000:]
    [path] = results.glob("bench-*.json")
    data = json.loads(path.read_text())
    assert data["errors"] == {}
    assert data["table"] in result.stdout
    for key in TIMED:
        samples = data["samples"][key]
        assert len(samples) == 1 and samples[0]["seconds"] > 0, key
    assert all(s["max_rss"] > 0 for s in data["samples"]["create"])
    assert data["figures"]["create/dump_devnull"] > 0
    assert data["figures"]["create_big/create.max_rss"] > 0
    assert data["figures"]["page.rps"] > 0 and data["figures"]["api.rps"] > 0
    assert all(run["errors"] == 0 for key in ("page", "api") for run in data["web"][key]["runs"]), \
        "every request answered 200 (signed in, valid token)"
    assert data["figures"]["create_zstd.size_ratio"] > 0
    assert data["figures"]["workers_3/workers_1.throughput"] > 0


def test_table_has_every_row_with_figures_or_n_a(bench_run):
    result, _ = bench_run

    lines = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    header, *rows = lines
    assert header.startswith("| # | case | median |")
    cells = {row.split(" | ")[0].removeprefix("| "): row.split(" | ") for row in rows}
    assert tuple(cells) == ROWS
    for number in ("1", "2", "3", "4a", "4b", "4c", "5", "5′", "6a", "6b", "6c", "6d", "6e"):
        assert cells[number][2].endswith(" s"), cells[number]
    for number in ("4a′", "4b′", "4c′"):
        assert cells[number][2].endswith(" MB") and cells[number][4].endswith("× (3′)"), cells[number]
    for number in ("8a", "8b"):
        assert " req/s · p50 " in cells[number][2], cells[number]
    for number in ("9a", "9b"):
        assert cells[number][2].endswith(" backups/min"), cells[number]
