"""When to stop training early: a wall-time budget (``time_limit``) and termination signals.

``time_limit`` counts the time spent in training and validation over all runs of one output
folder (a resumed run continues the budget; the time between a ``kill -9`` and the last
checkpoint is not counted). The trainer stops before a step when that step, one validation and
writing the model would no longer fit. SIGTERM (a cluster's scheduler at the end of a job or on
preemption) and SIGINT (Ctrl-C) finish the current step, then the trainer checkpoints and exits;
a second signal stops at once.
"""

from __future__ import annotations

import re
import signal
import threading
from typing import Optional, Union

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?)\s*([dhms])")


def parse_duration(value: Union[str, int, float, None]) -> Optional[float]:
    """``"20m"``, ``"11h30m"``, ``"1d 2h"``, ``"90s"``, ``"1.5h"`` or a number of seconds -> seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        pieces = _DURATION.findall(text)
        if not pieces or _DURATION.sub("", text).strip():
            raise ValueError(f"time_limit: {value!r} is not a duration; write e.g. 45m, 11h30m, 1d2h or a "
                             f"number of seconds")
        seconds = sum(float(number) * _UNITS[unit] for number, unit in pieces)
    if seconds <= 0:
        raise ValueError(f"time_limit must be positive, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes:02d}m" if hours else f"{minutes}m") + f"{secs:02d}s"


class SignalCatcher:
    """Within ``with``: SIGTERM/SIGINT set ``received`` (the first one); a second one raises
    ``KeyboardInterrupt`` at once. Previous handlers are restored on exit. Outside the main
    thread (where handlers cannot be installed) it catches nothing."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, log=print):
        self.received: Optional[int] = None
        self._previous = {}
        self._log = log

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        self._log(f"received {signal.Signals(signum).name}: finishing this step, then writing a checkpoint "
                  f"(send it again to stop at once)")

    def __enter__(self) -> "SignalCatcher":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class TrainingInterrupted(Exception):
    """Training stopped by a signal after writing its checkpoint; ``exit_code`` is 128 + signal."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.exit_code = 128 + int(signum)
