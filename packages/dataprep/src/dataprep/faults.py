"""Fault injection for the kill tests: with DATAPREP_KILL_AT=<point> in the environment, the process
kills itself with SIGKILL when it reaches that point, so tests can prove that a run killed at any
stage leaves nothing that looks complete. Without the variable this does nothing.

The points sit in stages 5 and 6 of prepare (write.py, manifest.py)."""

from __future__ import annotations

import os
import signal

POINTS = ("normalized", "shard", "commit", "manifest")


def checkpoint(point: str) -> None:
    if os.environ.get("DATAPREP_KILL_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)
