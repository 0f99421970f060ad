"""The training loop: data -> statistics -> model -> epochs (train, validate with EMA weights,
checkpoint) -> deploy the best model. Killable at any moment; re-running resumes exactly."""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from tqdm import tqdm

from ..data.atomic_data import collate
from ..data.dataset import epoch_batches, split_indices, to_atomic_data
from ..data.readers import Frame, LabelKeys, describe, read_frames, summary_line
from ..data.stats import average_num_neighbors, energy_shifts, force_rms
from ..data.validate import DataValidationError, validate_frames
from ..deploy import deploy
from ..deploy.compiled import CompileError
from ..files import remove_stale_temporaries, write_json
from ..model import ModelConfig, build_model
from ..runtime import tune_allocator
from .budget import SignalCatcher, TrainingInterrupted, format_duration
from .checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from .compiled_step import CompiledStep, with_layout
from .config import AUTO_COMPILE_SECONDS, TrainConfig
from .distributed import Distributed
from .ema import EMA
from .finetune import freeze, load_pretrained, new_species_shifts, with_species
from .loss import batch_counts, loss_fn
from .metrics import Metrics, format_metrics
from .run_lock import RunLock, RunLockedError

# options that may change between a run and its resumption
RESUMABLE_CHANGES = {"max_epochs", "progress", "tensorboard", "early_stopping_patience", "checkpoint_every", "device",
                     "time_limit", "compile"}
CSV_FIELDS = ["epoch", "lr", "train_loss", "val_loss", "energy_mae", "energy_rmse", "forces_mae",
              "forces_rmse", "stress_mae", "stress_rmse", "dipole_mae", "dipole_rmse", "seconds"]


@dataclass
class TrainResult:
    output_dir: Path
    model_path: Path
    best_epoch: int
    best_metrics: Dict[str, float]
    epochs: int
    stopped_by: str = ""  # "time_limit" when the budget ended the run early


def load_datasets(config: TrainConfig) -> tuple[List[Frame], List[Frame]]:
    label_keys = LabelKeys(config.energy_key, config.forces_key, config.stress_key, config.dipole_key)
    train = read_frames(config.train_file, label_keys, config.reader)
    if config.valid_file:
        return train, read_frames(config.valid_file, label_keys, config.reader)
    elements = [set(frame.atoms.get_chemical_symbols()) for frame in train]
    train_idx, valid_idx = split_indices(len(train), config.valid_fraction, config.seed, elements)
    return [train[i] for i in train_idx], [train[i] for i in valid_idx]


def training_species(train: List[Frame], valid: List[Frame], listed: Optional[List[str]],
                     pretrained: List[str]) -> List[str]:
    """The model's species: ``listed`` (the `species` option) or the training frames' elements,
    sorted. Every species must occur in a training frame (or be known to the ``pretrained`` model):
    an element seen only in validation data would get untrained weights and a zero energy shift,
    and the deployed model would accept it. Errors name the frame and the element."""
    seen = {s for f in train for s in f.atoms.get_chemical_symbols()}
    species = list(listed) if listed else sorted(seen)
    untrained = [s for s in species if s not in seen and s not in pretrained]
    if untrained:
        raise DataValidationError(f"species {untrained} occur in no training frame, so their weights would stay "
                                  "untrained: add training frames with them or remove them from `species`")
    for frame in valid:
        only = sorted(set(frame.atoms.get_chemical_symbols()) - seen - set(pretrained))
        if only:
            raise DataValidationError(f"{frame.source}: element(s) {only} occur only in the validation data; a model "
                                      "cannot learn an element there: add training frames with them or drop the frame")
    return species


def _to(batch: Dict[str, torch.Tensor], device: torch.device) -> Dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


