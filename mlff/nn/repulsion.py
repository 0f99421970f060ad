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
(Cordero et al. 2008, as in :data:`ase.data.covalent_radii`) or a shorter radius given for the
pair (training takes it from the data, :func:`mlff.data.stats.repulsion_radii`) and ``u`` the polynomial envelope of
:class:`~mlff.nn.radial.PolynomialCutoff` with ``p`` = 6: 1 at ``r = 0``, 0 with six continuous
derivatives at ``r_max``. MACE's ``ZBL`` pair term has the same form.
"""

from typing import Dict, List, Optional

import torch
from ase.data import chemical_symbols
from e3nn.util.jit import compile_mode
from torch import nn

from ..data.pairs import covalent_sum, pair_key

COULOMB_EV_ANGSTROM = 14.399645  # e^2 / (4 pi eps0) in eV Å
ZBL_SCREENING = ((0.18175, 3.19980), (0.50986, 0.94229), (0.28022, 0.40290), (0.02817, 0.20162))
ZBL_LENGTH = 0.46850  # Å (0.8854 Bohr)


def switch_off_radii(atomic_numbers: List[int], radii: Dict[str, float]) -> List[List[float]]:
    """``r_max`` of every pair of the species ``(S, S)`` (Å): the radius ``radii`` gives for the
    element pair (keyed as ``"C-H"``, symbols in alphabetical order), else the covalent-radius
    sum."""
    symbols = [chemical_symbols[n] for n in atomic_numbers]
    return [[float(radii.get(pair_key(a, b), covalent_sum(a, b))) for b in symbols] for a in symbols]


@compile_mode("script")
class ZBLRepulsion(nn.Module):
    """Per-edge ZBL energies for the species' atomic numbers; ``forward(length, center, neighbour)``
    takes edge lengths ``(E,)`` (Å) and the species indices of each edge's two atoms and returns
    the pair energy of each edge ``(E,)`` (eV, the whole pair's: an atom's share is half of each
    of its edges). The tables are constants derived from the species (not saved in a state dict).

    Written without branches: beyond ``r_max`` the distance is clamped to ``r_max``, where the
    envelope is exactly 0 with zero slope, so the energy and its derivatives vanish there."""

    def __init__(self, atomic_numbers: List[int], r_max: Optional[List[List[float]]] = None):
        super().__init__()
        z = torch.tensor([float(n) for n in atomic_numbers], dtype=torch.float64)
        if r_max is None:
            r_max = switch_off_radii(atomic_numbers, {})
        switch = torch.tensor(r_max, dtype=torch.float64).reshape(len(atomic_numbers), len(atomic_numbers))
        zp = z.pow(0.23)
        # per species pair (row centre * S + neighbour): 1 / r_max, 1 / screening length, k_e Z_i Z_j
        table = torch.stack([1.0 / switch, (zp[:, None] + zp[None, :]) / ZBL_LENGTH,
                             COULOMB_EV_ANGSTROM * z[:, None] * z[None, :]], dim=-1)
        self.register_buffer("table", table.reshape(-1, 3), persistent=False)
        screening = torch.tensor(ZBL_SCREENING, dtype=torch.float64)
        self.register_buffer("screening_coefficients", screening[:, 0].clone(), persistent=False)
        self.register_buffer("screening_exponents", screening[:, 1].clone(), persistent=False)
        self.num_species = len(atomic_numbers)

    def forward(self, length: torch.Tensor, center: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        table = self.table.index_select(0, center * self.num_species + neighbour).to(length.dtype)
        inverse_r_max = table[:, 0]
        x = torch.clamp(length * inverse_r_max, max=1.0)
        r = x / inverse_r_max  # min(length, r_max)
        scaled = (r * table[:, 1]).unsqueeze(-1)
        phi = (self.screening_coefficients.to(length.dtype)
               * torch.exp(-self.screening_exponents.to(length.dtype) * scaled)).sum(-1)
        # the polynomial envelope with p = 6: 1 - 28 x^6 + 48 x^7 - 21 x^8, exactly 0 at x = 1
        x2 = x * x
        envelope = 1.0 + x2 * x2 * x2 * (-28.0 + x * (48.0 - 21.0 * x))
        return table[:, 2] / r * phi * envelope
