"""Weighted loss on energy per atom, forces and stress, normalised by *global* batch counts so that
gradients summed over data-parallel ranks equal those of one process on the whole batch."""

from __future__ import annotations

from typing import Dict, Sequence

import torch

from ..data import keys


def _penalty(diff: torch.Tensor, kind: str, delta: float) -> torch.Tensor:
    if kind == "huber":
        return torch.nn.functional.huber_loss(diff, torch.zeros_like(diff), reduction="none", delta=delta)
    return diff.square()


def batch_counts(items: Sequence[Dict[str, torch.Tensor]]) -> Dict[str, float]:
    """Normalisers of a whole (global) batch, from its structures: graphs, force components,
    stress components. Every rank computes the same numbers without communicating."""
    return {
        "graphs": float(len(items)),
        "force_components": float(sum(int(torch.isfinite(d[keys.REF_FORCES_KEY]).sum()) for d in items)),
        "stress_components": 9.0 * float(sum(float(d[keys.HAS_STRESS_KEY].sum()) for d in items)),
        "dipole_components": 3.0 * float(sum(float(d[keys.HAS_DIPOLE_KEY].sum()) for d in items)),
    }


def loss_fn(out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor], counts: Dict[str, float],
            weights: Dict[str, float], kind: str = "mse", delta: float = 0.01) -> torch.Tensor:
    """``sum_terms weight * sum(penalty) / global count`` for energy/atom, forces, stress, dipole."""
    natoms = (batch[keys.PTR_KEY][1:] - batch[keys.PTR_KEY][:-1]).to(torch.float64)
    total = out[keys.ENERGY_KEY].new_zeros(())
    if weights["energy"] > 0:
        diff = (out[keys.ENERGY_KEY] - batch[keys.REF_ENERGY_KEY]) / natoms
        total = total + weights["energy"] * _penalty(diff, kind, delta).sum() / max(counts["graphs"], 1.0)
    if weights["forces"] > 0 and counts["force_components"] > 0:
        diff = out[keys.FORCES_KEY] - batch[keys.REF_FORCES_KEY]
        diff = torch.where(torch.isfinite(diff), diff, torch.zeros_like(diff))
        total = total + weights["forces"] * _penalty(diff, kind, delta).sum() / counts["force_components"]
    if weights["stress"] > 0 and counts["stress_components"] > 0:
        volume = torch.linalg.det(batch[keys.CELL_KEY]).abs()
        has = batch[keys.HAS_STRESS_KEY]
        safe_volume = torch.where(has > 0, volume, torch.ones_like(volume))
        stress = -out[keys.VIRIAL_KEY] / safe_volume.view(-1, 1, 1)
        diff = (stress - batch[keys.REF_STRESS_KEY]) * has.view(-1, 1, 1)
        total = total + weights["stress"] * _penalty(diff, kind, delta).sum() / counts["stress_components"]
    if weights.get("dipole", 0.0) > 0 and counts["dipole_components"] > 0:
        diff = (out[keys.DIPOLE_KEY] - batch[keys.REF_DIPOLE_KEY]) * batch[keys.HAS_DIPOLE_KEY].view(-1, 1)
        total = total + weights["dipole"] * _penalty(diff, kind, delta).sum() / counts["dipole_components"]
    return total
