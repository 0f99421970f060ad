import numpy as np
import pytest

from mlff.testing import (evaluate, finite_difference_forces, finite_difference_stress,
                          small_molecule, tiny_model, triclinic_cell)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _energy(model):
    return lambda atoms: float(evaluate(model, atoms)["energy"])


@pytest.mark.parametrize("atoms", [triclinic_cell(6), small_molecule(1)], ids=["triclinic", "molecule"])
def test_forces_are_minus_energy_gradient(model, atoms):
    forces = evaluate(model, atoms)["forces"]
    np.testing.assert_allclose(forces, finite_difference_forces(_energy(model), atoms), atol=1e-7)
    assert np.abs(forces).max() > 1e-3


def test_stress_is_strain_derivative(model):
    atoms = triclinic_cell(7)
    stress = evaluate(model, atoms)["stress"]
    np.testing.assert_allclose(stress, finite_difference_stress(_energy(model), atoms), atol=1e-8)
    np.testing.assert_allclose(stress, stress.T, atol=1e-12)
    assert np.abs(stress).max() > 1e-4


def test_per_atom_quantities_sum_to_totals(model):
    out = evaluate(model, triclinic_cell(8))
    np.testing.assert_allclose(out["atomic_energy"].sum(), out["energy"], rtol=1e-12)
    np.testing.assert_allclose(out["atomic_virial"].sum(axis=0), out["virial"], atol=1e-12)
    np.testing.assert_allclose(out["forces"].sum(axis=0), 0.0, atol=1e-12)
