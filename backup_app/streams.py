"""Reading from streams that may return less than asked for (pipes, sockets, decoders)."""
from typing import BinaryIO


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
