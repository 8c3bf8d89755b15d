"""Reading from streams that may return less than asked for (pipes, sockets, decoders)."""
from collections.abc import Callable
from typing import BinaryIO

Progress = Callable[[int], None]  # told the bytes done so far


class CountingReader:
    """A stream that tells `progress` how many bytes have been read from it so far."""

    def __init__(self, stream: BinaryIO, progress: Callable[[int], None]):
        self._stream = stream
        self._progress = progress
        self._done = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._done += len(data)
        self._progress(self._done)
        return data


def shifted(progress: Progress | None, base: int) -> Progress | None:
    """`progress` told `base` bytes more than it is given (those of the parts before)."""
    return None if progress is None else (lambda nbytes: progress(base + nbytes))


def read_full(stream: BinaryIO, size: int) -> bytes:
    """Read `size` bytes, fewer only at the end of the stream."""
    parts, remaining = [], size
    while remaining:
        data = stream.read(remaining)
        if not data:
            break
        parts.append(data)
        remaining -= len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)
