"""Many structures per model call (mlff.calculators.batched): each structure's numbers are the
calculator's, one structure at a time (float64, 1e-10), committees and checks included."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import fcc111
from ase.calculators.calculator import CalculatorError
from ase.io import write

import mlff
from mlff.calculators.batched import _groups, predict_batched
from mlff.data.readers import read_frames
from mlff.evaluation import predict_frames
from mlff.testing import small_molecule, tiny_model, triclinic_cell


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batched")
    return [mlff.deploy(tiny_model(seed=seed), folder / f"m{seed}.pt") for seed in (0, 1)]


def _structures():
    slab = fcc111("Cu", (2, 2, 3), a=3.7, vacuum=4.0)  # periodic in two directions: no stress
    slab.rattle(0.05, seed=3)
    lone = Atoms("O", positions=[[0, 0, 0]], cell=[8, 8, 8], pbc=True)  # no edges at all
    return [triclinic_cell(1), small_molecule(2), slab, triclinic_cell(4, repeat=(2, 2, 1)), lone, triclinic_cell(5)]


def _one_at_a_time(models, atoms):
    atoms = atoms.copy()
    atoms.calc = mlff.MLFFCalculator(models)
    atoms.get_potential_energy()
    return atoms.calc.results


def test_groups_fill_up_to_the_atom_budget():
    assert _groups([8, 18, 12, 32, 1, 8], 20) == [[0], [1], [2], [3], [4, 5]]
    assert _groups([8, 8, 8], 100) == [[0, 1, 2]] and _groups([], 10) == []


@pytest.mark.parametrize("committee", [False, True], ids=["one model", "committee"])
def test_batched_equals_one_structure_at_a_time(members, committee):
    models = members if committee else members[0]
    structures = _structures()
    # 20 atoms per call: single structures, pairs, and one (32 atoms) above the budget alone
    got = list(predict_batched(mlff.MLFFCalculator(models), structures, batch_atoms=20))
    assert len(got) == len(structures)
    for atoms, result in zip(structures, got):
        want = _one_at_a_time(models, atoms)
        for name in ("energy", "energies", "forces") + (("energy_std", "forces_std") if committee else ()):
            np.testing.assert_allclose(result[name], want[name], rtol=0, atol=1e-10, err_msg=name)
        if np.all(atoms.pbc):
            stress = -result["stress"][[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]  # Voigt, ASE order
            np.testing.assert_allclose(-stress, want["stress"], rtol=0, atol=1e-10)
        else:
            assert result["stress"] is None
    assert abs(got[0]["energy"]) > 1e-3 and np.abs(got[3]["forces"]).max() > 1e-3  # numbers that could be wrong


def test_checks_apply_to_each_structure(members):
    calc = mlff.MLFFCalculator(members[0])
    bad = triclinic_cell(1)
    bad.positions[3] = bad.positions[2] + [0.1, 0, 0]
    with pytest.raises(CalculatorError, match=r"^structure 1: atoms 2 and 3 are 0.100 Å apart"):
        list(predict_batched(calc, [triclinic_cell(2), bad], batch_atoms=100))
    with pytest.raises(ValueError, match=r"^data.xyz:7: element\(s\) \['Zn'\] not in the model"):
        list(predict_batched(calc, [Atoms("Zn", cell=[5, 5, 5], pbc=True)], names=["data.xyz:7"]))
    with pytest.raises(ValueError, match="batch_atoms must be a positive"):
        list(predict_batched(calc, [triclinic_cell(1)], batch_atoms=0))


def test_predict_and_evaluate_batch_what_they_can(members, tmp_path):
    structures = _structures()
    many = mlff.predict(structures, members[0], batch_atoms=40)
    for atoms, result in zip(structures, many):
        one = mlff.predict(atoms, members[0])
        assert sorted(result) == sorted(one)
        for name in one:
            np.testing.assert_allclose(result[name], one[name], rtol=0, atol=1e-10, err_msg=name)
    # a dipole head sums per structure inside the model: one structure per call, dipoles included
    dipole = mlff.deploy(tiny_model(dipole=True), tmp_path / "dipole.pt")
    with pytest.raises(ValueError, match="per-structure outputs"):
        list(predict_batched(mlff.MLFFCalculator(dipole), structures))
    molecule = small_molecule(1)
    molecule.info["energy"], molecule.arrays["forces"] = 0.0, np.zeros((len(molecule), 3))
    write(tmp_path / "m.extxyz", [molecule])
    frames = read_frames(str(tmp_path / "m.extxyz"))
    prediction = predict_frames(dipole, frames)[0]
    assert prediction["dipole"] is not None and prediction["stress"] is None


def test_evaluate_batch_atoms_option(members, tmp_path):
    """`mlff evaluate --batch-atoms N`: the same metrics with one structure per call or several."""
    import json

    from mlff.cli.main import main as mlff_main

    frames = []
    for seed in range(4):
        atoms = triclinic_cell(seed)
        atoms.info["energy"], atoms.arrays["forces"] = -1.0 * seed, np.full((len(atoms), 3), 0.1)
        frames.append(atoms)
    write(tmp_path / "data.extxyz", frames)
    metrics = []
    for batch in ("1", "20"):
        out = tmp_path / f"m{batch}.json"
        assert mlff_main(["evaluate", str(members[0]), str(tmp_path / "data.extxyz"), "--json", str(out),
                          "--no-plots", "--batch-atoms", batch]) == 0
        metrics.append(json.loads(out.read_text()))
    for name in ("energy_mae", "forces_rmse"):
        assert abs(metrics[0][name] - metrics[1][name]) <= 1e-10 * abs(metrics[0][name]), name
