import numpy as np
import pytest

from mlff.testing import (assert_e3_equivariant, evaluate, small_molecule, tiny_model,
                          transform, triclinic_cell)

TOL = {"float64": 1e-10, "float32": 2e-4}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("l_max,parity,radial_species", [(2, True, True), (2, False, True), (1, True, True),
                                                         (0, True, True), (2, True, False)])
def test_periodic_cell(dtype, l_max, parity, radial_species):
    model = tiny_model(dtype=dtype, l_max=l_max, parity=parity, radial_species=radial_species)
    assert_e3_equivariant(lambda a: evaluate(model, a), triclinic_cell(3), seed=1, tol=TOL[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_molecule(dtype):
    model = tiny_model(dtype=dtype)
    assert_e3_equivariant(lambda a: evaluate(model, a), small_molecule(), seed=2, tol=TOL[dtype])


@pytest.mark.parametrize("parity", [False, True])
def test_channels_per_l(parity):
    """num_features as a list: each l gets its own channel count (with both parities, each parity
    of an l gets it); the model is equivariant and its heads still read their irreps."""
    model = tiny_model(l_max=3, parity=parity, num_features=[8, 6, 4, 2], dipole=True,
                       outputs={"polarizability": "1x0e+1x2e"})
    hidden = model.config.hidden_irreps
    assert [(mul, ir.l) for mul, ir in hidden if ir.p == (-1) ** ir.l] == [(8, 0), (6, 1), (4, 2), (2, 3)]
    assert [(mul, ir.l) for mul, ir in hidden if ir.p != (-1) ** ir.l] == ([(8, 0), (6, 1), (4, 2), (2, 3)] if parity else [])
    assert [(mul, ir.l) for mul, ir in model.layers[0].irreps_out] == [(8, 0), (6, 1), (4, 2), (2, 3)]
    assert_e3_equivariant(lambda a: evaluate(model, a), triclinic_cell(3), seed=4, tol=TOL["float64"])


def test_checker_catches_a_broken_model():
    """The equivariance helper must fail on a quantity that is not covariant."""
    model = tiny_model()

    def broken(atoms):
        out = evaluate(model, atoms)
        out["energy"] = out["energy"] + atoms.positions[0, 0]  # not translation invariant
        return out

    with pytest.raises(AssertionError, match="energy not invariant"):
        assert_e3_equivariant(broken, small_molecule())


def test_lattice_translation_of_one_atom_changes_nothing():
    model = tiny_model()
    atoms = triclinic_cell(4)
    moved = atoms.copy()
    moved.positions[0] += atoms.cell.array[1] - 2 * atoms.cell.array[2]
    a, b = evaluate(model, atoms), evaluate(model, moved)
    np.testing.assert_allclose(a["energy"], b["energy"], rtol=1e-12)
    np.testing.assert_allclose(a["forces"], b["forces"], atol=1e-12)
    np.testing.assert_allclose(a["stress"], b["stress"], atol=1e-12)


def test_energy_depends_on_geometry():
    """Guard against a trivially invariant (constant) model."""
    model = tiny_model()
    atoms = triclinic_cell(5)
    rot = np.eye(3)
    moved = transform(atoms, rot)
    moved.positions[0] += 0.1
    assert abs(evaluate(model, atoms)["energy"] - evaluate(model, moved)["energy"]) > 1e-6
