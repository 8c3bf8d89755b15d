"""Timing subprocesses, their peak memory, and summarising repeated samples."""
import math
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


class BenchError(Exception):
    """A step of the benchmark failed; the message says which and why."""


@dataclass
class Sample:
    """One timed run: wall seconds, peak RSS of the process tree's largest member, bytes made,
    and the seconds of named steps when a case has several."""

    seconds: float
    max_rss: int = 0
    size: int | None = None
    steps: dict[str, float] = field(default_factory=dict)


@dataclass
class Finished:
    """A subprocess that ran to its end."""

    sample: Sample
    stdout: str


def run(args: list[str], env: dict[str, str] | None, *, cwd=None, stdin: str | None = None,
        stdout=None) -> Finished:
    """Run `args` to completion, timing it and watching its peak RSS.

    `stdout` may be a file object to send the output to (e.g. /dev/null); by default it
    is captured. A non-zero exit raises BenchError with the program's stderr.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=stdout or out, stderr=err,
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL)
        watcher = PeakRss(proc.pid)
        if stdin is not None:
            proc.stdin.write(stdin.encode())
            proc.stdin.close()
        proc.wait()
        seconds = time.perf_counter() - start
        max_rss = watcher.stop()
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            message = err.read().decode(errors="replace").strip()
            raise BenchError(f"{' '.join(args[:3])} … exited {proc.returncode}: {message}")
        return Finished(Sample(seconds, max_rss), out.read().decode(errors="replace"))


class PeakRss:
    """Polls a process's VmHWM (its own peak RSS since exec) until stopped.

    Not getrusage: a child's ru_maxrss starts from its parent's size at fork, so every
    program started from this (large) Python process would seem to use at least as much.
    """

    def __init__(self, pid: int, interval: float = 0.01):
        self._path = Path(f"/proc/{pid}/status")
        self._interval = interval
        self._stopped = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while True:
            try:
                status = self._path.read_text()
            except OSError:
                return
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak = max(self.peak, int(line.split()[1]) * 1024)
            if self._stopped.wait(self._interval):
                return

    def stop(self) -> int:
        """Stop watching (after the process exited); its peak RSS in bytes."""
        self._stopped.set()
        self._thread.join()
        return self.peak


@dataclass
class Summary:
    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> "Summary":
        return cls(statistics.median(values), min(values), max(values), len(values))


def paired_ratios(values: list[float], references: list[float]) -> list[float]:
    """Each value over the reference measured in the same round."""
    return [v / r for v, r in zip(values, references, strict=True)]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0–100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(len(ordered) * p / 100))
    return ordered[rank - 1]