class Trainer:
    def __init__(self, config: TrainConfig):
        tune_allocator()  # reuse freed per-edge buffers between steps (mlff.runtime)
        self.config = config
        self.dist = Distributed.from_env(config.device)
        self.device = self._device()
        self.out = Path(config.output_dir)
        self.lock = self._lock_output_dir()
        try:
            self._set_up(config)
        except BaseException:
            self.lock.release()
            raise

    def _lock_output_dir(self) -> RunLock:
        """One run per output folder (rank 0 holds the lock; every rank learns the outcome). With
        the lock held, temporaries of killed writers are removed."""
        lock = RunLock(self.out)
        failed = None
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            try:
                lock.acquire()
                remove_stale_temporaries(self.out)
            except RunLockedError as error:
                failed = error
        if self.dist.sum_(torch.tensor(0.0 if failed is None else 1.0, dtype=torch.float64)) > 0:
            raise failed or RunLockedError(f"{self.out} is being trained by another run; choose another output_dir")
        return lock

    def _set_up(self, config: TrainConfig) -> None:
        self.weights = {"energy": config.energy_weight, "forces": config.forces_weight,
                        "stress": config.stress_weight, "dipole": config.dipole_weight}
        self._check_resumable()  # before the (slow) data preparation
        self._prepare_data()
        self._build()
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best_loss, self.best_epoch, self.best_metrics, self.stale_epochs = float("inf"), 0, {}, 0
        self.finished = False
        self.epoch_losses: List[float] = []  # losses of the current epoch's steps so far
        # wall-time budget: seconds used by earlier runs of this output folder, and this run's start
        self.time_limit = config.time_limit_seconds()
        self.used_before, self.run_start = 0.0, time.perf_counter()
        self.step_seconds: List[float] = []  # the last steps' durations
        self.validation_seconds: Optional[float] = None
        self.signals: Optional[SignalCatcher] = None
        self.stop_reason = ""
        self.in_final_stage = False
        self.compiled: Optional[CompiledStep] = None  # compile: true (or auto, when it pays), see _maybe_compile
        self.compiled_at_epoch: Optional[int] = None
        self.compile_decided = config.compile is False
        self.eager_steps = 0  # steps that a compiled run ran eagerly (batches outside its domain)
        self._resume()

    # ---- set-up --------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        if self.dist.is_main:
            tqdm.write(message)

    def _device(self) -> torch.device:
        wanted = self.config.device
        if wanted == "auto":
            wanted = "cuda" if torch.cuda.is_available() else "cpu"
        if wanted == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError("device: cuda requested but torch sees no GPU; use device: cpu or auto")
            return torch.device("cuda", self.dist.local_rank)
        return torch.device("cpu")

    def _prepare_data(self) -> None:
        c = self.config
        train, valid = load_datasets(c)
        self.pretrained = load_pretrained(c.init_from) if c.init_from else None
        self.species = training_species(train, valid, c.species, self.pretrained.species if self.pretrained else [])
        if self.pretrained is not None:  # its species keep their order; new ones come after
            old = list(self.pretrained.species)
            self.species = old + [s for s in self.species if s not in old]
        need_forces = c.forces_weight > 0
        validate_frames(train, self.species, need_forces=need_forces, min_distance=c.min_distance)
        validate_frames(valid, self.species, need_forces=need_forces, min_distance=c.min_distance)
        if c.dipole_weight > 0 and not any(f.dipole is not None for f in train):
            raise ValueError(f"dipole_weight > 0 but no training frame has a dipole label "
                             f"(looked for {c.dipole_key!r}); set dipole_key or dipole_weight: 0")
        summary = {"train": describe(train), "valid": describe(valid), "species": self.species}
        self.log(f"data: {summary['train']['frames']} training / {summary['valid']['frames']} validation frames, "
                 + summary_line(summary["train"]))

        if self.pretrained is not None:
            model_config = ModelConfig.from_dict({**self.pretrained.config.to_dict(), **c.finetune_overrides()})
            known = dict(zip(self.pretrained.species, self.pretrained.scale_shift.shift.tolist()))
            self.shifts = np.array(new_species_shifts(train, self.species, known if c.init_shifts == "keep" else {},
                                                      c.E0))
            self.scale = float(self.pretrained.scale_shift.scale)
            new = [s for s in self.species if s not in self.pretrained.species]
            self.log(f"fine-tuning {c.init_from} (species {self.pretrained.species}"
                     f"{f', adding {new}' if new else ''}; energy shifts {c.init_shifts})")
        else:
            model_config = c.model_config()
            if "avg_num_neighbors" not in (c.model or {}):
                model_config = c.model_config(avg_num_neighbors=average_num_neighbors(train, model_config.r_cut))
            self.shifts = energy_shifts(train, self.species, c.E0)
            self.scale = force_rms(train)
        if self.saved_run is not None:  # resuming: the run's architecture, even if a default changed since
            saved = ModelConfig.from_saved(self.saved_run["model_config"])
            changed = sorted(k for k, v in saved.to_dict().items() if getattr(model_config, k) != v)
            if changed:
                run = ", ".join(f"{k}={getattr(saved, k)!r}" for k in changed)
                default = ", ".join(f"{k}={getattr(model_config, k)!r}" for k in changed)
                self.log(f"resuming with the model the run started with: {run} (this mlff's default: {default})")
                model_config = saved
        self.model_config = model_config
        summary["statistics"] = {"energy_shifts_eV": dict(zip(self.species, self.shifts.tolist())),
                                 "force_rms_eV_per_A": self.scale,
                                 "avg_num_neighbors": model_config.avg_num_neighbors}
        if self.dist.is_main:
            write_json(self.out / "dataset_summary.json", summary)
        self.train_data = to_atomic_data(train, self.species, model_config.r_cut)
        self.valid_data = to_atomic_data(valid, self.species, model_config.r_cut)
        self.train_sizes = [len(f.atoms) for f in train]

    def _build(self) -> None:
        c = self.config
        if self.pretrained is not None:
            self.model = with_species(self.pretrained, self.species, self.model_config, seed=c.seed)
        else:
            self.model = build_model(self.model_config, self.species, seed=c.seed)
        self.model.scale_shift.set(self.scale, self.shifts)
        if c.freeze:
            frozen = freeze(self.model, c.freeze)
            self.log(f"frozen: {len(frozen)} parameter tensors under {c.freeze}")
        self.model.to(self.device).train()
        self.eval_model = build_model(self.model_config, self.species).to(self.device).eval()
        optimizer = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
        self.trainable = trainable = [p for p in self.model.parameters() if p.requires_grad]
        # foreach: one call per update for all tensors (the per-tensor loop is the default on the CPU)
        self.optimizer = optimizer(trainable, lr=c.learning_rate, weight_decay=c.weight_decay, foreach=True)
        if c.scheduler == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=c.plateau_factor, patience=c.plateau_patience, min_lr=c.min_learning_rate)
        else:  # "cosine" is set each epoch by _cosine_learning_rate, from the progress made
            self.scheduler = None
        self.ema = EMA(self.model, c.ema_decay)

    # ---- checkpoints -----------------------------------------------------------------------------
    def _state(self) -> dict:
        return {
            "species": self.species,
            "model_config": self.model_config.to_dict(),
            "train_config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
            "stale_epochs": self.stale_epochs,
            "finished": self.finished,
            "epoch_losses": list(self.epoch_losses),
            "seconds_used": self.seconds_used(),
            "time_estimates": {"step": list(self.step_seconds), "validation": self.validation_seconds},
            "in_final_stage": self.in_final_stage,
            "torch_rng": torch.get_rng_state(),
        }

    def _save(self, name: str) -> None:
        if self.dist.is_main:
            save_checkpoint(self._state(), self.out / name)

    def _check_resumable(self) -> None:
        """Read ``last.pt`` once (kept as ``self.saved_run`` until :meth:`_resume`) and refuse options
        that differ from the run's."""
        path = self.out / "last.pt"
        self.saved_run = load_checkpoint(path) if path.exists() else None
        if self.saved_run is None:
            return
        old, new = self.saved_run["train_config"], self.config.to_dict()
        changed = sorted(k for k in new if k not in RESUMABLE_CHANGES and old.get(k) != new[k])
        if changed:
            values = ", ".join(f"{k}: {old.get(k)!r} in the run, {new[k]!r} now" for k in changed)
            raise ValueError(f"{self.out} holds a run with different options {changed} ({values}); to resume "
                             f"it, set them to the run's values (a default may have changed in a newer mlff), "
                             f"or use another output_dir, or delete {path} to start over")

    def _resume(self) -> None:
        path = self.out / "last.pt"
        state, self.saved_run = self.saved_run, None  # read by _check_resumable
        if state is None:
            return
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        for name in ("epoch", "step_in_epoch", "global_step", "best_loss", "best_epoch", "best_metrics",
                     "stale_epochs", "finished", "epoch_losses"):
            setattr(self, name, state[name])
        torch.set_rng_state(state["torch_rng"])
        self.used_before = float(state.get("seconds_used", 0.0))
        estimates = state.get("time_estimates") or {}
        self.step_seconds = [float(x) for x in estimates.get("step", [])]
        self.validation_seconds = estimates.get("validation")
        self.in_final_stage = bool(state.get("in_final_stage", False))
        if self.in_final_stage:
            self.weights = self._final_weights()
        self.finished = self.finished and self.epoch >= self.config.max_epochs
        self.log(f"resuming from {path}: epoch {self.epoch}, step {self.step_in_epoch} of that epoch")

    # ---- one step, one epoch -----------------------------------------------------------------------
    def _train_step(self, batch_idx: np.ndarray) -> float:
        items = [self.train_data[i] for i in batch_idx]
        counts = batch_counts(items)
        mine = items[self.dist.rank::self.dist.world_size]
        loss_value = torch.zeros((), dtype=torch.float64)
        if mine:
            batch = _to(collate(mine), self.device)
            loss = self.compiled.step(with_layout(batch), counts, self.weights) if self.compiled else None
            if loss is None:  # eager (or a batch outside the compiled domain: a single structure)
                self.eager_steps += self.compiled is not None
                loss = loss_fn(self.model(batch), batch, counts, self.weights, self.config.loss, self.config.huber_delta)
                loss.backward()
            loss_value = loss.detach().cpu().to(torch.float64)
        self.dist.sum_gradients(self.model)
        if self.config.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.config.clip_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model)
        return float(self.dist.sum_(loss_value))

    def _train_epoch(self) -> float:
        batches = epoch_batches(len(self.train_data), self.config.batch_size, self.config.seed, self.epoch,
                                sizes=self.train_sizes, batch_atoms=self.config.batch_atoms)
        # a progress bar only on a terminal: in a log file (a cluster job) the per-epoch line is it
        interactive = sys.stderr.isatty()
        bar = tqdm(total=len(batches), initial=self.step_in_epoch, desc=f"epoch {self.epoch + 1}/{self.config.max_epochs}",
                   disable=not (self.config.progress and self.dist.is_main and interactive), leave=False,
                   dynamic_ncols=True, mininterval=0.2)
        losses = self.epoch_losses
        while self.step_in_epoch < len(batches):
            self._maybe_compile()
            self.stop_reason = self._stop_reason(len(batches))
            if self.stop_reason:
                break
            start = time.perf_counter()
            losses.append(self._train_step(batches[self.step_in_epoch]))
            self.step_seconds = (self.step_seconds + [time.perf_counter() - start])[-10:]
            self.step_in_epoch += 1
            self.global_step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
            if self.config.checkpoint_every and self.global_step % self.config.checkpoint_every == 0:
                self._save("last.pt")
        bar.close()
        if self.stop_reason:
            return float("nan")
        self.epoch_losses = []
        return float(np.mean(losses)) if losses else float("nan")

    # ---- the final stage of the loss -------------------------------------------------------------------
    def _final_weights(self) -> Dict[str, float]:
        return {**self.weights, **self.config.final_weights()}

    def _maybe_enter_final_stage(self) -> None:
        """At the start of an epoch: switch to the final weights and learning rate once the last
        ``final_stage`` fraction of max_epochs (or of time_limit) has begun. The validation loss
        changes meaning with the weights, so the best model is chosen anew within the stage."""
        c = self.config
        if c.final_stage <= 0.0 or self.in_final_stage:
            return
        by_epochs = self.epoch >= int(np.ceil((1.0 - c.final_stage) * c.max_epochs))
        by_time = self.time_limit is not None and self.seconds_used() >= (1.0 - c.final_stage) * self.time_limit
        if not (by_epochs or by_time):
            return
        self.in_final_stage = True
        self.weights = self._final_weights()
        for group in self.optimizer.param_groups:
            group["lr"] = c.final_start_learning_rate()
        self.best_loss, self.stale_epochs = float("inf"), 0
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.best, self.scheduler.num_bad_epochs = self.scheduler.mode_worse, 0
        self.log(f"final stage from epoch {self.epoch + 1}: loss weights {self.weights}, learning rate "
                 f"{self.optimizer.param_groups[0]['lr']:.3g}")

    def progress(self) -> float:
        """Fraction of training done: of max_epochs or of time_limit, whichever runs out first."""
        done = self.epoch / self.config.max_epochs
        if self.time_limit is not None:
            done = max(done, self.seconds_used() / self.time_limit)
        return min(done, 1.0)

    def _cosine_learning_rate(self) -> float:
        """Half a cosine from learning_rate to min_learning_rate over the main stage, and again from
        the final stage's starting rate over the final stage: the length of
        training is known in advance (epochs or a time budget), so the rate can use all of it."""
        c = self.config
        start, low = c.learning_rate, c.min_learning_rate
        main = 1.0 - c.final_stage
        fraction = self.progress() / main if main > 0 else 1.0
        if self.in_final_stage:
            start = c.final_start_learning_rate()
            fraction = (self.progress() - main) / c.final_stage
        fraction = min(max(fraction, 0.0), 1.0)
        return low + 0.5 * (start - low) * (1.0 + float(np.cos(np.pi * fraction)))

    # ---- stopping early: signals and the time budget -------------------------------------------------
    def seconds_used(self) -> float:
        """Training and validation time of this output folder, over all runs."""
        return self.used_before + (time.perf_counter() - self.run_start)

    def _stop_reason(self, steps_per_epoch: int) -> str:
        """"signal", "time_limit" or "" before a step; the same answer on every rank."""
        code = 0.0
        if self.signals is not None and self.signals.received is not None:
            code = 2.0
        elif self.time_limit is not None:
            step = max(self.step_seconds) if self.step_seconds else 0.0
            valid_batches = -(-len(self.valid_data) // self.config.batch_size)
            finish = self.validation_seconds if self.validation_seconds is not None else step * valid_batches
            finish += 3.0  # checkpoint, and scripting + writing the model file
            margin = min(5.0, 0.02 * self.time_limit)
            if self.seconds_used() + step + finish + margin > self.time_limit:
                code = 1.0
        code = float(self.dist.sum_(torch.tensor(code, dtype=torch.float64)))
        return "signal" if code >= 2.0 else ("time_limit" if code > 0 else "")

    def _stop_early(self) -> None:
        """Checkpoint after a signal (and exit) or at the time limit (then the best model is deployed)."""
        self._save("last.pt")
        where = f"epoch {self.epoch + 1}, step {self.step_in_epoch}"
        if self.best_epoch == 0:  # no epoch finished: the current weights are the best there are
            self.best_loss, self.best_metrics = self.validate()
            self._save("best.pt")
        if self.stop_reason == "signal":
            signum = self.signals.received
            self._write_outputs("signal")  # a model.pt of the best weights, as every stop leaves
            message = (f"stopped by signal {signum} at {where}; checkpoint {self.out / 'last.pt'} and the best "
                       f"model so far {self.out / 'model.pt'} written. Resume with the same command "
                       f"(mlff train <config>, same output_dir)")
            self.log(message)
            raise TrainingInterrupted(signum, message)
        self.log(f"time_limit {format_duration(self.time_limit)} reached at {where} "
                 f"({format_duration(self.seconds_used())} used); to continue, raise time_limit and run the "
                 f"same command again")

    def validate(self) -> tuple[float, Dict[str, float]]:
        """Validation loss and metrics of the EMA weights (summed over ranks)."""
        self.ema.copy_to(self.eval_model)
        metrics = Metrics()
        counts = batch_counts(self.valid_data)
        loss = torch.zeros((), dtype=torch.float64)
        mine = list(range(self.dist.rank, len(self.valid_data), self.dist.world_size))
        for start in range(0, len(mine), self.config.batch_size):
            batch = _to(collate([self.valid_data[i] for i in mine[start:start + self.config.batch_size]]), self.device)
            out = self.eval_model(batch)
            loss += loss_fn(out, batch, counts, self.weights, self.config.loss, self.config.huber_delta).detach().cpu()
            metrics.update(out, batch)
        self.dist.sum_(metrics.sums)
        return float(self.dist.sum_(loss)), metrics.compute()

    # ---- the run -----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        c = self.config
        logger = _Logger(self.out, self.epoch, c.tensorboard) if self.dist.is_main else None
        self.run_start = time.perf_counter()
        try:
            with SignalCatcher(self.log) as self.signals:
                try:
                    self._epochs(logger)
                finally:
                    if logger:
                        logger.close()
            return self._finish()
        finally:
            self.lock.release()  # the run is over, however it ended

    def _compile(self) -> None:
        """The compiled step, traced on the first structures of the training set."""
        c = self.config
        items = self.train_data[:max(2, c.batch_size)]
        self.compiled = CompiledStep.build(
            self.model, _to(collate(items), self.device), batch_counts(items), [self.weights, self._final_weights()],
            c.loss, c.huber_delta, str(self.out / "compiled"), log=self.log)
        self.compiled_at_epoch = self.epoch

    def _training_seconds_left(self) -> float:
        """Expected training time left: the remaining epochs at the measured step time, or what is
        left of ``time_limit`` if that is less."""
        steps = len(epoch_batches(len(self.train_data), self.config.batch_size, self.config.seed, self.epoch,
                                  sizes=self.train_sizes, batch_atoms=self.config.batch_atoms))
        step = float(np.mean(self.step_seconds))
        left = ((self.config.max_epochs - self.epoch) * steps - self.step_in_epoch) * step
        if self.time_limit is not None:
            left = min(left, self.time_limit - self.seconds_used())
        return left

    def _maybe_compile(self) -> None:
        """``compile: true`` compiles before the first step (errors stop the run); ``auto`` decides
        once, when 5 steps have been timed: it compiles if more than AUTO_COMPILE_SECONDS of training
        are left (a compilation takes 1.5-7 minutes, see config.py) and trains eagerly if the step
        cannot be compiled (the reason is logged)."""
        if self.compile_decided:
            return
        if self.config.compile is True:
            self.compile_decided = True
            self._compile()
            return
        if len(self.step_seconds) < 5:
            return
        self.compile_decided = True
        left = self._training_seconds_left()
        if left < AUTO_COMPILE_SECONDS:
            return
        self.log(f"compile: auto: about {format_duration(left)} of training left, compiling the training step "
                 "(compile: false turns this off)")
        try:
            self._compile()
        except CompileError as error:
            self.log(f"compile: auto: training eagerly: {error}")

    def _epochs(self, logger) -> None:
        c = self.config
        while not self.finished and self.epoch < c.max_epochs:
            start = time.perf_counter()
            if self.step_in_epoch == 0:
                self._maybe_enter_final_stage()
            if c.scheduler == "cosine":
                for group in self.optimizer.param_groups:
                    group["lr"] = self._cosine_learning_rate()
            train_loss = self._train_epoch()
            if self.stop_reason:
                self._stop_early()
                return
            validation_start = time.perf_counter()
            val_loss, metrics = self.validate()
            self.validation_seconds = time.perf_counter() - validation_start
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(val_loss)
            elif self.scheduler is not None:
                self.scheduler.step()
            self.epoch += 1
            self.step_in_epoch = 0
            improved = val_loss < self.best_loss
            if improved:
                self.best_loss, self.best_epoch, self.best_metrics, self.stale_epochs = val_loss, self.epoch, metrics, 0
            else:
                self.stale_epochs += 1
            patience = c.early_stopping_patience
            self.finished = self.epoch >= c.max_epochs or (patience > 0 and self.stale_epochs >= patience)
            lr = self.optimizer.param_groups[0]["lr"]
            row = {"epoch": self.epoch, "lr": lr, "train_loss": train_loss, "val_loss": val_loss,
                   **metrics, "seconds": time.perf_counter() - start}
            if logger:
                logger.write(row)
            self.log(f"epoch {self.epoch}/{c.max_epochs} loss {train_loss:.4g} val {val_loss:.4g} lr {lr:.2g} | "
                     f"{format_metrics(metrics)}{' *' if improved else ''}")
            if improved:
                self._save("best.pt")
            self._save("last.pt")
            if self.finished and self.epoch < c.max_epochs:
                self.log(f"early stopping: no improvement for {patience} epochs")

    def _finish(self) -> TrainResult:
        stopped_by = self.stop_reason or ("early_stopping" if self.epoch < self.config.max_epochs else "max_epochs")
        model_path = self._write_outputs(stopped_by)
        return TrainResult(self.out, model_path, self.best_epoch, self.best_metrics, self.epoch, self.stop_reason)

    def _write_outputs(self, stopped_by: str) -> Path:
        """Deploy the best weights as model.pt and write training_summary.json (strict JSON)."""
        model_path = self.out / "model.pt"
        self.dist.barrier()
        if self.dist.is_main:
            best = load_checkpoint(self.out / "best.pt")
            deploy(model_from_checkpoint(best), model_path)
            self._save("last.pt")  # the time spent validating and deploying counts towards time_limit
            summary = {"best_epoch": self.best_epoch, "best_val_loss": self.best_loss,
                       "best_metrics": self.best_metrics, "epochs": self.epoch, "model": str(model_path),
                       "seconds_used": self.seconds_used(),
                       "time_estimates": {"step": list(self.step_seconds), "validation": self.validation_seconds},
                       "in_final_stage": self.in_final_stage, "stopped_by": stopped_by}
            if self.compiled is not None:  # steps outside the compiled domain ran eagerly
                summary["compiled_step"] = {"from_epoch": self.compiled_at_epoch, "eager_steps": self.eager_steps}
            write_json(self.out / "training_summary.json", summary)
            self.log(f"best epoch {self.best_epoch}: {format_metrics(self.best_metrics)}; deployed {model_path}")
        self.dist.barrier()
        return model_path


class _Logger:
    """metrics.csv (rows beyond the resumed epoch are dropped) and TensorBoard when available."""

    def __init__(self, out: Path, resumed_epoch: int, tensorboard: str):
        self.path = out / "metrics.csv"
        rows = []
        if self.path.exists():
            with open(self.path) as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["epoch"]) <= resumed_epoch]
        with open(self.path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        self.writer = None
        if tensorboard != "off":
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                if tensorboard == "on":
                    raise RuntimeError("tensorboard: on, but the tensorboard package is not installed; "
                                       "pip install tensorboard or set tensorboard: auto") from None

    def write(self, row: Dict[str, float]) -> None:
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, CSV_FIELDS).writerow({k: row.get(k, "") for k in CSV_FIELDS})
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, row["epoch"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def train(config: TrainConfig) -> TrainResult:
    """Train (or resume) a potential as described by ``config``; returns where the model went."""
    trainer = Trainer(config)
    try:
        return trainer.run()
    finally:
        trainer.dist.close()
