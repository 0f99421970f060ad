"""The torch cell list (mlff.data.neighbors_torch, MLFFCalculator's list on a GPU) gives the host
list's edges, with shifts that reproduce every edge vector, and the calculator gives the same
energy, forces and stress with either list; here on the CPU, where the test suite runs."""

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.calculator import CalculatorError

import mlff
from mlff.data import neighbors_torch
from mlff.data.neighbors import neighbor_list
from mlff.testing import tiny_model, triclinic_cell


def _canonical(edge_index, edge_shift):
    rows = np.concatenate([edge_index.T.astype(np.float64), np.round(edge_shift, 6)], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def _structures():
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((4, 4, 4))
    cu.rattle(0.1, seed=1)
    unwrapped = cu.copy()
    unwrapped.positions += np.random.default_rng(2).normal(0.0, 20.0, (len(cu), 3))  # atoms far outside the cell
    skewed = cu.copy()
    skewed.set_cell(cu.cell.array @ np.array([[1.0, 0.3, 0.1], [0.0, 1.0, 0.2], [0.0, 0.0, 1.0]]), scale_atoms=True)
    on_faces = bulk("Cu", "sc", a=2.4).repeat((6, 6, 6))  # atoms exactly on the bins' faces
    clustered = cu.copy()
    clustered.positions[:20] = clustered.positions[0] + np.random.default_rng(3).normal(0, 0.8, (20, 3))
    return {"fcc": cu, "unwrapped": unwrapped, "skewed": skewed, "triclinic": triclinic_cell(10, repeat=(4, 4, 4)),
            "on_faces": on_faces, "crowded_bin": clustered}


@pytest.mark.parametrize("name", list(_structures()))
@pytest.mark.parametrize("chunk", [1 << 10, 1 << 22])
def test_same_edges_as_the_host_list(name, chunk):
    atoms = _structures()[name]
    r_cut = 4.0
    assert neighbors_torch.applies(atoms.cell.array, atoms.pbc, r_cut)
    index, shift = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, r_cut)
    t_index, t_shift, t_lengths = neighbors_torch.neighbor_list(
        torch.tensor(atoms.positions), torch.tensor(atoms.cell.array), r_cut, max_candidates=chunk)
    assert t_index.dtype == torch.int64 and t_shift.dtype == torch.float64
    np.testing.assert_allclose(_canonical(t_index.numpy(), t_shift.numpy()), _canonical(index, shift), atol=1e-6)
    vectors = atoms.positions[t_index[1]] - atoms.positions[t_index[0]] + t_shift.numpy()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), t_lengths.numpy(), rtol=0, atol=1e-12)


def test_which_structures_it_takes():
    cu = bulk("Cu", "fcc", a=3.61, cubic=True)
    assert neighbors_torch.applies(cu.repeat((4, 4, 4)).cell.array, [True] * 3, 4.0)
    assert not neighbors_torch.applies(cu.repeat((3, 4, 4)).cell.array, [True] * 3, 4.0)  # 10.8 Å < 3 cutoffs
    assert not neighbors_torch.applies(cu.repeat((4, 4, 4)).cell.array, [True, True, False], 4.0)
    assert not neighbors_torch.applies(np.zeros((3, 3)), [True] * 3, 4.0)


def test_calculator_gives_the_same_results_with_either_list(tmp_path):
    path = mlff.deploy(tiny_model(), tmp_path / "model.pt")
    atoms = triclinic_cell(10, repeat=(4, 4, 4))
    assert neighbors_torch.applies(atoms.cell.array, atoms.pbc, mlff.load(path).r_cut)  # the device list runs
    results = []
    for where in ("host", "device"):
        calc = mlff.MLFFCalculator(path, neighbors=where)
        copy = atoms.copy()
        copy.calc = calc
        results.append((copy.get_potential_energy(), copy.get_forces(), copy.get_stress(), copy.get_potential_energies()))
        assert calc._graph["edge_index"].shape[1] > 0
    for host, device in zip(*results):
        np.testing.assert_allclose(device, host, rtol=1e-10, atol=1e-12)


def test_overlapping_atoms_are_named_by_the_device_list(tmp_path):
    path = mlff.deploy(tiny_model(), tmp_path / "model.pt")
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    atoms.numbers[:] = 29
    atoms.positions[5] = atoms.positions[4] + [0.1, 0.0, 0.0]
    atoms.calc = mlff.MLFFCalculator(path, neighbors="device")
    with pytest.raises(CalculatorError, match=r"atoms 4 and 5 are 0\.100 Å apart"):
        atoms.get_potential_energy()


def test_a_device_list_out_of_memory_falls_back_to_the_host(tmp_path, monkeypatch):
    """The cell list's candidate pairs can outgrow a GPU before the model does: the calculator then
    makes its lists on the host, says so once, and gives the host list's results."""
    path = mlff.deploy(tiny_model(), tmp_path / "model.pt")
    atoms = triclinic_cell(10, repeat=(4, 4, 4))
    want = atoms.copy()
    want.calc = mlff.MLFFCalculator(path, neighbors="host")
    calls = []

    def out_of_memory(*args, **kwargs):
        calls.append(1)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB.")

    monkeypatch.setattr(neighbors_torch, "neighbor_list", out_of_memory)
    calc = mlff.MLFFCalculator(path, neighbors="device")
    got = atoms.copy()
    got.calc = calc
    with pytest.warns(RuntimeWarning, match=r"the neighbour list of 256 atoms did not fit in cpu memory; making "
                                            "neighbour lists on the host from now on"):
        forces = got.get_forces()
    np.testing.assert_allclose(forces, want.get_forces(), rtol=0, atol=1e-12)
    got.rattle(0.01, seed=1)
    got.get_forces()
    assert len(calls) == 1 and calc.device_neighbors is False
    monkeypatch.setattr(neighbors_torch, "neighbor_list", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("bug")))
    with pytest.raises(RuntimeError, match="bug"):  # other errors are not taken for out of memory
        other = atoms.copy()
        other.calc = mlff.MLFFCalculator(path, neighbors="device")
        other.get_forces()


def test_unknown_neighbors_choice(tmp_path):
    path = mlff.deploy(tiny_model(), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="neighbors must be 'auto', 'host' or 'device'"):
        mlff.MLFFCalculator(path, neighbors="gpu")
