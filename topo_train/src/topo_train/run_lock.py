"""One process per run directory: an exclusive lock that a second process reports at once.

Two processes training into one directory would interleave ``metrics.jsonl``, race on the
checkpoint rotation and open two MLflow runs. The lock is an ``flock`` on ``.topo.lock`` inside
the run directory holding the owner's pid; the kernel drops it when the owner dies (a kill
included), so a stale lock never blocks a resume.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from types import TracebackType

from topo_models import TopoError

LOCK_NAME = ".topo.lock"


class RunDirectoryBusy(TopoError):
    """Another live process holds the run directory (nothing of it was touched)."""


class RunDirectoryLock:
    """Context manager holding ``run_dir``'s lock; raises :class:`RunDirectoryBusy` if taken."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunDirectoryLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirectoryBusy(
                "another process is already running in this run directory; wait for it to "
                "finish (or stop it), or give this run another run_dir",
                file=self.path.parent,
                field="run_dir",
                found=f"held by {holder}",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunDirectoryLock:
        return self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
