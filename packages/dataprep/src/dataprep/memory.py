"""Returning freed heap memory to the system on glibc (Linux).

The tokenizer's Rust threads allocate every Encoding in their own malloc arenas, and Python frees them
from another thread. glibc keeps such freed memory inside the arenas instead of returning it, so the
resident size creeps up as the run goes on although nothing is kept. `release` after every few chunks
gives it back. Elsewhere (macOS, musl) it is a no-op.

Stage 4 of prepare (phases.py) calls it, and so do the screen (screen.py) and the benchmark index
(decontaminate.py), whose numpy passes free large temporaries.
"""

from __future__ import annotations

import ctypes
import ctypes.util


def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return getattr(libc, "malloc_trim", None)


_MALLOC_TRIM = _malloc_trim()


def release() -> None:
    """Give freed heap memory back to the system (about a millisecond)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
