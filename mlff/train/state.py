"""What a training run is at a moment: the counters and records of the loop (:class:`RunState`),
and the one place where the whole run (state, weights, optimiser, schedule, random numbers) is
written to a checkpoint and read back (:func:`run_checkpoint`, :func:`restore_run`).

A checkpoint is a flat dict (``mlff-checkpoint-1``, :mod:`mlff.train.checkpoint`): the model's
species and configs, the state dicts of the model, the EMA, the optimiser and the scheduler, the
torch random state, and the fields of :class:`RunState` (its time records under
``seconds_used`` and ``time_estimates``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch

from .checkpoint import load_checkpoint

# options that may change between a run and its resumption
RESUMABLE_CHANGES = {"max_epochs", "progress", "tensorboard", "early_stopping_patience", "checkpoint_every", "device",
                     "time_limit", "compile", "data_workers"}


@dataclass
class TrainResult:
    output_dir: Path
    model_path: Path
    best_epoch: int
    best_metrics: Dict[str, float]
    epochs: int
    stopped_by: str = ""  # "time_limit" when the budget ended the run early


@dataclass
class RunState:
    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0  # steps taken in the epoch under way
    global_step: int = 0
    best_loss: float = float("inf")  # of the current loss stage (the final stage starts anew)
    best_epoch: int = 0
    best_metrics: Dict[str, float] = field(default_factory=dict)
    stale_epochs: int = 0  # epochs since the validation loss last improved
    finished: bool = False
    epoch_losses: List[float] = field(default_factory=list)  # the current epoch's step losses so far
    in_final_stage: bool = False
    seconds_used: float = 0.0  # training and validation time of the output folder, over all runs
    step_seconds: List[float] = field(default_factory=list)  # the last steps' durations
    validation_seconds: Optional[float] = None  # the last validation's duration

    _COUNTERS = ("epoch", "step_in_epoch", "global_step", "best_loss", "best_epoch", "best_metrics",
                 "stale_epochs", "finished", "epoch_losses", "in_final_stage")

    def to_dict(self) -> dict:
        out = {name: getattr(self, name) for name in self._COUNTERS}
        out["epoch_losses"] = list(self.epoch_losses)
        out["seconds_used"] = self.seconds_used
        out["time_estimates"] = {"step": list(self.step_seconds), "validation": self.validation_seconds}
        return out

    def end_epoch(self, val_loss: float, metrics: Dict[str, float], max_epochs: int, patience: int) -> bool:
        """Count a finished epoch and its validation; whether it improved on the best; the run is
        finished at max_epochs or after ``patience`` epochs without improvement (0: never)."""
        self.epoch += 1
        self.step_in_epoch = 0
        improved = val_loss < self.best_loss
        if improved:
            self.best_loss, self.best_epoch, self.best_metrics, self.stale_epochs = val_loss, self.epoch, metrics, 0
        else:
            self.stale_epochs += 1
        self.finished = self.epoch >= max_epochs or (patience > 0 and self.stale_epochs >= patience)
        return improved

    def epoch_seconds(self, steps: int) -> Optional[float]:
        """An epoch of ``steps`` steps and its validation at the measured durations (None before any)."""
        if not self.step_seconds:
            return None
        return steps * sum(self.step_seconds) / len(self.step_seconds) + (self.validation_seconds or 0.0)

    def summary(self) -> dict:
        """What training_summary.json says of the run (the trainer adds the model, time used and
        why it stopped)."""
        return {"best_epoch": self.best_epoch, "best_val_loss": self.best_loss, "best_metrics": self.best_metrics,
                "epochs": self.epoch, "in_final_stage": self.in_final_stage,
                "time_estimates": {"step": list(self.step_seconds), "validation": self.validation_seconds}}

    @classmethod
    def from_dict(cls, saved: dict) -> "RunState":
        estimates = saved.get("time_estimates") or {}
        return cls(**{name: saved[name] for name in cls._COUNTERS if name in saved},
                   seconds_used=float(saved.get("seconds_used", 0.0)),
                   step_seconds=[float(x) for x in estimates.get("step", [])],
                   validation_seconds=estimates.get("validation"))



def run_checkpoint(state: RunState, species: List[str], model_config: dict, train_config: dict,
                   model: torch.nn.Module, ema, optimizer, scheduler) -> dict:
    """The checkpoint of a run: everything :func:`restore_run` needs to continue it exactly."""
    return {
        "species": species,
        "model_config": model_config,
        "train_config": train_config,
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler else None,
        **state.to_dict(),
        "torch_rng": torch.get_rng_state(),
    }


def restore_run(saved: dict, model: torch.nn.Module, ema, optimizer, scheduler) -> RunState:
    """Load a checkpoint's weights, EMA, optimiser, scheduler and random state; its run state."""
    model.load_state_dict(saved["model"])
    ema.load_state_dict(saved["ema"])
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None and saved["scheduler"] is not None:
        scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["torch_rng"])
    return RunState.from_dict(saved)


def saved_run(out: Path, config: dict) -> Optional[dict]:
    """The checkpoint of the run in ``out`` to resume (``last.pt``), if any. Options that differ
    from the run's (other than RESUMABLE_CHANGES) are refused, naming both values and the ways out."""
    path = Path(out) / "last.pt"
    if not os.path.exists(path):
        return None
    saved = load_checkpoint(path)
    old = saved["train_config"]
    changed = sorted(k for k in config if k not in RESUMABLE_CHANGES and old.get(k) != config[k])
    if changed:
        values = ", ".join(f"{k}: {old.get(k)!r} in the run, {config[k]!r} now" for k in changed)
        raise ValueError(f"{out} holds a run with different options {changed} ({values}); to resume "
                         f"it, set them to the run's values (a default may have changed in a newer mlff), "
                         f"or use another output_dir, or delete {path} to start over")
    return saved
