"""One build per output directory at a time, across processes (and nodes, on file systems with
working POSIX locks): N ranks calling `prepare` on the same DIR build once; the others wait, then
find a complete build and reuse it.

It guards stages 2 to 6 of prepare (pipeline.py)."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

LOCK_NAME = ".dataprep.lock"


@contextmanager
def exclusive(out: Path, on_wait: Callable[[str], None]) -> Iterator[None]:
    """Hold an exclusive lock on OUT/.dataprep.lock. The file is never deleted (deleting a lock file
    while another process waits on it would let two builders in)."""
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            on_wait(f"waiting for another dataprep (pid {holder}) that is building {out}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock, also when the process is killed
