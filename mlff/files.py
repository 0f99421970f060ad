"""Writing output files so that a kill at any moment leaves the old file or the new one, never a
truncated one or a stray temporary; and JSON that is valid JSON.

Temporary files are named ``.<name>.<pid>.<random>.tmp`` beside their target. A ``kill -9``
cannot be caught, so the next writer into the same folder removes the temporaries of processes
that no longer run (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from typing import Iterator

_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]+\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike) -> list:
    """Remove the temporaries in ``directory`` left by processes that no longer run; returns their names."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _TEMPORARY.match(name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(directory, name))
                removed.append(name)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode: int = 0o644, make_dirs: bool = False) -> Iterator[str]:
    """``with atomic_path(target) as tmp:`` write ``tmp``; on success it replaces ``target`` (with
    permissions ``mode``), on any error or interrupt it is removed. ``make_dirs``: create the
    target's folder (else a missing folder is an error, e.g. an output folder removed under a run)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if make_dirs:
        os.makedirs(directory, exist_ok=True)
    remove_stale_temporaries(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, mode)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def json_safe(value):
    """``value`` with non-finite floats (NaN, inf: not JSON) replaced by None."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy and torch scalars
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def dumps_json(value) -> str:
    """Strict JSON (``null`` for NaN and infinities), indented."""
    return json.dumps(json_safe(value), indent=2, allow_nan=False)


def write_json(path: str | os.PathLike, value) -> None:
    """Write ``value`` as strict JSON, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as handle:
            handle.write(dumps_json(value) + "\n")
