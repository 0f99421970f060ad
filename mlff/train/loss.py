"""Weighted loss on energy per atom, forces and stress, normalised by *global* batch counts so that
gradients summed over data-parallel ranks equal those of one process on the whole batch.

:func:`weighted_loss` is the arithmetic, shared by the eager step (:func:`loss_fn`, which skips
terms without labels in the batch) and the compiled step (:mod:`mlff.train.compiled_step`, which
keeps every configured term and passes weights and normalisers as tensors, so that a batch
without a label adds exactly zero)."""

from __future__ import annotations

from typing import Dict, Sequence, Union

import torch

from ..data import keys

Number = Union[float, torch.Tensor]
TERMS = ("energy", "forces", "stress", "dipole")


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


def normalisers(counts: Dict[str, float]) -> Dict[str, float]:
    """Each term's normaliser from :func:`batch_counts`: structures (at least 1) for the energy, label
    components for the others (0 where the batch has no such label)."""
    return {"energy": max(counts["graphs"], 1.0), "forces": counts["force_components"],
            "stress": counts["stress_components"], "dipole": counts["dipole_components"]}


def weighted_loss(out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor], normalisers: Dict[str, Number],
                  weights: Dict[str, Number], terms: Sequence[str], kind: str = "mse",
                  delta: float = 0.01) -> torch.Tensor:
    """``sum_{t in terms} weights[t] * sum(frame weight * penalty_t) / normalisers[t]``; labels a
    frame lacks (NaN forces, ``has_stress``/``has_dipole`` 0) add exactly zero. The frame weights
    are ``batch[LOSS_WEIGHT_KEY]`` (1 where the batch has none); the normalisers stay unweighted
    counts."""
    total = out[keys.ENERGY_KEY].new_zeros(())
    frame_weight = batch.get(keys.LOSS_WEIGHT_KEY)
    for term in terms:
        if term == "energy":
            natoms = (batch[keys.PTR_KEY][1:] - batch[keys.PTR_KEY][:-1]).to(torch.float64)
            diff = (out[keys.ENERGY_KEY] - batch[keys.REF_ENERGY_KEY]) / natoms
        elif term == "forces":
            diff = out[keys.FORCES_KEY] - batch[keys.REF_FORCES_KEY]
            diff = torch.where(torch.isfinite(diff), diff, torch.zeros_like(diff))
        elif term == "stress":
            cell = batch[keys.CELL_KEY]  # volume as a triple product (compiles to a fused loop, unlike det)
            volume = (cell[:, 0] * torch.linalg.cross(cell[:, 1], cell[:, 2])).sum(-1).abs()
            has = batch[keys.HAS_STRESS_KEY]
            safe_volume = torch.where(has > 0, volume, torch.ones_like(volume))
            stress = -out[keys.VIRIAL_KEY] / safe_volume.view(-1, 1, 1)
            diff = (stress - batch[keys.REF_STRESS_KEY]) * has.view(-1, 1, 1)
        elif term == "dipole":
            diff = (out[keys.DIPOLE_KEY] - batch[keys.REF_DIPOLE_KEY]) * batch[keys.HAS_DIPOLE_KEY].view(-1, 1)
        else:
            raise ValueError(f"unknown loss term {term!r}; known: {list(TERMS)}")
        penalty = _penalty(diff, kind, delta)
        if frame_weight is not None:  # per frame; per atom (each atom's frame) for the forces
            factor = frame_weight[batch[keys.BATCH_KEY]] if term == "forces" else frame_weight
            penalty = penalty * factor.view((-1,) + (1,) * (penalty.dim() - 1))
        total = total + weights[term] * penalty.sum() / normalisers[term]
    return total


def loss_fn(out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor], counts: Dict[str, float],
            weights: Dict[str, float], kind: str = "mse", delta: float = 0.01) -> torch.Tensor:
    """``sum_terms weight * sum(penalty) / global count`` for energy/atom, forces, stress, dipole;
    terms with weight 0 or without labels in the batch are left out."""
    norms = normalisers(counts)
    terms = [t for t in TERMS if weights.get(t, 0.0) > 0 and norms[t] > 0]
    return weighted_loss(out, batch, norms, weights, terms, kind, delta)
