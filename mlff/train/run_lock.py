"""One training run per output folder: an advisory lock on ``<output_dir>/.mlff-train.lock``.

The lock is an ``flock`` held by the running process, so the kernel releases it when the process
ends in any way (a crash or ``kill -9`` leaves no stuck lock). The file records who holds it, for
the message a second run prints. Under DDP, rank 0 holds it for all ranks.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Optional

import torch

from ..files import remove_stale_temporaries

LOCK_NAME = ".mlff-train.lock"


class RunLockedError(RuntimeError):
    """Another process is training into the same output folder."""


class RunLock:
    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"{self.directory} is being trained by {holder}; wait for that run to finish (it resumes "
                "from the same folder afterwards) or choose another output_dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            return f"pid {info['pid']} on {info['host']} (since {info['started']})"
        except (OSError, ValueError, KeyError):
            return "another process"

    def __del__(self):
        try:
            self.release()
        except Exception:  # noqa: BLE001 - at interpreter exit the kernel releases it anyway
            pass

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def lock_output_dir(out: Path, dist) -> RunLock:
    """Lock ``out`` for one run (rank 0 of ``dist`` holds the lock; every rank learns the outcome).
    With the lock held, temporaries of killed writers are removed."""
    lock = RunLock(out)
    failed = None
    if dist.is_main:
        Path(out).mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire()
            remove_stale_temporaries(out)
        except RunLockedError as error:
            failed = error
    if dist.sum_(torch.tensor(0.0 if failed is None else 1.0, dtype=torch.float64)) > 0:
        raise failed or RunLockedError(f"{out} is being trained by another run; choose another output_dir")
    return lock
