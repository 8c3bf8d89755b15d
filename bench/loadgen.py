"""The load generator, run as its own process: `python -m bench.loadgen URL --seconds S …`.

Each connection is a thread with one keep-alive HTTP connection sending GETs back to back
until the time is up. Prints one JSON object: requests, errors, seconds, rps, p50/p99 (ms).
"""
import argparse
import http.client
import json
import statistics
import threading
import time
from urllib.parse import urlsplit

from .measure import percentile


def hammer(url: str, headers: dict[str, str], deadline: float, latencies: list[float],
           failures: list[str]) -> None:
    """GET `url` until `deadline`; a 200 adds its latency, anything else a failure."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            failures.append(type(exc).__name__)
            conn.close()
            continue
        if response.status == 200:
            latencies.append(time.perf_counter() - start)
        else:
            failures.append(str(response.status))
    conn.close()


def load(url: str, seconds: float, connections: int, headers: dict[str, str]) -> dict:
    latencies: list[float] = []
    failures: list[str] = []
    start = time.perf_counter()
    threads = [threading.Thread(target=hammer, args=(url, headers, start + seconds, latencies, failures))
               for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    result = {"requests": len(latencies), "errors": len(failures), "seconds": elapsed,
              "connections": connections, "rps": len(latencies) / elapsed,
              "p50_ms": None, "p99_ms": None, "failures": sorted(set(failures))}
    if latencies:
        result["p50_ms"] = statistics.median(latencies) * 1000
        result["p99_ms"] = percentile(latencies, 99) * 1000
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'")
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    print(json.dumps(load(args.url, args.seconds, args.connections, headers)))


if __name__ == "__main__":
    main()
