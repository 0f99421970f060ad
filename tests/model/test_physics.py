import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from mlff.testing import evaluate, small_molecule, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_small_cell_equals_supercell(model):
    """A cell much smaller than the cutoff (many images) behaves like its 3x3x3 supercell."""
    atoms = bulk("Cu", "fcc", a=3.6)  # 1 atom, nearest-image distance 2.5 Å < r_cut
    atoms = atoms.repeat((1, 1, 2))
    atoms.numbers[1] = 8
    atoms.positions[1] += [0.1, -0.05, 0.2]
    small = evaluate(model, atoms)
    big = evaluate(model, atoms.repeat((3, 3, 3)))
    np.testing.assert_allclose(big["energy"] / 27, small["energy"], rtol=1e-12)
    np.testing.assert_allclose(big["forces"][: len(atoms)], small["forces"], atol=1e-12)
    np.testing.assert_allclose(big["stress"], small["stress"], atol=1e-12)


def test_far_apart_fragments_are_additive(model):
    a = small_molecule(1)
    b = small_molecule(2)
    b.positions += [50.0, 0.0, 0.0]
    both = evaluate(model, a + b)
    np.testing.assert_allclose(both["energy"], evaluate(model, a)["energy"] + evaluate(model, b)["energy"], rtol=1e-12)


def test_isolated_atom_has_no_forces_or_virial(model):
    first = evaluate(model, Atoms("O", positions=[[0, 0, 0]]))
    moved = evaluate(model, Atoms("O", positions=[[1.0, -2.0, 3.0]]))
    assert np.isfinite(first["energy"])
    assert first["energy"] == moved["energy"]
    assert np.all(first["forces"] == 0) and np.all(first["virial"] == 0)


def test_energy_continuous_across_cutoff(model):
    """Energy and force go smoothly to the isolated values as a dimer crosses r_cut."""
    r_cut = model.r_cut
    isolated = sum(float(evaluate(model, Atoms(s, positions=[[0, 0, 0]]))["energy"]) for s in ("Cu", "O"))
    for r in (r_cut - 1e-3, r_cut - 1e-6, r_cut + 1e-6):
        out = evaluate(model, Atoms("CuO", positions=[[0, 0, 0], [r, 0, 0]]))
        gap = r_cut - r
        assert abs(float(out["energy"]) - isolated) <= 1e3 * max(gap, 0) ** 3 + 1e-14
        assert np.abs(out["forces"]).max() <= 1e3 * max(gap, 0) ** 2 + 1e-14
    inside = evaluate(model, Atoms("CuO", positions=[[0, 0, 0], [r_cut - 0.5, 0, 0]]))
    assert abs(float(inside["energy"]) - isolated) > 1e-6


def test_radial_inputs_carry_the_species_and_vanish_at_the_cutoff(model):
    """With radial_species (the default) the radial MLP sees the basis and the one-hot species of
    the edge's centre and neighbour, all times the envelope: equal lengths with other species give
    other inputs, and every input is zero at r_cut."""
    r_cut = model.r_cut
    lengths = torch.tensor([2.0, 2.0, 2.0, r_cut, r_cut + 0.1], dtype=torch.float64)
    vec = torch.stack([lengths, torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)], 1)
    species = torch.tensor([0, 1])  # Cu, O
    edge_index = torch.tensor([[0, 0, 1, 0, 1], [0, 1, 0, 1, 0]])  # Cu-Cu, Cu-O, O-Cu, at r_cut and beyond
    _, radial = model.edge_embedding(vec, edge_index, species)
    num_basis = model.config.num_basis
    assert radial.shape == (5, num_basis + 2 * 2)
    envelope = model.radial.cutoff(lengths)
    torch.testing.assert_close(radial[:, :num_basis], model.radial(lengths), rtol=1e-12, atol=0)
    torch.testing.assert_close(radial[:3, num_basis:], envelope[:3, None] * torch.tensor(
        [[1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0]], dtype=torch.float64), rtol=1e-12, atol=0)
    assert float(envelope[0]) > 0.1
    assert torch.all(radial[3:] == 0)


def test_distance_only_radial_inputs_when_off():
    """radial_species: false (the form of models saved before the option) keeps the basis only."""
    model = tiny_model(radial_species=False)
    vec = torch.tensor([[2.0, 0.0, 0.0]], dtype=torch.float64)
    _, radial = model.edge_embedding(vec, torch.tensor([[0], [1]]), torch.tensor([0, 1]))
    torch.testing.assert_close(radial, model.radial(torch.tensor([2.0], dtype=torch.float64)), rtol=1e-12, atol=0)


def _hcp_minus_fcc(model, nearest: float = 2.86) -> float:
    """Energy per atom of ideal hcp (c/a = sqrt(8/3)) minus fcc Al with the same nearest-neighbour distance."""
    fcc = evaluate(model, bulk("Al", "fcc", a=nearest * 2 ** 0.5))["energy"]
    hcp = evaluate(model, bulk("Al", "hcp", a=nearest, c=nearest * (8 / 3) ** 0.5))["energy"] / 2
    return float(hcp - fcc)


@pytest.mark.parametrize("l_max, parity, tells_apart", [(1, True, False), (2, True, False), (2, False, False),
                                                         (3, False, True), (3, True, True)])
def test_fcc_and_hcp_need_l3(l_max, parity, tells_apart):
    """fcc and ideal hcp have the same 12 nearest neighbours at the same distance, and the l = 1 and
    l = 2 moments of both shells vanish: within a cutoff that holds only that shell, a model with
    l_max <= 2 gives both the same energy per atom, whatever its weights and depth (its l > 0
    features stay zero layer after layer). The l = 3 moment differs (0 in fcc, not in hcp), so
    l_max = 3 tells them apart: the stacking-fault physics of close-packed metals."""
    model = tiny_model(("Al",), l_max=l_max, parity=parity, r_cut=3.5, num_layers=3, seed=3)
    difference = abs(_hcp_minus_fcc(model))
    if tells_apart:  # random weights: a small difference, yet 1e5 times the rounding of the equal case
        assert difference > 1e-7, difference
    else:
        assert difference < 1e-11, difference


def test_default_training_model_tells_fcc_from_hcp():
    """The model `mlff train` builds without a `model` key has the l = 3 features of the test above."""
    from mlff import ModelConfig, build_model
    from mlff.train import TrainConfig

    config = TrainConfig(train_file="x.extxyz").model_config()
    config = ModelConfig.from_dict({**config.to_dict(), "r_cut": 3.5, "dtype": "float64"})
    model = build_model(config, ["Al"], seed=3).eval()
    model.scale_shift.set(2.0, [-3.0])
    assert abs(_hcp_minus_fcc(model)) > 1e-7
