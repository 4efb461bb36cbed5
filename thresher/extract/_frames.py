"""Length-prefixed pickle frames over pipe file descriptors (parent ↔ extraction worker).

Raw ``os.read``/``os.write`` on dedicated pipes rather than the child's stdin/stdout: a library
that prints cannot corrupt the stream.
"""

from __future__ import annotations

import os
import pickle
import struct

HEADER = struct.Struct(">Q")


def read_exact(fd: int, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int):
    head = read_exact(fd, HEADER.size)
    if head is None:
        return None
    body = read_exact(fd, HEADER.unpack(head)[0])
    return None if body is None else pickle.loads(body)


def write_frame(fd: int, obj) -> None:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    data = memoryview(HEADER.pack(len(body)) + body)
    while data:
        data = data[os.write(fd, data) :]
