"""pair_style mlff across MPI ranks, both halo modes and every place of the graph (graph host: built
every step; graph device: LAMMPS's list kept as candidates between re-neighbourings, edges selected
each step; graph cells: the candidates found by a cell list on the device, no LAMMPS list): 1-4
ranks give the ASE calculator's energy, forces, virial, per-atom energies and per-atom virials
(float64), also after atoms migrate; the three graphs give the same trajectory; `chunk N` (layers in
chunks of atoms, recomputed for the forces) gives the same results."""

import numpy as np
import pytest
from ase.build import bulk, fcc100

from mlff.lammps.single_point import mpi_evaluate, mpi_evaluate_many
from mlff.testing import assert_results_close, calculator_results, small_molecule, triclinic_cell


_REFERENCE = {}


def _ase(atoms, model_file):
    """The ASE calculator's results for ``atoms`` (those of one case are computed once: the ranks
    read every case exactly)."""
    key = (str(model_file),) + tuple(a.tobytes() for a in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc))
    if key not in _REFERENCE:
        _REFERENCE[key] = calculator_results(atoms, model_file)
    return _REFERENCE[key]


def _assert_agree(lmp, ref, rtol=1e-10, label=""):
    try:
        assert_results_close(lmp, ref, rtol)
    except AssertionError as error:
        raise AssertionError(f"{label}: {error}" if label else str(error)) from None


def _mpi_run(atoms, model_file, tmp_path, ranks, halo, md_steps=0):
    return mpi_evaluate(atoms, str(model_file), ranks, tmp_path, ["Cu", "O"], f"pair_style mlff halo {halo}",
                        md_steps=md_steps)


def _mpi_runs(atoms, model_file, tmp_path, ranks, halos, md_steps=0):
    """Each halo mode in turn, in one run of the ranks (one start-up of Python, MPI and LAMMPS)."""
    results, structures = mpi_evaluate_many([atoms], str(model_file), ranks, tmp_path, ["Cu", "O"],
                                            [f"pair_style mlff halo {halo}" for halo in halos], md_steps=md_steps)
    return results[0], structures[0]


def _tiny_cell():
    atoms = bulk("Cu", "fcc", a=3.6).repeat((1, 1, 2))  # 2 atoms, far smaller than the cutoff sphere
    atoms.numbers[1] = 8
    atoms.positions[1] += [0.1, -0.1, 0.15]
    return atoms


def _slab():
    """A vacuum slab: with several ranks along z, some subdomains hold no atoms."""
    atoms = fcc100("Cu", size=(2, 2, 3), vacuum=12.0, a=3.6)
    atoms.numbers[[0, 5]] = 8
    atoms.rattle(0.05, seed=1)
    atoms.pbc = True
    return atoms


def _molecule_in_big_box():
    atoms = small_molecule(4)
    atoms.set_cell([30.0, 30.0, 30.0])
    atoms.positions += 3.0
    atoms.pbc = True
    return atoms


CASES = {
    "triclinic_supercell": triclinic_cell(10, repeat=(2, 1, 1)),
    "cell_smaller_than_cutoff": _tiny_cell(),
    "vacuum_slab": _slab(),
    "molecule_in_big_box": _molecule_in_big_box(),
}


def assert_cases_agree(names, pair_styles, model_file, tmp_path, ranks):
    """The cases ``names`` with each of ``pair_styles``, in one run of the ranks, equal ASE; every
    disagreement is named (case and pair style)."""
    results, structures = mpi_evaluate_many([CASES[name] for name in names], str(model_file), ranks, tmp_path,
                                            ["Cu", "O"], pair_styles)
    failures = []
    for name, outs, atoms in zip(names, results, structures):
        for style, out in zip(pair_styles, outs):
            try:
                _assert_agree(out, _ase(atoms, model_file), label=f"{name}, {style}")
            except AssertionError as error:
                failures.append(str(error))
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_exchange_matches_ase_on_any_number_of_ranks(plugin, model_file, tmp_path, ranks):
    styles = [f"pair_style mlff halo exchange graph {graph}" for graph in ("host", "device", "cells")]
    assert_cases_agree(list(CASES), styles, model_file, tmp_path, ranks)


