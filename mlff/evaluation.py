"""Errors of a deployed model file on labelled frames, and parity plots."""

from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .data import keys
from .data.readers import Frame
from .data.stats import species_counts
from .train.metrics import UNITS, Metrics


def predict_frames(model_path, frames: Sequence[Frame], device: str = "cpu",
                   batch_atoms: Optional[int] = None) -> List[dict]:
    """Model predictions (energy, forces, stress as 3x3 or None) for each frame. ``model_path``
    may be a list of model files (a committee: mean predictions, plus ``energy_std`` and
    ``forces_std`` per frame). Frames go up to ``batch_atoms`` atoms per model call (default: the
    device's, :mod:`mlff.calculators.batched`; one per call for models with a dipole head or extra
    outputs)."""
    from .calculators import MLFFCalculator
    from .calculators.batched import batchable, predict_batched

    calc = MLFFCalculator(model_path, device=device)
    # a progress bar on a terminal only (quiet in logs and pipes); thousands of frames take minutes
    bar = tqdm(total=len(frames), desc="evaluating", unit="frame", leave=False, mininterval=0.5,
               disable=len(frames) < 100 or not sys.stderr.isatty())
    predictions = []
    if batchable(calc):
        for result in predict_batched(calc, [frame.atoms for frame in frames], batch_atoms,
                                      [frame.source for frame in frames]):
            predictions.append({"energy": result["energy"], "forces": result["forces"], "stress": result["stress"],
                                "dipole": None})
            if "forces_std" in result:
                predictions[-1].update(energy_std=result["energy_std"], forces_std=result["forces_std"])
            bar.update(1)
        bar.close()
        return predictions
    for frame in frames:
        atoms = frame.atoms.copy()
        atoms.calc = calc
        stress = atoms.get_stress(voigt=False) if atoms.pbc.all() else None
        has_dipole = keys.DIPOLE_KEY in calc.implemented_properties and not atoms.pbc.any()
        predictions.append({"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(), "stress": stress,
                            "dipole": atoms.get_dipole_moment() if has_dipole else None})
        if "forces_std" in calc.results:
            predictions[-1].update(energy_std=calc.results["energy_std"], forces_std=calc.results["forces_std"])
        bar.update(1)
    bar.close()
    return predictions


def committee_summary(frames: Sequence[Frame], predictions: Sequence[dict], top: int = 10) -> Dict[str, object]:
    """How a committee's spread relates to its error, frame by frame: mean and max of the
    per-frame largest force spread (meV/Å), the rank correlation between that spread and the
    frame's largest force error (the better, the more useful the spread is for picking frames),
    and the ``top`` frames by spread."""
    spread = np.array([1e3 * float(np.max(p["forces_std"])) for p in predictions])
    error = np.array([1e3 * float(np.max(np.linalg.norm(p["forces"] - f.forces, axis=1))) if f.forces is not None
                      else np.nan for f, p in zip(frames, predictions)])
    summary: Dict[str, object] = {
        "max_forces_std_mean": float(spread.mean()),
        "max_forces_std_max": float(spread.max()),
        "energy_std_mean": float(np.mean([1e3 * p["energy_std"] / len(f.atoms) for f, p in zip(frames, predictions)])),
    }
    known = np.isfinite(error)
    if known.sum() > 2:
        ranks = [np.argsort(np.argsort(values[known])) for values in (spread, error)]
        summary["spread_error_rank_correlation"] = float(np.corrcoef(*ranks)[0, 1])
    order = np.argsort(-spread)[:top]
    summary["largest_spread_frames"] = [{"frame": int(k), "max_forces_std": float(spread[k]),
                                         "max_force_error": float(error[k])} for k in order]
    return summary


