"""Radial basis and smooth cutoff: the only functions of interatomic distance in the model."""

import math
from typing import List

import torch
from e3nn.nn import FullyConnectedNet
from e3nn.util.jit import compile_mode
from torch import nn


@compile_mode("script")
class BesselBasis(nn.Module):
    r"""``num_basis`` Bessel functions :math:`\sqrt{2/r_c}\,\sin(n\pi r/r_c)/r`, ``n = 1..num_basis``.

    Input ``(E,)`` distances in Å, output ``(E, num_basis)``.
    """

    def __init__(self, r_cut: float, num_basis: int = 8, trainable: bool = True):
        super().__init__()
        self.r_cut = float(r_cut)
        self.num_basis = int(num_basis)
        self.prefactor = math.sqrt(2.0 / self.r_cut)
        freqs = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi
        if trainable:
            self.freqs = nn.Parameter(freqs)
        else:
            self.register_buffer("freqs", freqs)

    def forward(self, r: torch.Tensor) -> torch.Tensor:  # [E, num_basis]
        x = r.unsqueeze(-1) / self.r_cut
        return self.prefactor * torch.sin(self.freqs * x) / r.unsqueeze(-1)


@compile_mode("script")
class PolynomialCutoff(nn.Module):
    r"""Smooth envelope :math:`u(r)` that is 1 at r=0 and 0 at ``r_cut`` with ``p`` continuous derivatives.

    :math:`u(x) = 1 - \tfrac{(p+1)(p+2)}{2}x^p + p(p+2)x^{p+1} - \tfrac{p(p+1)}{2}x^{p+2}`,
    :math:`x = r/r_c`, and exactly zero for :math:`r \ge r_c` (Klicpera et al., DimeNet).
    """

    def __init__(self, r_cut: float, p: int = 6):
        super().__init__()
        self.r_cut = float(r_cut)
        self.p = float(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:  # [E]
        p = self.p
        x = r / self.r_cut
        u = (
            1.0
            - (p + 1.0) * (p + 2.0) / 2.0 * torch.pow(x, p)
            + p * (p + 2.0) * torch.pow(x, p + 1.0)
            - p * (p + 1.0) / 2.0 * torch.pow(x, p + 2.0)
        )
        return u * (x < 1.0).to(u.dtype)


@compile_mode("script")
class RadialEmbedding(nn.Module):
    """Bessel basis times the cutoff envelope: ``(E,)`` distances to ``(E, num_basis)`` features
    that vanish smoothly at ``r_cut``."""

    def __init__(self, r_cut: float, num_basis: int = 8, cutoff_p: int = 6):
        super().__init__()
        self.basis = BesselBasis(r_cut, num_basis)
        self.cutoff = PolynomialCutoff(r_cut, cutoff_p)
        self.num_basis = num_basis

    def forward(self, r: torch.Tensor) -> torch.Tensor:  # [E, num_basis]
        return self.basis(r) * self.cutoff(r).unsqueeze(-1)


@compile_mode("script")
class RadialMLP(FullyConnectedNet):
    """e3nn's :class:`~e3nn.nn.FullyConnectedNet` (same parameters, same function) with its
    constant factors folded into the weights; SiLU hidden activations, linear output.

    e3nn computes each hidden layer as ``act(x @ (W / sqrt(h_in))) * cst * sqrt(var_out)``: two
    passes over ``[E, hidden]`` per layer, and two more in the backward, only to multiply by
    constants. Here ``cst * sqrt(var_out)`` is applied to the next layer's (small) weight matrix
    instead, so the per-edge work is the matmuls and the activations alone.
    """

    scales: List[float]  # factor applied to each layer's weight
    has_act: List[bool]

    def __init__(self, hs: List[int]):
        super().__init__(hs, torch.nn.functional.silu)
        self.scales, self.has_act = [], []
        carried = 1.0  # the previous layer's output factor, moved into this layer's weight
        for layer in self:
            if layer.act is not None:
                self.scales.append(carried / (layer.h_in * layer.var_in) ** 0.5)
                carried = getattr(layer.act, "cst", 1.0) * layer.var_out ** 0.5
                self.has_act.append(True)
            else:
                self.scales.append(carried / (layer.h_in * layer.var_in / layer.var_out) ** 0.5)
                carried = 1.0
                self.has_act.append(False)
        if carried != 1.0:
            raise ValueError("RadialMLP: the last layer must be linear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [E, hs[0]] -> [E, hs[-1]]
        i = 0
        for layer in self:
            x = x @ (layer.weight * self.scales[i])
            if self.has_act[i]:
                x = torch.nn.functional.silu(x)
            i += 1
        return x
