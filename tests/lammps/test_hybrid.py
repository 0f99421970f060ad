"""pair_style mlff inside ``hybrid/overlay`` with LAMMPS's own styles: ZBL for short-range
repulsion and DFT-D3 for dispersion. The overlay's energy, per-atom energies, forces, virial and
per-atom virials are the sums of each style run alone (float64), on 1 and 2 MPI ranks and in both
halo modes."""

import numpy as np
import pytest

from mlff.lammps.single_point import lammps_evaluate, mpi_evaluate
from mlff.testing import assert_results_close, triclinic_cell

ELEMENTS = ["Cu", "O"]
# inner and outer cutoffs (Å) of ZBL: the triclinic cell's closest pairs (~1.6-2.5 Å) fall inside
ZBL = "zbl 2.0 3.0"
ZBL_COEFFS = ["1 1 29 29", "1 2 29 8", "2 2 8 8"]  # types i j, atomic numbers Z_i Z_j
# Becke-Johnson damping, PBE parameters; cutoffs (Å) of the dispersion and coordination sums
D3 = "dispersion/d3 bj pbe 12.0 8.0"


def _overlay(model_file, other, halo=None):
    """The pair_style and pair_coeff lines of mlff (in halo mode ``halo``, default its own) overlaid with ``other``."""
    name = other.split()[0]
    coeffs = [f"pair_coeff * * mlff {model_file} {' '.join(ELEMENTS)}"]
    if name == "zbl":
        coeffs += [f"pair_coeff {c[:3]} zbl {c[4:]}" for c in ZBL_COEFFS]
    else:
        coeffs += [f"pair_coeff * * {name} {' '.join(ELEMENTS)}"]
    mode = f" halo {halo}" if halo else ""
    return f"pair_style hybrid/overlay mlff{mode} {other}", coeffs


def _alone(other):
    name = other.split()[0]
    if name == "zbl":
        return f"pair_style {other}", [f"pair_coeff {c}" for c in ZBL_COEFFS]
    return f"pair_style {other}", [f"pair_coeff * * {' '.join(ELEMENTS)}"]


def _sum(a, b):
    return {key: a[key] + b[key] for key in a}


@pytest.fixture(scope="module")
def cell():
    return triclinic_cell(4)


@pytest.mark.parametrize("other", [ZBL, D3], ids=["zbl", "d3"])
def test_overlay_is_the_sum_of_its_styles(plugin, model_file, cell, other):
    mlff_alone = lammps_evaluate(cell, str(model_file), ELEMENTS)
    style, coeffs = _alone(other)
    other_alone = lammps_evaluate(cell, str(model_file), ELEMENTS, style, pair_coeffs=coeffs)
    # the other style must contribute, or the sum would hold trivially
    assert abs(other_alone["energy"]) > 1e-3 and np.abs(other_alone["forces"]).max() > 1e-3
    for halo in ("exchange", "shell"):
        style, coeffs = _overlay(model_file, other, halo)
        both = lammps_evaluate(cell, str(model_file), ELEMENTS, style, pair_coeffs=coeffs)
        assert set(both) == set(mlff_alone)
        assert_results_close(both, _sum(mlff_alone, other_alone), rtol=1e-10)


@pytest.mark.parametrize("halo", ["exchange", "shell"])
@pytest.mark.parametrize("other", [ZBL, D3], ids=["zbl", "d3"])
def test_overlay_on_two_ranks(plugin, model_file, cell, other, halo, tmp_path):
    """2 ranks give the 1-rank overlay (on the structure as the MPI run read it back). In halo exchange
    mode the features travel in LAMMPS's buffers, which the hybrid sizes: a regression test for them."""
    style, coeffs = _overlay(model_file, other, halo)
    two, read_back = mpi_evaluate(cell, str(model_file), 2, tmp_path, ELEMENTS, style, pair_coeffs=coeffs)
    one = lammps_evaluate(read_back, str(model_file), ELEMENTS, style, pair_coeffs=coeffs)
    assert_results_close(two, one, rtol=1e-10)