def error_metrics(frames: Sequence[Frame], predictions: Sequence[dict]) -> Dict[str, float]:
    """MAE/RMSE of energy per atom (meV/atom), forces (meV/Å), stress (meV/Å^3) and dipole (me Å),
    with the same definitions as the training metrics."""
    metrics = Metrics()
    for frame, pred in zip(frames, predictions):
        n = len(frame.atoms)
        has_stress = frame.stress is not None and pred["stress"] is not None
        volume = frame.atoms.get_volume() if frame.atoms.pbc.all() else 1.0
        out = {
            keys.ENERGY_KEY: torch.tensor([pred["energy"]], dtype=torch.float64),
            keys.FORCES_KEY: torch.as_tensor(pred["forces"]),
            keys.VIRIAL_KEY: torch.as_tensor(-(pred["stress"] if has_stress else np.zeros((3, 3))) * volume)[None],
        }
        has_dipole = frame.dipole is not None and pred.get("dipole") is not None
        if has_dipole:
            out[keys.DIPOLE_KEY] = torch.as_tensor(pred["dipole"])[None]
        batch = {
            keys.PTR_KEY: torch.tensor([0, n]),
            keys.REF_ENERGY_KEY: torch.tensor([np.nan if frame.energy is None else frame.energy], dtype=torch.float64),
            keys.REF_FORCES_KEY: torch.as_tensor(frame.forces if frame.forces is not None else np.full((n, 3), np.nan)),
            keys.REF_STRESS_KEY: torch.as_tensor(frame.stress if has_stress else np.zeros((3, 3)))[None],
            keys.HAS_STRESS_KEY: torch.tensor([1.0 if has_stress else 0.0]),
            keys.CELL_KEY: torch.as_tensor(frame.atoms.cell.array)[None],
            keys.REF_DIPOLE_KEY: torch.as_tensor(frame.dipole if has_dipole else np.zeros(3))[None],
            keys.HAS_DIPOLE_KEY: torch.tensor([1.0 if has_dipole else 0.0]),
        }
        metrics.update(out, batch)
    return metrics.compute()


def relative_energies(frames: Sequence[Frame]) -> np.ndarray:
    """Each labelled frame's energy per atom above the least-squares composition baseline
    (``E ~ sum_s n_s mu_s`` over the frames), eV/atom; NaN for frames without an energy. For data
    of one composition this orders frames as their energy per atom does; across compositions it
    compares frames by how far each sits above what its composition costs on average."""
    counts = species_counts(frames, sorted({s for f in frames for s in f.atoms.get_chemical_symbols()}))
    energies = np.array([np.nan if f.energy is None else f.energy for f in frames], dtype=float)
    known = np.isfinite(energies)
    out = np.full(len(frames), np.nan)
    if known.any():
        mu = np.linalg.lstsq(counts[known], energies[known], rcond=None)[0]
        out[known] = (energies[known] - counts[known] @ mu) / counts[known].sum(axis=1)
    return out


def _subset_metrics(frames: Sequence[Frame], predictions: Sequence[dict], indices) -> Dict[str, float]:
    """Error metrics of the frames at ``indices``, with the energy's mean signed error
    (``energy_mean_error``, meV/atom: prediction minus reference; a bias that MAE does not show)."""
    chosen = [int(k) for k in indices]
    metrics = error_metrics([frames[k] for k in chosen], [predictions[k] for k in chosen])
    signed = [(predictions[k]["energy"] - frames[k].energy) / len(frames[k].atoms) for k in chosen
              if frames[k].energy is not None]
    if signed:
        metrics["energy_mean_error"] = 1e3 * float(np.mean(signed))
    metrics["frames"] = len(chosen)
    return metrics


def error_breakdown(frames: Sequence[Frame], predictions: Sequence[dict], tail: float = 0.1) -> Dict[str, object]:
    """Where the errors are, beyond the means: the lowest-energy ``tail`` fraction of the labelled
    frames (by :func:`relative_energies`; the configurations MD spends its time in, and the ground
    states), and each structure family (``config_type`` in the frames' info), with the energy's
    mean signed error next to MAE and RMSE."""
    if not 0.0 < tail <= 1.0:
        raise ValueError(f"tail must be a fraction in (0, 1], got {tail}")
    relative = relative_energies(frames)
    labelled = np.flatnonzero(np.isfinite(relative))
    out: Dict[str, object] = {"all": _subset_metrics(frames, predictions, range(len(frames)))}
    if len(labelled):
        count = max(1, int(np.ceil(tail * len(labelled))))
        lowest = labelled[np.argsort(relative[labelled], kind="stable")[:count]]
        out["tail"] = {"fraction": tail, **_subset_metrics(frames, predictions, lowest)}
    families: Dict[str, List[int]] = {}
    for k, frame in enumerate(frames):
        name = frame.atoms.info.get("config_type")
        if name is not None:
            families.setdefault(str(name), []).append(k)
    if families:
        out["families"] = {name: _subset_metrics(frames, predictions, indices)
                           for name, indices in sorted(families.items())}
    return out


