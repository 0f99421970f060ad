"""Error metrics accumulated over batches (sums, so they can be added across ranks)."""

from __future__ import annotations

import functools
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..data import keys
from ..data.atomic_data import collate
from ..data.dataset import LazyAtomicData, Prefetcher
from ..data.readers import write_frames
from .distributed import Distributed
from .loss import batch_counts, loss_fn
from .parts import MemoryParts

_SUMS = ("e_abs", "e_sq", "e_n", "f_abs", "f_sq", "f_n", "s_abs", "s_sq", "s_n", "d_abs", "d_sq", "d_n")


class Metrics:
    """Energy per atom (meV/atom), force components (meV/Å), stress components (meV/Å^3) and,
    for models with a dipole head, dipole components (me Å)."""

    def __init__(self):
        self.sums = torch.zeros(len(_SUMS), dtype=torch.float64)

    def update(self, out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]) -> None:
        self.sums += self.batch_sums(out, batch)

    @staticmethod
    def batch_sums(out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The sums of one batch (what :meth:`update` adds)."""
        natoms = (batch[keys.PTR_KEY][1:] - batch[keys.PTR_KEY][:-1]).to(torch.float64)
        e = ((out[keys.ENERGY_KEY].to(torch.float64) - batch[keys.REF_ENERGY_KEY]) / natoms).detach().cpu()
        f = (out[keys.FORCES_KEY].to(torch.float64) - batch[keys.REF_FORCES_KEY]).detach().cpu()
        f = f[torch.isfinite(f)]
        has = batch[keys.HAS_STRESS_KEY].cpu() > 0
        s = torch.zeros(0, dtype=torch.float64)
        if has.any():
            volume = torch.linalg.det(batch[keys.CELL_KEY][has].to(torch.float64)).abs().view(-1, 1, 1)
            stress = -out[keys.VIRIAL_KEY].detach().to(torch.float64)[has] / volume
            s = (stress - batch[keys.REF_STRESS_KEY][has]).cpu().ravel()
        d = torch.zeros(0, dtype=torch.float64)
        if keys.DIPOLE_KEY in out and keys.HAS_DIPOLE_KEY in batch:
            has_dipole = batch[keys.HAS_DIPOLE_KEY].cpu() > 0
            d = (out[keys.DIPOLE_KEY].detach().cpu().to(torch.float64)[has_dipole]
                 - batch[keys.REF_DIPOLE_KEY].cpu()[has_dipole]).ravel()
        return torch.tensor([e.abs().sum(), e.square().sum(), e.numel(),
                             f.abs().sum(), f.square().sum(), f.numel(),
                             s.abs().sum(), s.square().sum(), s.numel(),
                             d.abs().sum(), d.square().sum(), d.numel()], dtype=torch.float64)

    def compute(self) -> Dict[str, float]:
        v = dict(zip(_SUMS, self.sums.tolist()))
        out = {}
        for prefix, name in (("e", "energy"), ("f", "forces"), ("s", "stress"), ("d", "dipole")):
            if v[f"{prefix}_n"] > 0:
                out[f"{name}_mae"] = 1000.0 * v[f"{prefix}_abs"] / v[f"{prefix}_n"]
                out[f"{name}_rmse"] = 1000.0 * (v[f"{prefix}_sq"] / v[f"{prefix}_n"]) ** 0.5
        return out


UNITS = {"energy": "meV/atom", "forces": "meV/Å", "stress": "meV/Å^3", "dipole": "me Å"}


def format_metrics(metrics: Dict[str, float]) -> str:
    parts = []
    for name, unit in UNITS.items():
        if f"{name}_mae" in metrics:
            parts.append(f"{name} MAE {metrics[f'{name}_mae']:.3f} RMSE {metrics[f'{name}_rmse']:.3f} {unit}")
    return ", ".join(parts)


def evaluate(model, data: List[dict], batch_size: int, weights: Dict[str, float], kind: str, delta: float,
             dist, device, workers: int = 0, parts: Optional[MemoryParts] = None) -> Tuple[float, Dict[str, float]]:
    """Loss and metrics of ``model`` on ``data`` (AtomicData dicts), each rank taking every
    ``world_size``-th structure; summed over ranks. Frames read when drawn (a
    :class:`~mlff.data.dataset.LazyAtomicData`) are built ahead by ``workers`` processes (0: a
    thread), and their label counts come without their graphs. Batches that do not fit in memory
    run in parts (``parts``, kept by the caller across calls; a new one by default)."""
    parts = parts if parts is not None else MemoryParts("evaluating", device, print)
    metrics = Metrics()
    lazy = isinstance(data, LazyAtomicData)
    counts = data.label_counts() if lazy else batch_counts(data)
    loss = torch.zeros((), dtype=torch.float64)
    mine = np.arange(dist.rank, len(data), dist.world_size)
    batches = [mine[start:start + batch_size] for start in range(0, len(mine), batch_size)]
    prefetch = Prefetcher(data, batches, workers=workers) if lazy else None
    sums = functools.partial(_sums, model, counts=counts, weights=weights, kind=kind, delta=delta, device=device)
    try:
        for k, indices in enumerate(batches):
            items = prefetch.take(k) if prefetch is not None else [data[i] for i in indices]
            for part_loss, part_sums in parts.run(items, sums, lambda: None):  # nothing to undo
                loss += part_loss
                metrics.sums += part_sums
    finally:
        if prefetch is not None:
            prefetch.close()
    dist.sum_(metrics.sums)
    return float(dist.sum_(loss)), metrics.compute()


def _sums(model, items, counts, weights, kind, delta, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """The loss and metric sums of one batch."""
    batch = {key: value.to(device) for key, value in collate(items).items()}
    out = model(batch)
    return loss_fn(out, batch, counts, weights, kind, delta).detach().cpu(), Metrics.batch_sums(out, batch)


def score_test(model, data, config, path, log) -> Dict[str, object]:
    """The held-out test frames of ``data`` (:class:`~mlff.train.prepare.PreparedData`) scored once
    by ``model`` (the deployed weights) and written to ``path``; what training_summary.json says."""
    if not data.test:
        return {}
    weights = {"energy": 1.0, "forces": 1.0, "stress": 1.0, "dipole": 0.0}  # the loss is not reported
    device = next(model.parameters()).device
    _, metrics = evaluate(model, data.test, config.batch_size, weights, config.loss, config.huber_delta,
                          Distributed(), device, config.loader_workers(), MemoryParts("scoring", device, log))
    write_frames(path, data.test_frames)
    log(f"test ({len(data.test)} held-out frames, written to {path}): {format_metrics(metrics)}")
    return {"test_metrics": metrics, "test_frames": len(data.test)}
