"""Spherical harmonics of the edge directions, in e3nn's real basis and its ``component``
normalisation (``|Y_l(r)|^2 = 2l + 1`` for every direction).

In Python (training, the calculator, ``torch.compile`` and ``torch.export``) this is e3nn's
``SphericalHarmonics``. In a model file it is traced instead: ``Y_l`` built from ``Y_{l-1}`` and
the unit vector with the Clebsch-Gordan coefficients ``(l-1) x 1 -> l``, unrolled into
straight-line code for ``l <= l_max`` only. e3nn's scripted function spells out every ``l`` up to
its maximum, and TorchScript compiles all of it whenever a model file is loaded (most of a load's
time: in each LAMMPS rank, calculator and CLI command); the traced code compiles at once. Both
give the same values (``tests/model/test_spherical_harmonics.py``).
"""

from __future__ import annotations

import math
from typing import List, Tuple

import torch
from e3nn import o3
from e3nn.util.jit import compile_mode
from torch import nn

# (coefficient, index in Y_{l-1}, axis 0/1/2 of the unit vector) for each component of Y_l
Terms = List[List[Tuple[float, int, int]]]


def _e3nn(l: int, vectors: torch.Tensor) -> torch.Tensor:
    return o3.spherical_harmonics(l, vectors, normalize=True, normalization="component")


def recursion_terms(l_max: int) -> List[Terms]:
    """``terms[l][m]``: ``Y_l[m] = sum(c * Y_{l-1}[i] * r[a] for c, i, a in terms[l][m])`` for the
    unit vector ``r``, with ``terms[0]`` empty (``Y_0 = 1``). The coefficients are e3nn's 3j
    symbols, scaled to the component normalisation and signed as e3nn's harmonics."""
    eye = torch.eye(3, dtype=torch.float64)
    axes_of_y1 = _e3nn(1, eye).T / math.sqrt(3.0)     # Y_1 = sqrt(3) * axes_of_y1 @ r
    probe = torch.nn.functional.normalize(torch.tensor([[0.3, -0.5, 0.8]], dtype=torch.float64), dim=-1)
    terms: List[Terms] = [[]]
    for l in range(1, l_max + 1):
        if l == 1:   # Y_1[k] = sqrt(3) sum_a axes[k, a] r[a], times Y_0 = 1
            coefficients = math.sqrt(3.0) * axes_of_y1.T.unsqueeze(0)   # [1, 3 axes, 3 components]
        else:        # Y_l[k] = s sum_ij w[i,j,k] Y_{l-1}[i] Y_1[j], s giving |Y_l|^2 = 2l + 1
            coupling = o3.wigner_3j(l - 1, 1, l, dtype=torch.float64)   # [2l-1, 3, 2l+1]
            raw = torch.einsum("i,j,ijk->k", _e3nn(l - 1, probe)[0], _e3nn(1, probe)[0], coupling)
            scale = math.sqrt(2 * l + 1) / float(raw.norm())
            coefficients = scale * math.sqrt(3.0) * torch.einsum("ijk,ja->iak", coupling, axes_of_y1)
        rows = []
        for k in range(2 * l + 1):
            nonzero = (coefficients[:, :, k].abs() > 1e-12).nonzero().tolist()
            rows.append([(float(coefficients[i, a, k]), int(i), int(a)) for i, a in nonzero])
        terms.append(rows)
        if l > 1:   # the sign of the CG coupling against e3nn's harmonics
            built = _evaluate(terms, probe)[:, l * l:(l + 1) * (l + 1)]
            sign = float(torch.sign((built * _e3nn(l, probe)).sum()))
            terms[l] = [[(sign * c, i, a) for c, i, a in row] for row in rows]
    return terms


def _times(x: torch.Tensor, c: float) -> torch.Tensor:
    return torch.ops.aten.mul.Scalar(x, c)


def _evaluate(terms: List[Terms], vectors: torch.Tensor) -> torch.Tensor:
    """All ``Y_l`` for ``l < len(terms)``, concatenated ``[..., (l_max + 1)^2]``: straight-line
    element-wise code when traced."""
    unit = torch.nn.functional.normalize(vectors, dim=-1)   # as e3nn: zero vectors give Y_{l>0} = 0
    r = [unit[..., 0], unit[..., 1], unit[..., 2]]
    one = torch.ones_like(r[0])
    components = [one]
    previous = [one]
    for l in range(1, len(terms)):
        products = {}                            # Y_{l-1}[i] * r[a], each computed once

        def product(i: int, a: int) -> torch.Tensor:
            if (i, a) not in products:
                products[(i, a)] = r[a] if l == 1 else previous[i] * r[a]
            return products[(i, a)]

        current = []
        for (c, i, a), *rest in terms[l]:
            # the coefficients as number literals of the traced code, not as tensor constants
            # (which would live on the CPU beside inputs on a GPU)
            value = _times(product(i, a), c)
            for c, i, a in rest:
                value = torch.add(value, product(i, a), alpha=c)
            current.append(value)
        components += current
        previous = current
    return torch.stack(components, dim=-1)


@compile_mode("trace")
class SphericalHarmonics(nn.Module):
    """``[..., 3]`` vectors (any length; zero gives ``Y_{l>0} = 0``) -> ``[..., (l_max+1)^2]``,
    the harmonics of their directions for ``l = 0 .. l_max`` (``irreps_out``)."""

    def __init__(self, irreps_out: o3.Irreps):
        super().__init__()
        irreps_out = o3.Irreps(irreps_out)
        l_max = irreps_out.lmax
        if [(mul, ir.l) for mul, ir in irreps_out] != [(1, l) for l in range(l_max + 1)]:
            raise ValueError(f"spherical harmonics are built for every l from 0 to l_max once, not {irreps_out}")
        self.irreps_in = o3.Irreps("1x1o")
        self.irreps_out = irreps_out
        # held outside the module tree (no weights either way), so that the traced model file holds
        # the unrolled code only
        self._e3nn = (o3.SphericalHarmonics(irreps_out, normalize=True, normalization="component"),)
        self.terms = recursion_terms(l_max)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            return _evaluate(self.terms, vectors)
        return self._e3nn[0](vectors)

    def _make_tracing_inputs(self, n: int):
        generator = torch.Generator().manual_seed(0)
        return [{"forward": (torch.randn(5 + 3 * k, 3, generator=generator),)} for k in range(max(n, 2))]