def breakdown_table(breakdown: Dict[str, object]) -> str:
    """The low-energy tail and the families as lines under the metrics table."""
    def row(label, m):
        energy = (f"energy MAE {m['energy_mae']:8.2f}  mean error {m['energy_mean_error']:+8.2f} meV/atom"
                  if "energy_mae" in m else "")
        forces = f"  forces MAE {m['forces_mae']:8.2f} meV/Å" if "forces_mae" in m else ""
        return f"{label:<28}{m['frames']:>6}  {energy}{forces}"

    lines = [f"{'':<28}{'frames':>6}"]
    lines.append(row("all", breakdown["all"]))
    if "tail" in breakdown:
        lines.append(row(f"lowest-energy {100 * breakdown['tail']['fraction']:.0f} %", breakdown["tail"]))
    for name, metrics in breakdown.get("families", {}).items():
        lines.append(row(f"config_type {name}", metrics))
    return "\n".join(lines)


def metrics_table(metrics: Dict[str, float], frames: int) -> str:
    lines = [f"{'quantity':<10}{'MAE':>12}{'RMSE':>12}  unit   ({frames} frames)"]
    for name, unit in UNITS.items():
        if f"{name}_mae" in metrics:
            lines.append(f"{name:<10}{metrics[name + '_mae']:>12.3f}{metrics[name + '_rmse']:>12.3f}  {unit}")
    return "\n".join(lines)


def _mathtext(unit: str) -> str:
    """``eV/Å^3`` -> ``eV/Å$^3$``: exponents rendered as superscripts in figures."""
    import re

    return re.sub(r"\^(-?\d+)", r"$^{\1}$", unit)


def parity_plots(frames: Sequence[Frame], predictions: Sequence[dict], out_dir: str | os.PathLike,
                 data_name: str = "", model_name: str = "") -> List[str]:
    """PNG parity plots (reference vs model) for energy per atom, force components and stress;
    each titled with the data set, the model file and the number of frames, then the errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    series = {
        "energy": ([f.energy / len(f.atoms) for f in frames if f.energy is not None],
                   [p["energy"] / len(f.atoms) for f, p in zip(frames, predictions) if f.energy is not None],
                   "energy per atom (eV/atom)"),
        "forces": (np.concatenate([f.forces.ravel() for f in frames if f.forces is not None] or [[]]),
                   np.concatenate([p["forces"].ravel() for f, p in zip(frames, predictions) if f.forces is not None] or [[]]),
                   "force components (eV/Å)"),
        "stress": (np.concatenate([f.stress.ravel() for f, p in zip(frames, predictions)
                                   if f.stress is not None and p["stress"] is not None] or [[]]),
                   np.concatenate([p["stress"].ravel() for f, p in zip(frames, predictions)
                                   if f.stress is not None and p["stress"] is not None] or [[]]),
                   "stress components (eV/Å$^3$)"),
        "dipole": (np.concatenate([f.dipole for f, p in zip(frames, predictions)
                                   if f.dipole is not None and p.get("dipole") is not None] or [[]]),
                   np.concatenate([p["dipole"] for f, p in zip(frames, predictions)
                                   if f.dipole is not None and p.get("dipole") is not None] or [[]]),
                   "dipole components (e Å)"),
    }
    source = " · ".join(x for x in (os.path.basename(str(data_name)), str(model_name)) if x)
    written = []
    for name, (ref, pred, label) in series.items():
        ref, pred = np.asarray(ref, dtype=float), np.asarray(pred, dtype=float)
        if ref.size == 0:
            continue
        fig, ax = plt.subplots(figsize=(5.0, 5.2))
        lo, hi = min(ref.min(), pred.min()), max(ref.max(), pred.max())
        ax.plot([lo, hi], [lo, hi], color="gray", lw=1)
        ax.scatter(ref, pred, s=6, alpha=0.6)
        # the axes are in eV-based units, the errors in milli-units as in the metrics table
        mae = 1e3 * float(np.mean(np.abs(pred - ref)))
        rmse = 1e3 * float(np.sqrt(np.mean((pred - ref) ** 2)))
        unit = _mathtext(UNITS[name])
        ax.set(xlabel=f"reference {label}", ylabel=f"mlff {label}")
        count = f"{len(frames)} frame{'s' if len(frames) != 1 else ''}"
        header = f"{source}, {count}" if source else count
        ax.set_title(f"{header}\n{name}: MAE {mae:.3g} {unit}, RMSE {rmse:.3g} {unit}", fontsize=9)
        fig.tight_layout()
        path = os.path.join(out_dir, f"parity_{name}.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
