"""Model hyper-parameters as a plain dataclass (irreps and sizes as plain values)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Dict, List, Union

from ase.data import chemical_symbols
from e3nn import o3

from ..nn.interaction import TP_BACKENDS
from ..data.pairs import pair_key
from ..options import parse_fields, reject_unknown

_DTYPES = ("float32", "float64")
PAIR_REPULSIONS = ("zbl", "none")
RADII_FROM_DATA = "data"  # ModelConfig.pair_repulsion_radii: training sets them from its frames


def canonical_pair_radii(radii: Dict[str, float]) -> Dict[str, float]:
    """``radii`` with each key written as :func:`pair_key` writes it (``"H-C"`` becomes ``"C-H"``),
    or a ``ValueError`` naming a key that is not two element symbols, a radius that is not a
    positive distance, or a pair given twice."""
    if not isinstance(radii, dict):
        raise ValueError(f"ModelConfig.pair_repulsion_radii: {radii!r} is neither a mapping such as {{'C-H': 0.98}} "
                         f"nor {RADII_FROM_DATA!r}")
    out: Dict[str, float] = {}
    for key, radius in radii.items():
        parts = str(key).split("-")
        if len(parts) != 2 or any(p not in chemical_symbols[1:] for p in parts):
            raise ValueError(f"ModelConfig.pair_repulsion_radii: {key!r} is not an element pair such as 'C-H'")
        if not (isinstance(radius, (int, float)) and not isinstance(radius, bool) and 0 < radius < float("inf")):
            raise ValueError(f"ModelConfig.pair_repulsion_radii[{key!r}]: {radius!r} is not a positive distance in Å")
        name = pair_key(*parts)
        if name in out and out[name] != float(radius):
            raise ValueError(f"ModelConfig.pair_repulsion_radii gives the pair {name} twice")
        out[name] = float(radius)
    return dict(sorted(out.items()))


def default_features(l_max: int) -> List[int]:
    """The channels per ``l`` of a model whose ``num_features`` is unset: 32 scalars, 16 channels
    of ``l = 1`` and ``l = 2``, 8 of each higher ``l`` (``[32, 16, 16, 8]`` at ``l_max = 3``).
    The high-``l`` channels carry the small angular signal that tells close-packed stackings
    apart and cost the most per channel."""
    return [32] + [16] * min(l_max, 2) + [8] * max(l_max - 2, 0)


@dataclass
class ModelConfig:
    """Hyper-parameters of an mlff potential.

    Attributes
    ----------
    r_cut : cutoff radius of one message-passing layer, Å. The interaction range of the model is
        ``num_layers * r_cut``.
    num_layers : number of interaction (message-passing) layers.
    num_features : channels per irrep in the hidden features: one number for every ``l``, or a
        list of ``l_max + 1`` numbers, the channels of ``l = 0, 1, ...`` (e.g. ``[32, 32, 32, 8]``;
        with ``parity`` both parities of an ``l`` get its count). Unset (``None``, the default):
        :func:`default_features`, 32 channels at ``l = 0``, 16 at ``l = 1, 2`` and 8 above, so
        ``[32, 16, 16, 8]`` at ``l_max = 3``. Against 32 for every ``l`` that took 0.62x the MD
        time and 0.42x the memory, kept the fcc/hcp physics on aluminium and ranked first on the
        defaults suite (docs/benchmarks/2026-12-05_channels_per_l.md). The saved config holds
        the list it resolved to.
    l_max : highest rotation order of the edge spherical harmonics and hidden features; ``0`` gives
        the invariant, distance-only model. 3 (the default) is the least that tells fcc from hcp:
        their nearest-neighbour shells have the same distances and the same l = 1 and l = 2
        moments (zero), so a model with ``l_max <= 2`` sees both as one crystal except through
        far neighbours at its cutoff (fitted to aluminium it put hcp 1 meV/atom above fcc
        against DFT's 33, docs/benchmarks/2026-12-05_close_packed.md).
    parity : ``True`` keeps hidden features of both parities (full O(3): pseudo-scalars and
        pseudo-vectors such as cross products are available); ``False`` (the default) keeps only
        the natural-parity irreps ``0e, 1o, 2e, 3o, ...`` (with ``l_max = 3``, 1.17x the eager
        training step of ``l_max = 2`` with both parities, where both parities at ``l_max = 3``
        cost 1.85x); pseudo-scalar outputs such as chirality (``0o``) then need ``True``.
        The energy is invariant under rotations *and* reflections in both cases.
    num_basis : number of Bessel radial basis functions.
    cutoff_p : exponent of the polynomial cutoff envelope (smoothness at ``r_cut``).
    radial_hidden, radial_layers : width and depth of the MLP turning the radial basis into the
        tensor-product weights.
    radial_species : the radial MLP also sees the species of the edge's two atoms (their one-hot
        vectors, times the cutoff envelope so that the weights still vanish smoothly at ``r_cut``),
        so each pair of elements gets its own radial functions, as in Allegro's two-body
        embedding; on three-element DFT data it lowered the test force error by 7 % at a fixed
        wall time (docs/benchmarks/2026-11_training_experiments.md). ``False`` (the form of models saved before this option):
        distance only.
    readout_hidden : scalar channels of the per-atom energy head.
    avg_num_neighbors : the neighbour sum is divided by this (set from data by training).
    dtype : ``"float64"`` or ``"float32"``: the model's internal precision. Inputs and outputs are
        float64 whatever this is.
    dipole : add a dipole head: per-atom charges ``q_i`` (constrained to sum to the total charge) and
        per-atom dipoles ``mu_i`` (``1o``); the molecular dipole is ``sum q_i r_i + sum mu_i`` (e Å).
    tp_backend : implementation of the edge convolution: ``"fused"`` (default; the neighbour sum
        of the tensor product evaluated block by block without per-edge message tensors, see
        :mod:`mlff.nn.tensor_product`) or ``"e3nn"`` (e3nn's generic ``TensorProduct`` then a
        scatter; the reference). Both have the same parameters and agree to rounding, so a trained
        model can be exported with either.
    pair_repulsion : ``"zbl"`` adds a fixed short-range repulsion to the learned energy: the ZBL
        screened nuclear repulsion of each pair closer than the sum of its covalent radii, switched
        off smoothly there (:mod:`mlff.nn.repulsion`). Where the data hold no pair that close, the
        model then repels as physics does instead of extrapolating. ``"none"`` (the form of models
        saved before this option): the learned energy only. Molecules with covalent bonds, whose
        bond lengths are the covalent-radius sums, fit worse with the covalent switch-off
        (ethanol's forces 1.6-1.8x worse; Si, MgO and Al-Mg-Si better:
        docs/benchmarks/2026-12-05_pair_repulsion.md): give them ``pair_repulsion_radii: data``.
    pair_repulsion_radii : where the pair repulsion switches off for some element pairs,
        ``{"C-H": 0.98}`` (Å); the pairs not listed (all of them with ``{}``, the default) switch
        off at the sum of their covalent radii. ``"data"``: training sets each pair's radius to
        its closest approach in the training frames where that is shorter than the covalent sum,
        so that the term is zero on every training frame and acts only closer than any pair of
        the data. For molecules: on ethanol it fits as well as ``pair_repulsion: none`` (test
        forces 20.8 meV/Å, against 36.6 with the covalent sums) and still repels atoms pushed
        closer than the data; the solids of the defaults suite fit better with the covalent sums
        (MgO's forces 129 against 164), docs/benchmarks/2026-12-05_repulsion_radii.md.
    outputs : extra per-atom outputs of any irreps, ``{name: irreps}``, e.g.
        ``{"chirality": "1x0o", "polarizability": "1x0e+1x2e"}``; each structure's value is the
        sum over its atoms. Components are in e3nn's basis (``1o`` is Cartesian x, y, z).
    """

    r_cut: float = 5.0
    num_layers: int = 3
    num_features: Union[int, List[int], None] = None
    l_max: int = 3
    parity: bool = False
    num_basis: int = 8
    cutoff_p: int = 6
    radial_hidden: int = 64
    radial_layers: int = 2
    radial_species: bool = True
    readout_hidden: int = 16
    avg_num_neighbors: float = 10.0
    dtype: str = "float64"
    dipole: bool = False
    tp_backend: str = "fused"
    pair_repulsion: str = "zbl"
    pair_repulsion_radii: Union[Dict[str, float], str] = field(default_factory=dict)
    outputs: Dict[str, str] = field(default_factory=dict)

    PRESETS = {
        "small": dict(num_layers=2, num_features=16, l_max=1, parity=True, radial_hidden=32),
        "medium": dict(num_layers=3, num_features=None, l_max=3, parity=False, radial_hidden=64),
        "large": dict(num_layers=4, num_features=64, l_max=3, parity=True, radial_hidden=64),
    }

    def __post_init__(self):
        positive = ("r_cut", "num_layers", "num_basis", "radial_hidden",
                    "readout_hidden", "avg_num_neighbors", "cutoff_p")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"ModelConfig.{name} must be positive, got {getattr(self, name)!r}")
        if not (isinstance(self.l_max, int) and self.l_max >= 0):
            raise ValueError(f"ModelConfig.l_max must be an integer >= 0, got {self.l_max!r}")
        if self.num_features is None:
            self.num_features = default_features(self.l_max)
        counts = self.num_features if isinstance(self.num_features, (list, tuple)) else [self.num_features]
        if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in counts) or not counts:
            raise ValueError(f"ModelConfig.num_features must be a positive whole number or a list of them, "
                             f"got {self.num_features!r}")
        if isinstance(self.num_features, (list, tuple)):
            if len(self.num_features) != self.l_max + 1:
                raise ValueError(f"ModelConfig.num_features lists {len(self.num_features)} channel counts; "
                                 f"l_max = {self.l_max} needs {self.l_max + 1} (one for each l = 0..{self.l_max})")
            self.num_features = [int(n) for n in self.num_features]
        if self.radial_layers < 0:
            raise ValueError(f"ModelConfig.radial_layers must be >= 0, got {self.radial_layers!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"ModelConfig.dtype must be one of {_DTYPES}, got {self.dtype!r}")
        if self.pair_repulsion not in PAIR_REPULSIONS:
            raise ValueError(f"ModelConfig.pair_repulsion must be one of {PAIR_REPULSIONS}, got {self.pair_repulsion!r}")
        if self.pair_repulsion_radii != RADII_FROM_DATA:
            self.pair_repulsion_radii = canonical_pair_radii(self.pair_repulsion_radii)
        if self.tp_backend not in TP_BACKENDS:
            raise ValueError(f"ModelConfig.tp_backend must be one of {TP_BACKENDS}, got {self.tp_backend!r}")
        reserved = {"energy", "forces", "virial", "stress", "dipole", "charges"}
        for name, irreps in dict(self.outputs).items():
            if name in reserved or not str(name).isidentifier():
                raise ValueError(f"ModelConfig.outputs: {name!r} is reserved or not a valid name")
            try:
                o3.Irreps(irreps)
            except (ValueError, AssertionError):
                raise ValueError(f"ModelConfig.outputs[{name!r}]: {irreps!r} is not an irreps string "
                                 "such as '1x0o' or '1x0e+1x2e'") from None

    @classmethod
    def preset(cls, name: str, **overrides) -> "ModelConfig":
        """A named preset (``small``, ``medium``, ``large``) with optional field overrides."""
        if name not in cls.PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(cls.PRESETS)}")
        return cls.from_dict({**cls.PRESETS[name], **overrides})

    # options added after models were first saved, with the values that reproduce those models
    # (a saved config without the key was written before the option existed)
    SAVED_BEFORE = {"radial_species": False, "pair_repulsion": "none"}

    @classmethod
    def from_saved(cls, values: dict) -> "ModelConfig":
        """The config saved in a model file or checkpoint; options it predates take the value that
        reproduces it (``SAVED_BEFORE``), not today's default."""
        return cls.from_dict({**cls.SAVED_BEFORE, **values})

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """Build from a plain dict; an unknown key is an error naming the key and a close match."""
        known = [f.name for f in fields(cls)]
        reject_unknown(values, known, f"unknown model option {{key!r}}{{hint}}; known options: {known}")
        return cls(**parse_fields(cls, values, prefix="model."))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def features(self, l: int) -> int:
        """Channels of the hidden irreps of rotation order ``l``."""
        return self.num_features[l] if isinstance(self.num_features, list) else int(self.num_features)

    @property
    def hidden_irreps(self) -> o3.Irreps:
        """Hidden feature irreps, e.g. ``32x0e+32x0o+32x1o+32x1e+...`` (parity) or ``32x0e+32x1o+...``."""
        irreps = []
        for l in range(self.l_max + 1):
            natural = (-1) ** l
            irreps.append((self.features(l), (l, natural)))
            if self.parity:
                irreps.append((self.features(l), (l, -natural)))
        return o3.Irreps(irreps)

    @property
    def sh_irreps(self) -> o3.Irreps:
        """Edge spherical harmonics irreps ``0e + 1o + 2e + ...`` up to ``l_max``."""
        return o3.Irreps.spherical_harmonics(self.l_max)
