"""Whether and when a run compiles its training step (``compile``: true, false or auto).

``true`` compiles before the first step (errors stop the run). ``auto`` decides once, when 5
steps have been timed: it compiles if more than ``AUTO_COMPILE_SECONDS`` of training are left (a
compilation takes minutes, see config.py), and trains eagerly if the step cannot be compiled
(the reason is logged). ``false`` never compiles.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

from ..data.atomic_data import collate
from ..modelfile.compiled_copy import CompileError
from . import config as config_module
from .budget import format_duration
from .compiled_step import CompiledStep
from .loss import batch_counts


class CompilePolicy:
    def __init__(self, config: config_module.TrainConfig, log: Callable[[str], None]):
        self.config = config
        self.log = log
        self.decided = config.compile is False
        self.compiled: Optional[CompiledStep] = None
        self.compiled_at_epoch: Optional[int] = None
        self.eager_steps = 0  # steps that a compiled run ran eagerly (batches outside its domain)

    def maybe_compile(self, step_seconds: List[float], seconds_left: Callable[[], float], build: Callable[[], None]
                      ) -> None:
        """Before a step: compile now if the policy says so. ``seconds_left()`` estimates the training
        time left; ``build()`` compiles (and sets :attr:`compiled` through :meth:`compile`)."""
        if self.decided:
            return
        if self.config.compile is True:
            self.decided = True
            build()
            return
        if len(step_seconds) < 5:
            return
        self.decided = True
        left = seconds_left()
        if left < config_module.AUTO_COMPILE_SECONDS:
            return
        self.log(f"compile: auto: about {format_duration(left)} of training left, compiling the training step "
                 "(compile: false turns this off)")
        try:
            build()
        except CompileError as error:
            self.log(f"compile: auto: training eagerly: {error}")

    def compile(self, model, train_data: List[dict], device, weight_sets: List[Dict[str, float]], cache_dir: str,
                epoch: int) -> None:
        """The compiled step, traced on the first structures of the training set."""
        c = self.config
        items = train_data[:max(2, c.batch_size)]
        batch = {k: v.to(device) for k, v in collate(items).items()}
        self.compiled = CompiledStep.build(model, batch, batch_counts(items), weight_sets, c.loss, c.huber_delta,
                                           cache_dir, log=self.log)
        self.compiled_at_epoch = epoch

    def summary(self) -> Optional[dict]:
        """For training_summary.json: from which epoch the step ran compiled, and how many steps ran
        eagerly (batches outside the compiled domain)."""
        if self.compiled is None:
            return None
        return {"from_epoch": self.compiled_at_epoch, "eager_steps": self.eager_steps}

