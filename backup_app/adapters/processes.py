"""The client programs a job runs (pg_dump, pg_restore, psql, pg_basebackup), so that its
watchdog (jobs/records.py) can tell when they stop moving bytes and stop them.

The adapters hand every process they start to `track`; it joins the processes of the job
running in the current context (`tracking`), and nothing happens outside a job.
"""
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

_current: ContextVar["JobProcesses | None"] = ContextVar("job_processes", default=None)
PROC_IO = Path("/proc/self/io").exists()  # Linux tells what each process read and wrote


class JobProcesses:
    """The running client programs of one job."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: list[subprocess.Popen] = []
        self.stopped = False

    def add(self, popen: subprocess.Popen) -> None:
        """Watch `popen`; kill it at once when the job has been stopped already."""
        with self._lock:
            self._running = [p for p in self._running if p.poll() is None]
            if self.stopped:
                popen.kill()
            else:
                self._running.append(popen)

    def bytes_moved(self) -> tuple | None:
        """What the running programs have read and written so far, with their descendants
        (pg_restore's parallel workers), as a value that changes whenever they move a byte;
        None when none runs, or when the system does not tell (no /proc/<pid>/io)."""
        with self._lock:
            self._running = [p for p in self._running if p.poll() is None]
            pids = [p.pid for p in self._running]
        if not pids or not PROC_IO:
            return None
        counts = [io_bytes(pid) for pid in descendants(pids)]
        return None if None in counts else tuple(sorted(counts))

    def stop(self) -> list[str]:
        """Kill the running programs, and any the job starts from now on; their names."""
        with self._lock:
            self.stopped = True
            running = [p for p in self._running if p.poll() is None]
            for popen in running:
                popen.kill()
        return [Path(popen.args[0]).name for popen in running]


@contextmanager
def tracking(processes: JobProcesses) -> Iterator[JobProcesses]:
    """Processes `track`ed in this context (this thread, while the block runs) join `processes`."""
    token = _current.set(processes)
    try:
        yield processes
    finally:
        _current.reset(token)


def track(popen: subprocess.Popen) -> subprocess.Popen:
    """Hand a process just started to the current job's watchdog (if any); returns it."""
    processes = _current.get()
    if processes is not None:
        processes.add(popen)
    return popen


def io_bytes(pid: int) -> tuple[int, int, int] | None:
    """(pid, bytes read, bytes written) by a process through any file, pipe or socket; None if unknown."""
    try:
        fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    except FileNotFoundError:  # it just ended: its bytes no longer count
        return pid, 0, 0
    except OSError:
        return None
    return pid, int(fields["rchar"]), int(fields["wchar"])


def bytes_read(pid: int) -> int:
    """What a process and those below it have read so far (0 where the system does not tell)."""
    counts = [io_bytes(child) for child in descendants([pid])] if PROC_IO else []
    return sum(count[1] for count in counts if count)


def descendants(pids: list[int]) -> list[int]:
    """`pids` and every process below them."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ")".
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, queue = [], list(pids)
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found
