"""ASE calculator for a deployed mlff model file."""

from __future__ import annotations

import math
import os
import threading
import warnings
from typing import Sequence

import numpy as np
import torch
from ase.calculators.calculator import (Calculator, CalculatorError, PropertyNotImplementedError,
                                         all_changes)
from ase.stress import full_3x3_to_voigt_6_stress

from ..data import SpeciesMap, from_ase, keys
from ..data import neighbors_torch
from ..data.neighbors import check_structure
from ..data.validate import closest_pair, describe_pair, shortest_period
from ..modelfile import DeployedModel, load
from ..modelfile.memory import AUTO, AllocationFailures, check_chunk_atoms, is_out_of_memory, release_cached

_GRAPH_CHANGES = {"positions", "numbers", "cell", "pbc"}


def _check_finite(out) -> None:
    """A model pushed far outside its data (float32 overflow, extreme compression) may return inf
    or NaN: stop with the atoms concerned instead of handing them to an integrator."""
    energy, forces = out[keys.ENERGY_KEY], out[keys.FORCES_KEY]
    bad = np.flatnonzero(~np.isfinite(forces).all(axis=1))
    if np.isfinite(energy).all() and bad.size == 0 and np.isfinite(out[keys.VIRIAL_KEY]).all():
        return
    atoms = f"atoms {bad[:10].tolist()}{' ...' if bad.size > 10 else ''} have non-finite forces" if bad.size \
        else "the energy or virial is not finite"
    raise CalculatorError(f"mlff model output is not finite ({atoms}): the structure is far outside "
                          "what the model was fitted to (overlapping or exploding atoms?)")


def committee_spread(energies: Sequence[float], forces: Sequence[np.ndarray], mean_forces: np.ndarray) -> dict:
    """A committee's spread on one structure: ``energy_std`` (eV), ``forces_std`` (per atom, eV/Å:
    the root mean square over models of the deviation from the mean force vector) and
    ``max_forces_std``."""
    deviation = np.stack(forces) - mean_forces
    forces_std = np.sqrt((deviation**2).sum(axis=2).mean(axis=0))
    return {"energy_std": float(np.std(energies)), "forces_std": forces_std,
            "max_forces_std": float(forces_std.max()) if forces_std.size else 0.0}


