"""``deploy``: write a trained potential as one self-describing TorchScript file.

The scripted ``forward`` is the single contract shared by the ASE calculator, the LAMMPS plugin
and Python (see ``docs/model-file.md``)::

    forward(positions: (n, 3) float64, edge_index: (2, E) int64, edge_shift: (E, 3) float64,
            species: (n,) int64, n_local: int, total_charge: float = 0.0) -> Dict[str, Tensor]

returning float64 ``energy`` (), ``atomic_energy`` (n,), ``forces`` (n, 3), ``virial`` (3, 3) and
``atomic_virial`` (n, 3, 3), plus the optional heads (``dipole`` (3,), ``charges`` (n,), and each
``outputs`` name with its per-atom ``atomic_<name>``). Metadata is stored as plain-text
``_extra_files`` entries.
"""


import contextlib
import copy
import json
import os
import tempfile
import warnings
from typing import Dict, List

import e3nn
import torch
from e3nn.util.jit import compile_mode, script
from torch import nn

from .. import __version__
from ..data import keys
from ..model import Potential

FORMAT_VERSION = 1
UNITS = {"energy_unit": "eV", "length_unit": "Angstrom"}


@contextlib.contextmanager
def torchscript_quiet():
    """TorchScript is the format libtorch engines load; torch >= 2.10 warns it is deprecated."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
        yield


@compile_mode("script")
class DeployedPotential(nn.Module):
    """The scripted engine contract around a :class:`~mlff.model.Potential` (one structure)."""

    graph_outputs: List[str]  # extra per-structure outputs (dipole, config.outputs)
    atom_outputs: List[str]  # their per-atom values (charges, atomic_<name>)

    def __init__(self, potential: Potential):
        super().__init__()
        self.potential = potential
        self.num_species = len(potential.species)
        self.graph_outputs: List[str] = list(potential.graph_outputs)
        self.atom_outputs: List[str] = list(potential.atom_outputs)

    def forward(
        self,
        positions: torch.Tensor,
        edge_index: torch.Tensor,
        edge_shift: torch.Tensor,
        species: torch.Tensor,
        n_local: int,
        total_charge: float = 0.0,
    ) -> Dict[str, torch.Tensor]:
        n = positions.shape[0]
        if positions.dim() != 2 or positions.shape[1] != 3:
            raise ValueError("mlff: positions must have shape (n, 3)")
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError("mlff: edge_index must have shape (2, E)")
        if edge_shift.shape[0] != edge_index.shape[1] or edge_shift.shape[1] != 3:
            raise ValueError("mlff: edge_shift must have shape (E, 3), one row per edge")
        if species.shape[0] != n:
            raise ValueError("mlff: species must have one entry per atom")
        if n_local < 0 or n_local > n:
            raise ValueError("mlff: n_local must lie in [0, number of atoms]")
        if n > 0 and (int(species.min()) < 0 or int(species.max()) >= self.num_species):
            raise ValueError("mlff: species index out of range for this model")
        data = {
            keys.POSITIONS_KEY: positions.to(torch.float64),
            keys.SPECIES_KEY: species.to(torch.int64),
            keys.EDGE_INDEX_KEY: edge_index.to(torch.int64),
            keys.EDGE_SHIFT_KEY: edge_shift.to(torch.float64),
            keys.BATCH_KEY: torch.zeros(n, dtype=torch.int64, device=positions.device),
            keys.PTR_KEY: torch.tensor([0, n], dtype=torch.int64, device=positions.device),
            keys.NUM_LOCAL_KEY: torch.tensor(n_local, dtype=torch.int64, device=positions.device),
            keys.TOTAL_CHARGE_KEY: torch.tensor([total_charge], dtype=torch.float64, device=positions.device),
        }
        out = self.potential(data)
        result = {
            keys.ENERGY_KEY: out[keys.ENERGY_KEY][0].detach(),
            keys.ATOMIC_ENERGY_KEY: out[keys.ATOMIC_ENERGY_KEY].detach(),
            keys.FORCES_KEY: out[keys.FORCES_KEY].detach(),
            keys.VIRIAL_KEY: out[keys.VIRIAL_KEY][0].detach(),
            keys.ATOMIC_VIRIAL_KEY: out[keys.ATOMIC_VIRIAL_KEY].detach(),
        }
        for name in self.graph_outputs:
            result[name] = out[name][0].detach()
        for name in self.atom_outputs:
            result[name] = out[name].detach()
        return result


def metadata_for(potential: Potential) -> Dict[str, str]:
    """The ``_extra_files`` entries written beside the scripted model (all plain text)."""
    config = potential.config
    return {
        "format_version": str(FORMAT_VERSION),
        "mlff_version": __version__,
        "torch_version": torch.__version__,
        "e3nn_version": e3nn.__version__,
        "species": " ".join(potential.species),
        "r_cut": repr(float(config.r_cut)),
        "num_layers": str(int(config.num_layers)),
        "interaction_range": repr(float(config.r_cut) * int(config.num_layers)),
        "dtype": config.dtype,
        # extra per-structure outputs beside energy/forces/virial (engines may ignore them)
        "outputs": " ".join(potential.graph_outputs),
        **UNITS,
        "config.json": json.dumps(config.to_dict(), sort_keys=True),
    }


def script_potential(potential: Potential) -> torch.jit.ScriptModule:
    """A frozen-weights copy of ``potential`` in eval mode, wrapped and scripted."""
    if not isinstance(potential, Potential):
        raise TypeError(f"deploy expects an mlff Potential (from mlff.build_model), got {type(potential).__name__}")
    frozen = copy.deepcopy(potential).eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    with torchscript_quiet():
        return script(DeployedPotential(frozen))


def deploy(potential: Potential, path: str | os.PathLike) -> str:
    """Write ``potential`` to ``path`` as one TorchScript file with its metadata.

    The file is written to a temporary name and renamed, so an interrupted export never leaves a
    truncated model behind.
    """
    path = os.fspath(path)
    scripted = script_potential(potential)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".pt.tmp")
    os.close(fd)
    try:
        with torchscript_quiet():
            torch.jit.save(scripted, tmp, _extra_files=metadata_for(potential))
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a model file is meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
