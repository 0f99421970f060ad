"""The torch cell list (mlff.data.neighbors_torch, MLFFCalculator's list on a GPU) gives the host
list's edges, with shifts that reproduce every edge vector, and the calculator gives the same
energy, forces and stress with either list; here on the CPU, where the test suite runs."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111
from ase.calculators.calculator import CalculatorError

import mlff
from mlff.data import neighbors_torch
from mlff.data.neighbors import neighbor_list
from mlff.testing import small_molecule, tiny_model, triclinic_cell


def _canonical(edge_index, edge_shift):
    rows = np.concatenate([edge_index.T.astype(np.float64), np.round(edge_shift, 6)], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def _structures():
    """name -> (atoms, r_cut): bulk as before, and what the host list also takes (slabs, wires,
    molecules, cells thinner than the cutoff, sparse structures, atoms beyond a free axis' cell)."""
    rng = np.random.default_rng(4)
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((4, 4, 4))
    cu.rattle(0.1, seed=1)
    unwrapped = cu.copy()
    unwrapped.positions += rng.normal(0.0, 20.0, (len(cu), 3))  # atoms far outside the cell
    skewed = cu.copy()
    skewed.set_cell(cu.cell.array @ np.array([[1.0, 0.3, 0.1], [0.0, 1.0, 0.2], [0.0, 0.0, 1.0]]), scale_atoms=True)
    on_faces = bulk("Cu", "sc", a=2.4).repeat((6, 6, 6))  # atoms exactly on the bins' faces
    clustered = cu.copy()
    clustered.positions[:20] = clustered.positions[0] + rng.normal(0, 0.8, (20, 3))
    slab = fcc111("Cu", size=(4, 4, 5), vacuum=8.0)  # periodic along a and b only
    slab.rattle(0.05, seed=5)
    skewed_slab = triclinic_cell(6, repeat=(3, 3, 2))  # a free axis that is not normal to the others
    skewed_slab.pbc = (True, False, True)
    skewed_slab.positions[:, 1] += rng.normal(0.0, 6.0, len(skewed_slab))  # beyond the cell along it
    wire = cu.copy()
    wire.pbc = (False, False, True)
    thin = triclinic_cell(7)  # 8 atoms, faces about 3.7 Å apart: each atom sees images two cells away
    tiny = bulk("Cu", "fcc", a=3.61)  # one atom, faces 2.1 Å apart
    two_molecules = small_molecule(1) + small_molecule(2)  # 300 Å apart: sparse bins
    two_molecules.positions[len(two_molecules) // 2:] += [300.0, -150.0, 40.0]
    molecule_in_cell = small_molecule(3)
    molecule_in_cell.cell = np.diag([2.0, 3.0, 2.5])  # a cell far smaller than the molecule, not periodic
    flat = small_molecule(4)
    flat.positions[:, 2] = 0.0  # no extent along z
    return {"fcc": (cu, 4.0), "unwrapped": (unwrapped, 4.0), "skewed": (skewed, 4.0),
            "triclinic": (triclinic_cell(10, repeat=(4, 4, 4)), 4.0), "on_faces": (on_faces, 4.0),
            "crowded_bin": (clustered, 4.0), "slab": (slab, 5.0), "skewed_slab": (skewed_slab, 4.5),
            "wire": (wire, 4.0), "thin_cell": (thin, 8.0), "one_atom_cell": (tiny, 5.0),
            "two_molecules": (two_molecules, 4.0), "molecule_in_small_cell": (molecule_in_cell, 4.0),
            "flat_molecule": (flat, 4.0), "single_atom": (Atoms("Cu", positions=[[1.0, 2.0, 3.0]]), 4.0)}


@pytest.mark.parametrize("name", list(_structures()))
@pytest.mark.parametrize("chunk", [1 << 10, 1 << 22])
def test_same_edges_as_the_host_list(name, chunk):
    atoms, r_cut = _structures()[name]
    index, shift = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, r_cut)
    t_index, t_shift, t_lengths = neighbors_torch.neighbor_list(
        torch.tensor(atoms.positions), torch.tensor(atoms.cell.array), r_cut, atoms.pbc, max_candidates=chunk)
    assert t_index.dtype == torch.int64 and t_shift.dtype == torch.float64
    assert t_index.shape[1] == index.shape[1]
    np.testing.assert_allclose(_canonical(t_index.numpy(), t_shift.numpy()), _canonical(index, shift), atol=1e-6)
    vectors = atoms.positions[t_index[1]] - atoms.positions[t_index[0]] + t_shift.numpy()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), t_lengths.numpy(), rtol=0, atol=1e-12)
    if name == "thin_cell":
        assert (np.abs(np.linalg.solve(atoms.cell.array.T, t_shift.numpy().T)) > 1.5).any()  # images 2 cells away
    if name == "single_atom":
        assert t_index.shape == (2, 0)


def test_sparse_structures_store_occupied_bins_only():
    """Two atoms 1e5 Å apart would need 1e13 bins of a dense table; the list holds two."""
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.0e5, 1.0e5, 1.0e5], [1.0e5 + 1.0, 1.0e5, 1.0e5]], dtype=torch.float64)
    index, shift, lengths = neighbors_torch.neighbor_list(pos, torch.zeros(3, 3, dtype=torch.float64), 4.0,
                                                          (False, False, False))
    assert sorted(map(tuple, index.T.tolist())) == [(1, 2), (2, 1)]
    assert torch.equal(shift, torch.zeros(2, 3, dtype=torch.float64))
    np.testing.assert_allclose(lengths.numpy(), [1.0, 1.0], rtol=0, atol=1e-9)


@pytest.mark.parametrize("structure", ["bulk", "slab", "molecule"])
def test_calculator_gives_the_same_results_with_either_list(tmp_path, structure):
    path = mlff.deploy(tiny_model(), tmp_path / "model.pt")
    atoms = triclinic_cell(10, repeat=(4, 4, 4))
    if structure == "slab":
        atoms.pbc = (True, True, False)
    elif structure == "molecule":
        atoms = small_molecule(2)
    results = []
    for where in ("host", "device"):
        calc = mlff.MLFFCalculator(path, neighbors=where)
        copy = atoms.copy()
        copy.calc = calc
        got = [copy.get_potential_energy(), copy.get_forces(), copy.get_potential_energies()]
        if structure == "bulk":
            got += [copy.get_stress(), copy.get_stresses()]
        results.append(got)
        assert calc._graph["edge_index"].shape[1] > 0
        assert calc.device_neighbors is (where == "device")
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
