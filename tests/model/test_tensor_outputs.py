"""Equivariant tensor outputs: dipoles (polar vectors), pseudoscalars (chirality), 0e+2e tensors."""

import numpy as np
import pytest
import torch
from e3nn import o3

import mlff
from mlff.testing import chiral_molecule, evaluate, random_orthogonal, small_molecule, tiny_model, transform

HALOMETHANE = ["C", "H", "F", "Cl", "Br"]


@pytest.fixture(scope="module")
def dipole_model():
    return tiny_model(dipole=True)


def test_dipole_rotates_with_the_molecule_and_flips_under_inversion(dipole_model):
    atoms = small_molecule(5)
    ref = evaluate(dipole_model, atoms)
    assert np.linalg.norm(ref["dipole"]) > 1e-3
    rng = np.random.default_rng(0)
    rotation = random_orthogonal(rng)
    rotated = evaluate(dipole_model, transform(atoms, rotation, translation=rng.normal(size=3) * 5))
    np.testing.assert_allclose(rotated["dipole"], rotation @ ref["dipole"], atol=1e-10)
    np.testing.assert_allclose(rotated["charges"], ref["charges"], atol=1e-10)
    inverted = evaluate(dipole_model, transform(atoms, -np.eye(3)))
    np.testing.assert_allclose(inverted["dipole"], -ref["dipole"], atol=1e-10)  # polar, not axial
    np.testing.assert_allclose(ref["dipole"], ref["charges"] @ atoms.positions + ref["atomic_dipoles"].sum(0),
                               atol=1e-12)


def test_charges_sum_to_the_total_charge(dipole_model):
    atoms = small_molecule(6)
    assert evaluate(dipole_model, atoms)["charges"].sum() == pytest.approx(0.0, abs=1e-12)
    assert evaluate(dipole_model, atoms, total_charge=1.0)["charges"].sum() == pytest.approx(1.0, abs=1e-12)


def test_pseudoscalar_changes_sign_between_enantiomers():
    model = tiny_model(HALOMETHANE, l_max=1, num_layers=3, outputs={"chirality": "1x0o"})
    left, right = evaluate(model, chiral_molecule()), evaluate(model, chiral_molecule(mirror=True))
    np.testing.assert_allclose(left["energy"], right["energy"], rtol=1e-12)
    assert abs(left["chirality"][0]) > 1e-6
    np.testing.assert_allclose(right["chirality"], -left["chirality"], atol=1e-12)
    np.testing.assert_allclose(right["atomic_chirality"], -left["atomic_chirality"], atol=1e-12)
    turned = evaluate(model, transform(chiral_molecule(), random_orthogonal(np.random.default_rng(1))))
    np.testing.assert_allclose(turned["chirality"], left["chirality"], atol=1e-12)  # a rotation is not a mirror


def test_distance_only_model_cannot_tell_enantiomers():
    """The limitation of building from invariants (l_max = 0): identical outputs for mirror images,
    and no way to even express a pseudoscalar."""
    model = tiny_model(HALOMETHANE, l_max=0, num_layers=3, outputs={"scalar": "2x0e"})
    left, right = evaluate(model, chiral_molecule()), evaluate(model, chiral_molecule(mirror=True))
    for key in ("energy", "atomic_energy", "scalar", "atomic_scalar"):
        np.testing.assert_allclose(left[key], right[key], rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match=r"'chirality' \(1x0o\) needs \['0o'\].*l_max=0.*mirror images"):
        tiny_model(HALOMETHANE, l_max=0, num_layers=3, outputs={"chirality": "1x0o"})
    with pytest.raises(ValueError, match="increase num_layers"):
        tiny_model(HALOMETHANE, l_max=1, num_layers=2, outputs={"chirality": "1x0o"})


def test_polarizability_like_output_is_equivariant():
    model = tiny_model(outputs={"polarizability": "1x0e+1x2e"})
    atoms = small_molecule(7)
    ref = evaluate(model, atoms)["polarizability"]
    rotation = random_orthogonal(np.random.default_rng(2), improper=True)
    got = evaluate(model, transform(atoms, rotation))["polarizability"]
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn builds the Wigner matrices in the default dtype
    try:
        D = o3.Irreps("1x0e+1x2e").D_from_matrix(torch.as_tensor(rotation)).numpy()
    finally:
        torch.set_default_dtype(default)
    np.testing.assert_allclose(got, D @ ref, atol=1e-10)
    assert np.abs(ref[1:]).max() > 1e-6


def test_deployed_model_and_calculator_expose_the_heads(tmp_path):
    model = tiny_model(dipole=True, outputs={"polarizability": "1x0e+1x2e"})
    path = mlff.deploy(model, tmp_path / "heads.pt")
    assert mlff.read_metadata(path).outputs == ["dipole", "polarizability"]
    atoms = small_molecule(8)
    ref = evaluate(model, atoms, total_charge=-1.0)
    atoms.calc = mlff.MLFFCalculator(path, charge=-1.0)
    np.testing.assert_allclose(atoms.get_dipole_moment(), ref["dipole"], atol=1e-12)
    np.testing.assert_allclose(atoms.calc.get_property("charges", atoms), ref["charges"], atol=1e-12)
    np.testing.assert_allclose(atoms.calc.get_property("polarizability", atoms), ref["polarizability"], atol=1e-12)
    np.testing.assert_allclose(atoms.get_potential_energy(), ref["energy"], rtol=1e-12)

    from ase.build import bulk
    from ase.calculators.calculator import PropertyNotImplementedError

    crystal = bulk("Cu", "fcc", a=3.7)
    crystal.calc = mlff.MLFFCalculator(path)
    crystal.get_potential_energy()
    with pytest.raises(PropertyNotImplementedError, match="dipole of a periodic structure"):
        crystal.get_dipole_moment()
