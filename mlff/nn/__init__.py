"""Equivariant layers. Each layer declares ``irreps_in`` / ``irreps_out`` and checks them at build time."""

from .embedding import SpeciesEmbedding
from .grad import edge_gradient_outputs
from .interaction import Interaction
from .radial import BesselBasis, PolynomialCutoff, RadialEmbedding, RadialMLP
from .readout import Readout
from .scale_shift import ScaleShift
from .spherical_harmonics import SphericalHarmonics
from .tensor_product import FusedEdgeTensorProduct

__all__ = [
    "BesselBasis",
    "FusedEdgeTensorProduct",
    "Interaction",
    "PolynomialCutoff",
    "RadialEmbedding",
    "RadialMLP",
    "Readout",
    "ScaleShift",
    "SphericalHarmonics",
    "SpeciesEmbedding",
    "edge_gradient_outputs",
]