def _finite(name: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


class MLFFCalculator(Calculator):
    """Energy, forces, stress and per-atom energies/stresses from an mlff model file.

    Parameters
    ----------
    model : path to a model file written by ``mlff.deploy`` (or an already loaded
        :class:`~mlff.modelfile.DeployedModel`), or a list of them: a committee (ensemble) of models
        with the same species and cutoff, e.g. trained with different seeds.
    device : ``"cpu"``, ``"cuda"``, ...

    charge : total charge (e) of the structures, used by a dipole head (its charges sum to it).
    min_distance : Å (default 0.6, below the shortest chemical bond, H2's 0.74 Å); atoms closer
        than this (or to their own periodic image) are an error, not an energy: no potential
        fitted to physical structures predicts such overlaps. 0 disables the check.
    neighbors : where the neighbour list is made: ``"host"`` (vesin, on the CPU), ``"device"`` (a
        cell list in torch on the model's device: bulk, slabs, molecules, any cell) or ``"auto"`` (the default:
        ``"device"`` on a GPU, ``"host"`` on the CPU, where vesin is faster). Same edges either way.
    chunk_atoms : ``"auto"`` (the default): whole layers, and where a structure does not fit in
        the device's memory that way, the layers in chunks of atoms (the largest chunk that fits,
        halving from half the atoms; a RuntimeWarning says so, and later calls start there).
        N: chunks of N atoms from the start; 0: whole layers only. In chunks the
        forward pass keeps no autograd graph and the forces recompute one chunk at a time: peak
        memory is bounded by one chunk's graph instead of growing with every layer's
        (docs/performance.md: 0.032 instead of 0.64 MB per atom for a 2 x 64 l_max 2 model in
        float32), the same results to rounding, 1.2-1.6x the time. Not with the compiled copy.
        Running out of memory with a fixed setting is a MemoryError that says what to change.

    Properties: ``energy``/``free_energy`` (eV), ``energies`` (eV/atom), ``forces`` (eV/Å) and, for
    cells periodic in all three directions, ``stress`` (Voigt, eV/Å^3, ASE sign) and ``stresses``
    (per atom, Voigt; they sum to ``stress``). Models with a dipole head add ``dipole`` (e Å,
    molecules only) and ``charges`` (e); models with extra ``outputs`` add each ``name`` (summed
    over atoms) and ``atomic_<name>``.

    A committee returns the mean of its models' predictions and their spread, the usual
    active-learning signal: ``energy_std`` (eV), ``forces_std`` (per atom, eV/Å: the root mean
    square over models of the deviation from the mean force vector) and ``max_forces_std``
    (eV/Å), also in ``calc.results``. One model's spread is zero.

    One calculator may be shared by threads: its calls take turns (a lock), each returning the
    results of its own structure. For calls that run side by side, give each thread its own
    calculator (they may share one loaded model: ``MLFFCalculator(mlff.load(path))``).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "stresses"]

    def __init__(self, model: str | os.PathLike | DeployedModel | Sequence, device: str = "cpu",
                 charge: float = 0.0, min_distance: float = 0.6, neighbors: str = "auto",
                 chunk_atoms: int | str = "auto", **kwargs):
        super().__init__(**kwargs)
        self.chunk_atoms = check_chunk_atoms(chunk_atoms)
        if neighbors not in ("auto", "host", "device"):
            raise ValueError(f"neighbors must be 'auto', 'host' or 'device', got {neighbors!r}")
        self._lock = threading.RLock()  # ASE keeps one structure and its results per calculator
        self.min_distance = _finite("min_distance", min_distance)
        if self.min_distance < 0:
            raise ValueError(f"min_distance is a distance in Å and must be >= 0 (0 disables the check), "
                             f"got {min_distance!r}")
        members = list(model) if isinstance(model, (list, tuple)) else [model]
        if not members:
            raise ValueError("MLFFCalculator: the list of model files is empty")
        self.models = [m if isinstance(m, DeployedModel) else load(m, device) for m in members]
        self.model = self.models[0]
        for other, member in zip(self.models[1:], members[1:]):
            if other.species != self.model.species or other.r_cut != self.model.r_cut:
                raise ValueError(f"committee member {member} has species {other.species} and r_cut {other.r_cut} Å, "
                                 f"the first has {self.model.species} and {self.model.r_cut} Å: a committee needs "
                                 f"models of the same species and cutoff")
        if self.chunk_atoms not in (0, AUTO):
            for member in self.models:
                member.check_chunked()
        self.species_map = SpeciesMap(self.model.species)
        self.device_neighbors = neighbors == "device" or (neighbors == "auto" and self.model.device.type != "cpu")
        self._failures = AllocationFailures(self.model.device)  # for the device list (out of memory?)
        self.charge = _finite("charge", charge)
        self._graph = None
        self._extra = [keys.CHARGES_KEY if name == keys.DIPOLE_KEY else keys.ATOMIC_PREFIX + name
                       for name in self.model.metadata.outputs] + list(self.model.metadata.outputs)
        self.implemented_properties = list(type(self).implemented_properties) + self._extra
        if len(self.models) > 1:
            self.implemented_properties += ["energy_std", "forces_std", "max_forces_std"]

    def _build_graph(self, atoms) -> dict:
        self._check_distance(0, 0, shortest_period(atoms.cell.array, atoms.pbc))  # before listing millions of images
        if self.device_neighbors and len(atoms):
            device = self.model.device
            self._failures.ready()
            try:
                return self._device_graph(atoms)
            except Exception as error:
                if not is_out_of_memory(error, self._failures):
                    raise
            # the cell list's candidate pairs outgrow the device before the model does: the host's
            # list (vesin), uploaded, from now on
            release_cached(device)
            self.device_neighbors = False
            warnings.warn(f"mlff: the neighbour list of {len(atoms)} atoms did not fit in {device} memory; making "
                          "neighbour lists on the host from now on (the same edges)", RuntimeWarning, stacklevel=2)
        data = from_ase(atoms, self.species_map, self.model.r_cut, edge_lengths=True)  # checks empty structures too
        graph = {name: data[name] for name in ("positions", "edge_index", "edge_shift", "species")}
        pair = closest_pair(graph["positions"].numpy(), graph["edge_index"].numpy(), graph["edge_shift"].numpy(),
                            lengths=data[keys.EDGE_LENGTH_KEY].numpy())
        if pair is not None:
            self._check_distance(*pair)
        return graph

    def _check_distance(self, i: int, j: int, distance: float) -> None:
        """Atoms ``i`` and ``j`` (``i == j``: an atom and its image) ``distance`` Å apart: an error
        below ``min_distance``."""
        if distance < self.min_distance:
            raise CalculatorError(
                f"{describe_pair(i, j, distance)}, closer than min_distance={self.min_distance} Å: overlapping "
                "atoms; fix the structure (or pass a smaller min_distance to MLFFCalculator)")

    def _device_graph(self, atoms) -> dict:
        """The graph with the neighbour list made on the model's device (neighbors_torch): the
        positions go up once; one read of the shortest edge for the min_distance check."""
        positions = np.asarray(atoms.positions, dtype=np.float64)
        check_structure(positions, atoms.cell.array, atoms.pbc, self.model.r_cut)  # the host list's errors
        device = self.model.device
        pos = torch.from_numpy(positions).to(device)
        edge_index, edge_shift, lengths = neighbors_torch.neighbor_list(
            pos, torch.from_numpy(np.asarray(atoms.cell.array, dtype=np.float64)), self.model.r_cut, atoms.pbc)
        graph = {"positions": pos, "edge_index": edge_index, "edge_shift": edge_shift,
                 "species": torch.from_numpy(self.species_map(atoms.numbers)).to(device)}
        if lengths.numel():
            k = int(torch.argmin(lengths))
            i, j = (int(v) for v in edge_index[:, k].tolist())
            self._check_distance(i, j, float(lengths[k]))
        return graph

    def get_property(self, name, atoms=None, allow_calculation=True):
        with self._lock:  # the check of the cached structure, the calculation and the read: one step
            return super().get_property(name, atoms, allow_calculation)

    def reset(self):
        with self._lock:
            super().reset()
            self._graph = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        with self._lock:
            try:
                self._calculate(atoms, properties, system_changes)
            except BaseException:
                # ASE has taken the structure as current already: forget it, its graph and any
                # results, so that asking again recomputes (and fails again) instead of returning
                # the previous structure's numbers
                self.reset()
                raise

    def _calculate(self, atoms, properties, system_changes):
        super().calculate(atoms, properties, system_changes)
        periodic = bool(np.all(self.atoms.pbc))
        if not periodic and ({"stress", "stresses"} & set(properties)):
            raise PropertyNotImplementedError(
                f"stress needs a cell periodic in all three directions; this structure has "
                f"pbc={self.atoms.pbc.tolist()}"
            )
        if self.atoms.pbc.any() and keys.DIPOLE_KEY in properties:
            raise PropertyNotImplementedError(
                "the dipole of a periodic structure depends on the choice of cell and is not defined; "
                "evaluate dipoles for molecules (pbc=False)"
            )
        if self._graph is None or _GRAPH_CHANGES & set(system_changes):
            self._graph = self._build_graph(self.atoms)
        outs = [{k: v.cpu().numpy() for k, v in
                 model(**self._graph, total_charge=self.charge, chunk_atoms=self.chunk_atoms).items()}
                for model in self.models]
        for out in outs:
            _check_finite(out)
        out = outs[0] if len(outs) == 1 else {key: np.mean([o[key] for o in outs], axis=0) for key in outs[0]}

        energy = float(out[keys.ENERGY_KEY])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out[keys.ATOMIC_ENERGY_KEY],
            "forces": out[keys.FORCES_KEY],
            **{name: out[name] for name in self._extra},
        }
        if len(outs) > 1:
            self.results.update(committee_spread([float(o[keys.ENERGY_KEY]) for o in outs],
                                                 [o[keys.FORCES_KEY] for o in outs], out[keys.FORCES_KEY]))
        if self.atoms.pbc.any():
            self.results.pop(keys.DIPOLE_KEY, None)  # not defined for periodic structures
        if periodic:
            volume = self.atoms.get_volume()
            self.results["stress"] = full_3x3_to_voigt_6_stress(-out[keys.VIRIAL_KEY] / volume)
            self.results["stresses"] = full_3x3_to_voigt_6_stress(-out[keys.ATOMIC_VIRIAL_KEY] / volume)