@pytest.mark.parametrize("ranks", [1, 3])
def test_shell_matches_ase(plugin, model_file, tmp_path, ranks):
    assert_cases_agree(["triclinic_supercell", "vacuum_slab"], ["pair_style mlff halo shell"], model_file, tmp_path,
                       ranks)


def test_exact_after_atoms_migrate(plugin, model_file, tmp_path):
    """40 NVE steps on 3 ranks, 800 K plus a drift of 1.6 Å in all (atoms cross subdomain borders,
    neighbour lists are rebuilt), then the forces and virials at the final positions equal ASE's;
    in each halo mode (each from the same start)."""
    atoms = triclinic_cell(10, repeat=(2, 1, 1))
    halos = ["exchange graph host", "exchange graph device", "exchange graph cells", "shell"]
    outs, start = _mpi_runs(atoms, model_file, tmp_path, 3, halos, md_steps=40)
    for halo, out in zip(halos, outs):
        moved = start.copy()
        moved.positions = out["positions"]
        drift = (moved.get_scaled_positions() - start.get_scaled_positions() + 0.5) % 1.0 - 0.5
        assert (drift @ moved.cell.array)[:, 0].mean() > 1.0, halo  # the atoms drifted along x
        _assert_agree(out, _ase(moved, model_file), label=halo)


@pytest.mark.parametrize("ranks", [1, 3])
def test_device_graph_follows_the_host_trajectory(plugin, model_file, tmp_path, ranks):
    """40 NVE steps (800 K, drift): LAMMPS rebuilds its lists a few times, and in the steps between,
    pairs enter and leave r_cut; the graph kept on the device must select them as the host does
    every step, so the trajectories agree to round-off; so must the candidates the cell list finds
    on the device (graph cells)."""
    atoms = triclinic_cell(10, repeat=(2, 1, 1))
    graphs = ["host", "device", "cells"]
    (host, *kept), _ = _mpi_runs(atoms, model_file, tmp_path, ranks, [f"exchange graph {g}" for g in graphs],
                                 md_steps=40)
    for graph, out in zip(graphs[1:], kept):
        np.testing.assert_allclose(out["positions"], host["positions"], rtol=0, atol=1e-10, err_msg=graph)
        _assert_agree(out, host, label=graph)


@pytest.mark.parametrize("name, halo, ranks", [("triclinic_supercell", "exchange graph host", 1),
                                               ("vacuum_slab", "exchange graph device", 3),
                                               ("molecule_in_big_box", "exchange graph cells", 2),
                                               ("triclinic_supercell", "shell", 2)])
def test_chunked_matches_ase(plugin, model_file, tmp_path, name, halo, ranks):
    """pair_style mlff ... chunk 5: each layer on 5 local atoms at a time with no autograd graph,
    recomputed chunk by chunk for the forces (bounded memory); the same results as ASE, with empty
    subdomains (the slab on 3 ranks) and in both halo modes."""
    out, atoms = _mpi_run(CASES[name], model_file, tmp_path, ranks, f"{halo} chunk 5")
    _assert_agree(out, _ase(atoms, model_file))


def test_cell_list_in_a_mostly_empty_box(plugin, model_file, tmp_path):
    """graph cells bins the atoms over their bounding box; where bins would far outnumber the atoms
    (two dimers in a 120 Å box, one at a corner, whose ghosts sit at all eight corners: about 10^5
    bins of half the cutoff for some 20 atoms) it makes fewer, thicker ones, which must still find
    every pair: the results equal ASE's."""
    from ase import Atoms

    atoms = Atoms("CuOCuO", positions=[[0.5, 0.6, 0.4], [119.2, 1.1, 119.5], [60.0, 60.0, 60.0], [61.3, 60.4, 59.2]],
                  cell=[120.0, 120.0, 120.0], pbc=True)
    out, structure = _mpi_run(atoms, model_file, tmp_path, 1, "exchange graph cells")
    _assert_agree(out, _ase(structure, model_file))
    assert np.abs(out["forces"][:2]).max() > 1e-3  # the dimer across the corner interacts
