"""Equivariant readout heads: node features to per-atom outputs of any irreps."""

import torch
from e3nn import o3
from e3nn.nn import Gate
from e3nn.util.jit import compile_mode
from torch import nn


@compile_mode("script")
class Readout(nn.Module):
    """``Linear -> Gate -> Linear`` from node features to per-atom outputs.

    ``irreps_hidden`` (e.g. ``16x0e`` or ``16x0e+4x1o``) sets the head's width; non-scalar hidden
    irreps are gated by extra even scalars. Irreps: ``irreps_in`` -> ``irreps_out``.
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_hidden: o3.Irreps, irreps_out: o3.Irreps):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        hidden = o3.Irreps(irreps_hidden)
        scalars = o3.Irreps([(m, ir) for m, ir in hidden if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in hidden if ir.l > 0])
        gates = o3.Irreps([(m, "0e") for m, _ in gated])
        self.gate = Gate(
            scalars,
            [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars],
            gates,
            [torch.sigmoid] * len(gates),
            gated,
        )
        self.linear_in = o3.Linear(self.irreps_in, self.gate.irreps_in)
        self.linear_out = o3.Linear(self.gate.irreps_out, self.irreps_out)
        if self.linear_out.weight_numel == 0:
            raise ValueError(
                f"readout cannot produce {self.irreps_out} from hidden irreps {hidden}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [n, irreps_out]
        return self.linear_out(self.gate(self.linear_in(x)))
