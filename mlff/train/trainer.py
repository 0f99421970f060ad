"""The training loop: epochs of optimiser steps, each epoch validated with the EMA weights and
checkpointed, the best model deployed at the end. Killable at any moment; re-running resumes
exactly.

What the loop uses lives beside it: the data and statistics (:mod:`.prepare`), the run's state and
its checkpoint (:mod:`.state`), the learning-rate plan and final stage (:mod:`.schedule`), the
time budget and signals (:mod:`.budget`), the compile policy (:mod:`.compile_policy`) and the
metrics log (:mod:`.logger`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict

import numpy as np
import torch
from tqdm import tqdm

from ..data.atomic_data import collate
from ..data.dataset import Prefetcher, epoch_batches
from ..data.fingerprint import write_split
from ..modelfile import deploy
from ..files import write_json
from ..model import build_model
from ..runtime import tune_allocator
from .budget import SignalCatcher, TimeBudget, TrainingInterrupted, stop_message
from .checkpoint import checkpoint_weights, load_checkpoint, save_checkpoint
from .compile_policy import CompilePolicy
from ..model.potential import with_edge_layout
from .config import TrainConfig
from .distributed import Distributed
from .ema import EMA
from .finetune import load_pretrained
from .logger import MetricsLog, progress_bar
from .loss import batch_counts, loss_fn
from .metrics import evaluate, format_metrics, score_test
from .parts import MemoryParts
from .prepare import prepare_data, starting_model
from .run_lock import lock_output_dir
from .schedule import Schedule
from .state import RunState, TrainResult, restore_run, run_checkpoint, saved_run


class Trainer:
    def __init__(self, config: TrainConfig):
        tune_allocator()  # reuse freed per-edge buffers between steps (mlff.runtime)
        self.config = config
        self.dist = Distributed.from_env(config.device)
        self.device = self.dist.device(config.device)
        self.out = Path(config.output_dir)
        self.lock = lock_output_dir(self.out, self.dist)
        try:
            self._set_up(config)
        except BaseException:
            self.lock.release()
            raise

    # ---- set-up --------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        if self.dist.is_main:
            tqdm.write(message)

    def _set_up(self, c: TrainConfig) -> None:
        saved = saved_run(self.out, self.config.to_dict())  # before the (slow) data preparation
        self.schedule = Schedule(c)
        pretrained = load_pretrained(c.init_from) if c.init_from else None
        self.data = prepare_data(c, pretrained, saved["model_config"] if saved else None, self.log)
        if self.dist.is_main:
            write_json(self.out / "dataset_summary.json", self.data.summary)
            write_split(self.out, self.data.split_fingerprints)  # mlff evaluate: which scored frames were trained on
        self.model = starting_model(c, self.data, pretrained, self.log)
        self.model.to(self.device).train()
        self.eval_model = build_model(self.data.model_config, self.data.species).to(self.device).eval()
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = self.schedule.make_optimizer(self.trainable)
        self.scheduler = self.schedule.make_scheduler(self.optimizer)
        self.ema = EMA(self.model, c.ema_decay)
        self.state = RunState()
        if saved is not None:
            self.state = restore_run(saved, self.model, self.ema, self.optimizer, self.scheduler)
            self.state.finished = self.state.finished and self.state.epoch >= c.max_epochs
            self.log(f"resuming from {self.out / 'last.pt'} at epoch {self.state.epoch + 1}/{c.max_epochs}, step "
                     f"{self.state.step_in_epoch + 1} (the progress bar's numbering)")
        self.budget = TimeBudget(c.time_limit_seconds(), used_before=self.state.seconds_used)
        self.signals = None
        self.stop_reason = ""
        self.compile_policy = CompilePolicy(c, self.log)
        self.step_parts = MemoryParts("training on", self.device, self.log)
        self.validation_parts = MemoryParts("validating", self.device, self.log)

    @property
    def weights(self) -> Dict[str, float]:
        """The loss weights of the current stage."""
        return self.schedule.loss_weights(self.state.in_final_stage)

    def _save(self, name: str) -> None:
        if self.dist.is_main:
            self.state.seconds_used = self.budget.seconds_used()
            save_checkpoint(run_checkpoint(self.state, self.data.species, self.data.model_config.to_dict(),
                                           self.config.to_dict(), self.model, self.ema, self.optimizer,
                                           self.scheduler), self.out / name)

    # ---- one step, one epoch -----------------------------------------------------------------------
    def _batches(self):
        return epoch_batches(len(self.data.train), self.config.batch_size, self.config.seed, self.state.epoch,
                             sizes=self.data.train_sizes, batch_atoms=self.config.batch_atoms)

    def _train_step(self, batch_idx: np.ndarray, items=None) -> float:
        items = [self.data.train[i] for i in batch_idx] if items is None else items
        counts = batch_counts(items)
        mine = items[self.dist.rank::self.dist.world_size]
        loss_value = torch.zeros((), dtype=torch.float64)
        compiled = self.compile_policy.compiled

        def gradients(part) -> torch.Tensor:  # the part's loss; its gradients added to the model's
            batch = {k: v.to(self.device) for k, v in collate(part).items()}
            loss = compiled.step(with_edge_layout(batch), counts, self.weights) if compiled else None
            if loss is None:  # eager (or a batch outside the compiled domain: a single structure)
                self.compile_policy.eager_steps += compiled is not None
                loss = loss_fn(self.model(batch), batch, counts, self.weights, self.config.loss, self.config.huber_delta)
                loss.backward()
            return loss.detach().cpu().to(torch.float64)

        if mine:  # in parts where the batch does not fit in memory (mlff.train.parts)
            loss_value = sum(self.step_parts.run(mine, gradients, self._drop_gradients))
        self.dist.sum_gradients(self.model)
        if self.config.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.config.clip_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model)
        return float(self.dist.sum_(loss_value))

    def _drop_gradients(self) -> None:
        """After a part of a batch ran out of memory: the gradients of the parts before it go."""
        self.optimizer.zero_grad(set_to_none=True)

    def _train_epoch(self) -> float:
        s = self.state
        batches = self._batches()
        bar = progress_bar(len(batches), s.step_in_epoch, f"epoch {s.epoch + 1}/{self.config.max_epochs}",
                           self.config.progress and self.dist.is_main)
        # preload: false: the next batches' graphs are built while this one trains
        prefetch = None if self.config.preload else Prefetcher(self.data.train, batches, self.dist.rank,
                                                                 self.dist.world_size, self.config.loader_workers())
        try:
            return self._train_batches(batches, bar, prefetch)
        finally:
            if prefetch is not None:
                prefetch.close()

    def _train_batches(self, batches, bar, prefetch) -> float:
        s = self.state
        while s.step_in_epoch < len(batches):
            if not self.compile_policy.decided:
                steps_left = (self.config.max_epochs - s.epoch) * len(batches) - s.step_in_epoch
                self.compile_policy.maybe_compile(
                    s.step_seconds, lambda: self.budget.training_left(s.step_seconds, steps_left),
                    lambda: self.compile_policy.compile(self.model, self.data.train, self.device, [
                        self.schedule.weights, self.schedule.final_weights], str(self.out / "compiled"), s.epoch))
            self.stop_reason = self._stop_reason()
            if self.stop_reason:
                break
            start = time.perf_counter()
            items = prefetch.take(s.step_in_epoch) if prefetch is not None else None
            s.epoch_losses.append(self._train_step(batches[s.step_in_epoch], items))
            s.step_seconds = (s.step_seconds + [time.perf_counter() - start])[-10:]
            s.step_in_epoch += 1
            s.global_step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{s.epoch_losses[-1]:.4g}", refresh=False)
            if self.config.checkpoint_every and s.global_step % self.config.checkpoint_every == 0:
                self._save("last.pt")
        bar.close()
        if self.stop_reason:
            return float("nan")
        losses, s.epoch_losses = s.epoch_losses, []
        return float(np.mean(losses)) if losses else float("nan")

    def _maybe_enter_final_stage(self) -> None:
        """At the start of an epoch: the final loss weights and learning rate once the last
        ``final_stage`` fraction of the run has begun; the best model is chosen anew within it."""
        s = self.state
        epoch_seconds = s.epoch_seconds(len(self._batches()))
        if s.in_final_stage or not self.schedule.final_stage_begins(
                s.epoch, self.budget.fraction_used(), self.budget.seconds_left(), epoch_seconds):
            return
        s.in_final_stage = True
        self.schedule.enter_final_stage(self.optimizer, self.scheduler)
        s.best_loss, s.stale_epochs = float("inf"), 0
        self.log(f"final stage from epoch {s.epoch + 1}: loss weights {self.weights}, learning rate "
                 f"{self.optimizer.param_groups[0]['lr']:.3g}")

    # ---- stopping early: signals and the time budget -------------------------------------------------
    def _stop_reason(self) -> str:
        """"signal", "time_limit" or "" before a step; the same answer on every rank."""
        code = 0.0
        if self.signals is not None and self.signals.received is not None:
            code = 2.0
        elif not self.budget.step_fits(self.state.step_seconds, self.state.validation_seconds,
                                       -(-len(self.data.valid) // self.config.batch_size)):
            code = 1.0
        code = float(self.dist.sum_(torch.tensor(code, dtype=torch.float64)))
        return "signal" if code >= 2.0 else ("time_limit" if code > 0 else "")

    def _stop_early(self) -> None:
        """Checkpoint after a signal (and exit) or at the time limit (then the best model is deployed)."""
        s = self.state
        self._save("last.pt")
        where = f"epoch {s.epoch + 1}, step {s.step_in_epoch}"
        if s.best_epoch == 0 or (self.stop_reason == "time_limit" and s.step_in_epoch > 0):
            # the steps of the unfinished epoch count: its weights are deployed if they validate
            # better than the best so far (the budget kept the time for this validation)
            loss, metrics = self.validate()
            if s.best_epoch == 0 or loss < s.best_loss:
                s.best_loss, s.best_metrics, s.best_epoch = loss, metrics, s.epoch + 1
                self.log(f"the weights at {where} validate best (loss {loss:.4g}): they are the model")
                self._save("best.pt")
        if self.stop_reason == "signal":
            self._write_outputs("signal")  # a model.pt of the best weights, as every stop leaves
        message = stop_message(self.stop_reason, where, self.out, self.budget, getattr(self.signals, "received", None))
        self.log(message)
        if self.stop_reason == "signal":
            raise TrainingInterrupted(self.signals.received, message)

    def validate(self) -> tuple[float, Dict[str, float]]:
        """Validation loss and metrics of the EMA weights (summed over ranks)."""
        self.ema.copy_to(self.eval_model)
        c = self.config
        return evaluate(self.eval_model, self.data.valid, c.batch_size, self.weights, c.loss, c.huber_delta,
                        self.dist, self.device, c.loader_workers(), self.validation_parts)

    # ---- the run -----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        logger = MetricsLog(self.out, self.state.epoch, self.config.tensorboard) if self.dist.is_main else None
        self.budget.start()
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

    def _epochs(self, logger) -> None:
        c, s = self.config, self.state
        while not s.finished and s.epoch < c.max_epochs:
            start = time.perf_counter()
            if s.step_in_epoch == 0:
                self._maybe_enter_final_stage()
            if c.scheduler == "cosine":
                progress = self.schedule.progress(s.epoch, self.budget.fraction_used())
                for group in self.optimizer.param_groups:
                    group["lr"] = self.schedule.cosine_learning_rate(progress, s.in_final_stage)
            train_loss = self._train_epoch()
            if self.stop_reason:
                self._stop_early()
                return
            validation_start = time.perf_counter()
            val_loss, metrics = self.validate()
            s.validation_seconds = time.perf_counter() - validation_start
            if self.scheduler is not None:
                self.scheduler.step(val_loss)
            improved = s.end_epoch(val_loss, metrics, c.max_epochs, c.early_stopping_patience)
            lr = self.optimizer.param_groups[0]["lr"]
            if logger:
                logger.write({"epoch": s.epoch, "lr": lr, "train_loss": train_loss, "val_loss": val_loss,
                              **metrics, "seconds": time.perf_counter() - start})
            self.log(f"epoch {s.epoch}/{c.max_epochs} loss {train_loss:.4g} val {val_loss:.4g} lr {lr:.2g} | "
                     f"{format_metrics(metrics)}{' *' if improved else ''}")
            if improved:
                self._save("best.pt")
            self._save("last.pt")
            if s.finished and s.epoch < c.max_epochs:
                self.log(f"early stopping: no improvement for {c.early_stopping_patience} epochs")

    def _finish(self) -> TrainResult:
        s = self.state
        stopped_by = self.stop_reason or ("early_stopping" if s.epoch < self.config.max_epochs else "max_epochs")
        model_path = self._write_outputs(stopped_by)
        return TrainResult(self.out, model_path, s.best_epoch, s.best_metrics, s.epoch, self.stop_reason)

    def _write_outputs(self, stopped_by: str) -> Path:
        """Deploy the best weights as model.pt and write training_summary.json (strict JSON)."""
        s = self.state
        model_path = self.out / "model.pt"
        self.dist.barrier()
        if self.dist.is_main:
            # the evaluation model (the run's architecture, built as the checkpoints' weights were)
            # takes the best weights: no third model build
            best = self.eval_model.cpu()
            best.load_state_dict(checkpoint_weights(load_checkpoint(self.out / "best.pt")))
            deploy(best, model_path)
            self._save("last.pt")  # the time spent validating and deploying counts towards time_limit
            summary = {**s.summary(), "model": str(model_path), "seconds_used": self.budget.seconds_used(),
                       "stopped_by": stopped_by,
                       **score_test(best.to(self.device), self.data, self.config, self.out / "test.extxyz", self.log)}
            compiled = self.compile_policy.summary()
            if compiled is not None:
                summary["compiled_step"] = compiled
            write_json(self.out / "training_summary.json", summary)
            self.log(f"best epoch {s.best_epoch}: {format_metrics(s.best_metrics)}; deployed {model_path}")
        self.dist.barrier()
        return model_path


def train(config: TrainConfig) -> TrainResult:
    """Train (or resume) a potential as described by ``config``; returns where the model went."""
    trainer = Trainer(config)
    try:
        return trainer.run()
    finally:
        trainer.dist.close()
