"""The plan of a run: the optimiser, how far it has come, when the final stage of the loss begins, and the
learning rate of the ``cosine`` scheduler (the ``plateau`` one is torch's ``ReduceLROnPlateau``).

Progress is the fraction of ``max_epochs`` or of ``time_limit`` done, whichever is further: a
run with a time budget plans by the clock, one without by epochs.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch

from .config import TrainConfig


class Schedule:
    def __init__(self, config: TrainConfig):
        self.config = config
        c = config
        self.weights = {"energy": c.energy_weight, "forces": c.forces_weight, "stress": c.stress_weight,
                        "dipole": c.dipole_weight}
        self.final_weights = {**self.weights, **c.final_weights()}

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        c = self.config
        optimizer = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
        # foreach: one call per update for all tensors (the per-tensor loop is the default on the CPU)
        return optimizer(params, lr=c.learning_rate, weight_decay=c.weight_decay, foreach=True)

    def make_scheduler(self, optimizer) -> Optional[torch.optim.lr_scheduler.ReduceLROnPlateau]:
        """The plateau scheduler, or None (``cosine`` is set each epoch by :meth:`cosine_learning_rate`)."""
        c = self.config
        if c.scheduler != "plateau":
            return None
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=c.plateau_factor, patience=c.plateau_patience, min_lr=c.min_learning_rate)

    def loss_weights(self, in_final_stage: bool) -> Dict[str, float]:
        return self.final_weights if in_final_stage else self.weights

    def progress(self, epoch: int, budget_fraction: float) -> float:
        """Fraction of training done: of max_epochs or of time_limit (``budget_fraction``, 0 without
        one), whichever runs out first."""
        return min(max(epoch / self.config.max_epochs, budget_fraction), 1.0)

    # a time-limited run enters the final stage while this many epochs (at the last one's duration)
    # still fit, even before its last `final_stage` fraction: with epochs long against the budget,
    # the stage would otherwise never finish one
    FINAL_STAGE_MIN_EPOCHS = 2

    def final_stage_begins(self, epoch: int, budget_fraction: float, seconds_left: Optional[float] = None,
                           epoch_seconds: Optional[float] = None) -> bool:
        """Whether the last ``final_stage`` fraction of max_epochs (or of time_limit) has begun, or
        (with a time limit) only FINAL_STAGE_MIN_EPOCHS epochs of ``epoch_seconds`` still fit in
        ``seconds_left``."""
        c = self.config
        if c.final_stage <= 0.0:
            return False
        short = (seconds_left is not None and epoch_seconds is not None
                 and seconds_left < self.FINAL_STAGE_MIN_EPOCHS * epoch_seconds)
        return (epoch >= int(np.ceil((1.0 - c.final_stage) * c.max_epochs))
                or budget_fraction >= 1.0 - c.final_stage or short)

    def enter_final_stage(self, optimizer, scheduler) -> None:
        """The final stage's learning rate; a plateau scheduler forgets the best loss of the main stage
        (the validation loss changes meaning with the weights)."""
        for group in optimizer.param_groups:
            group["lr"] = self.config.final_start_learning_rate()
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.best, scheduler.num_bad_epochs = scheduler.mode_worse, 0

    def cosine_learning_rate(self, progress: float, in_final_stage: bool) -> float:
        """Half a cosine from learning_rate to min_learning_rate over the main stage, and again from
        the final stage's starting rate over the final stage: the length of training is known in
        advance (epochs or a time budget), so the rate can use all of it."""
        c = self.config
        start, low = c.learning_rate, c.min_learning_rate
        main = 1.0 - c.final_stage
        fraction = progress / main if main > 0 else 1.0
        if in_final_stage:
            start = c.final_start_learning_rate()
            fraction = (progress - main) / c.final_stage
        fraction = min(max(fraction, 0.0), 1.0)
        return low + 0.5 * (start - low) * (1.0 + float(np.cos(np.pi * fraction)))
