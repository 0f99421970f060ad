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
import time
from typing import List, Optional, Union

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


def stop_message(reason: str, where: str, out, budget: "TimeBudget", signum: Optional[int] = None) -> str:
    """What the trainer says when a signal or the time limit stops it ``where`` (epoch, step)."""
    if reason == "signal":
        return (f"stopped by signal {signum} at {where}; checkpoint {out}/last.pt and the best model so far {out}/model.pt "
                f"written. Resume with the same command (mlff train <config>, same output_dir)")
    return (f"time_limit {format_duration(budget.time_limit)} reached at {where} "
            f"({format_duration(budget.seconds_used())} used); to continue, raise time_limit and run the same "
            f"command again")


class TrainingInterrupted(Exception):
    """Training stopped by a signal after writing its checkpoint; ``exit_code`` is 128 + signal."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


class TimeBudget:
    """The wall-time budget of one output folder: ``seconds_used`` counts this run (from ``start``)
    on top of ``used_before`` (earlier runs); ``clock`` is injectable (tests)."""

    WRITE_SECONDS = 3.0  # checkpoint, and scripting + writing the model file

    def __init__(self, time_limit: Optional[float], used_before: float = 0.0, clock=time.perf_counter):
        self.time_limit = time_limit
        self.used_before = used_before
        self.clock = clock
        self.run_start = clock()

    def start(self) -> None:
        """This run's time counts from now."""
        self.run_start = self.clock()

    def seconds_used(self) -> float:
        return self.used_before + (self.clock() - self.run_start)

    def seconds_left(self) -> Optional[float]:
        return None if self.time_limit is None else self.time_limit - self.seconds_used()

    def fraction_used(self) -> float:
        return self.seconds_used() / self.time_limit if self.time_limit is not None else 0.0

    def step_fits(self, step_seconds: List[float], validation_seconds: Optional[float], valid_batches: int) -> bool:
        """Whether one more step (the slowest of ``step_seconds``), a validation (as measured, else a
        step per validation batch), writing the outputs and a margin (2 % of the limit, at most 5 s)
        still fit in ``time_limit``."""
        if self.time_limit is None:
            return True
        step = max(step_seconds) if step_seconds else 0.0
        finish = validation_seconds if validation_seconds is not None else step * valid_batches
        margin = min(5.0, 0.02 * self.time_limit)
        return self.seconds_used() + step + finish + self.WRITE_SECONDS + margin <= self.time_limit

    def training_left(self, step_seconds: List[float], steps_left: int) -> float:
        """Expected training time left: ``steps_left`` at the mean of ``step_seconds``, or what is
        left of ``time_limit`` if that is less."""
        left = steps_left * sum(step_seconds) / len(step_seconds)
        return left if self.time_limit is None else min(left, self.seconds_left())
