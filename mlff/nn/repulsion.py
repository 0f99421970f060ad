"""A fixed short-range pair repulsion under the learned energy: the Ziegler-Biersack-Littmark
(ZBL) universal screened nuclear repulsion, switched off smoothly between two atoms' covalent
radii.

Training data rarely hold two atoms closer than their bonds; where none lie, a learned potential
is whatever its functions extrapolate to, often flat or attractive, and atoms that meet there in
hot MD fuse. The ZBL term is the physics of that range (screened Coulomb repulsion of the nuclei)
with no parameters to fit; the learned part fits what the data say on top of it.

Per pair ``i, j`` of atomic numbers ``Z_i, Z_j`` at distance ``r``:

    E(r) = k_e Z_i Z_j / r * phi(r / a) * u(r / r_max),   a = 0.46850 / (Z_i^0.23 + Z_j^0.23)

with ``phi`` ZBL's four-exponential screening function (Ziegler, Biersack and Littmark, *The
Stopping and Range of Ions in Solids*, 1985), ``r_max`` the sum of the two covalent radii
(Cordero et al. 2008, as in :data:`ase.data.covalent_radii`) and ``u`` the polynomial envelope of
:class:`~mlff.nn.radial.PolynomialCutoff` (``p`` = 6): 1 at ``r = 0``, 0 with six continuous
derivatives at ``r_max``. MACE's ``ZBL`` pair term has the same form.
"""

from typing import List

import torch
from ase.data import covalent_radii
from e3nn.util.jit import compile_mode
from torch import nn

COULOMB_EV_ANGSTROM = 14.399645  # e^2 / (4 pi eps0) in eV Å
ZBL_SCREENING = ((0.18175, 3.19980), (0.50986, 0.94229), (0.28022, 0.40290), (0.02817, 0.20162))
ZBL_LENGTH = 0.46850  # Å (0.8854 Bohr)


@compile_mode("script")
class ZBLRepulsion(nn.Module):
    """Per-edge ZBL energies for the species' atomic numbers; ``forward(length, center, neighbour)``
    takes edge lengths ``(E,)`` (Å) and the species indices of each edge's two atoms and returns
    the pair energy of each edge ``(E,)`` (eV, the whole pair's: an atom's share is half of each
    of its edges). The tables are constants derived from the species (not saved in a state dict)."""

    def __init__(self, atomic_numbers: List[int], p: int = 6):
        super().__init__()
        z = torch.tensor([float(n) for n in atomic_numbers], dtype=torch.float64)
        radii = torch.tensor([float(covalent_radii[n]) for n in atomic_numbers], dtype=torch.float64)
        zp = z.pow(0.23)
        self.register_buffer("charge_product", COULOMB_EV_ANGSTROM * z[:, None] * z[None, :], persistent=False)
        self.register_buffer("screening_length", ZBL_LENGTH / (zp[:, None] + zp[None, :]), persistent=False)
        self.register_buffer("r_max", radii[:, None] + radii[None, :], persistent=False)
        screening = torch.tensor(ZBL_SCREENING, dtype=torch.float64)
        self.register_buffer("screening_coefficients", screening[:, 0].clone(), persistent=False)
        self.register_buffer("screening_exponents", screening[:, 1].clone(), persistent=False)
        self.p = float(p)

    def forward(self, length: torch.Tensor, center: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        num_species = self.r_max.shape[0]
        pair = center * num_species + neighbour
        r_max = self.r_max.flatten().index_select(0, pair).to(length.dtype)
        x = length / r_max
        inside = x < 1.0
        # outside r_max the energy is 0; clamp there so that no branch sees a huge exponent or 1/0
        r = torch.where(inside, length, r_max)
        scaled = r / self.screening_length.flatten().index_select(0, pair).to(length.dtype)
        exponents = self.screening_exponents.to(length.dtype)
        phi = (self.screening_coefficients.to(length.dtype) * torch.exp(-exponents * scaled.unsqueeze(-1))).sum(-1)
        p = self.p
        xs = torch.where(inside, x, torch.zeros_like(x))
        envelope = (1.0 - (p + 1.0) * (p + 2.0) / 2.0 * torch.pow(xs, p) + p * (p + 2.0) * torch.pow(xs, p + 1.0)
                    - p * (p + 1.0) / 2.0 * torch.pow(xs, p + 2.0))
        energy = self.charge_product.flatten().index_select(0, pair).to(length.dtype) / r * phi * envelope
        return torch.where(inside, energy, torch.zeros_like(energy))
