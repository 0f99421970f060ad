"""LAMMPS (pair_style mlff) against the ASE calculator for the same model file, float64."""

import numpy as np
import pytest
from ase.build import bulk

import mlff
from mlff.lammps.single_point import lammps_evaluate
from mlff.testing import assert_results_close, calculator_results, small_molecule, triclinic_cell


def _ase(atoms, model_file):
    return calculator_results(atoms, model_file)


def _assert_agree(lmp, ref, rtol=1e-10):
    assert set(lmp) == set(ref)
    assert_results_close(lmp, ref, rtol)


def _orthogonal():
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 1, 1))
    atoms.numbers[[1, 6]] = 8
    atoms.rattle(0.1, seed=5)
    return atoms


def _tiny_cell():
    """2 atoms, cell far smaller than the ghost shell (num_layers * r_cut = 7 Å)."""
    atoms = bulk("Cu", "fcc", a=3.6).repeat((1, 1, 2))
    atoms.numbers[1] = 8
    atoms.positions[1] += [0.1, -0.1, 0.15]
    return atoms


def _compressed():
    """Pairs closer than their covalent-radius sums, where the ZBL pair repulsion acts."""
    atoms = bulk("Cu", "fcc", a=3.1, cubic=True).repeat((2, 1, 1))
    atoms.numbers[[1, 6]] = 8
    atoms.rattle(0.15, seed=7)
    return atoms


CASES = {
    "molecule": small_molecule(3),
    "compressed_pair_repulsion": _compressed(),
    "orthogonal": _orthogonal(),
    "triclinic": triclinic_cell(9),
    "cell_smaller_than_ghost_shell": _tiny_cell(),
}


@pytest.mark.parametrize("halo", ["exchange", "shell"])
@pytest.mark.parametrize("name", list(CASES))
def test_lammps_matches_ase(plugin, model_file, name, halo):
    atoms = CASES[name]
    out = lammps_evaluate(atoms, str(model_file), ["Cu", "O"], pair_style=f"pair_style mlff halo {halo}")
    _assert_agree(out, _ase(atoms, model_file))


def test_compressed_case_reaches_the_pair_repulsion(model_file):
    """The compressed case has pairs inside the covalent-radius sums, and the model file has the
    term: the agreement above covers it."""
    from ase.data import covalent_radii

    atoms = CASES["compressed_pair_repulsion"]
    i, j = np.triu_indices(len(atoms), 1)
    distances = atoms.get_all_distances(mic=True)[i, j]
    assert (distances < covalent_radii[atoms.numbers[i]] + covalent_radii[atoms.numbers[j]]).sum() >= 4
    assert mlff.load(model_file, compiled=False).metadata.config["pair_repulsion"] == "zbl"


def test_per_atom_sums(plugin, model_file):
    out = lammps_evaluate(CASES["triclinic"], str(model_file), ["Cu", "O"])
    np.testing.assert_allclose(out["energies"].sum(), out["energy"], rtol=1e-12)
    np.testing.assert_allclose(out["stresses"].sum(axis=0), out["stress"], atol=1e-12)


def test_type_order_does_not_matter(plugin, model_file):
    atoms = CASES["triclinic"]
    a = lammps_evaluate(atoms, str(model_file), ["Cu", "O"])
    b = lammps_evaluate(atoms, str(model_file), ["O", "Cu"])
    _assert_agree(a, b, rtol=1e-12)


def test_same_element_for_two_types(plugin, model_file):
    atoms = CASES["orthogonal"]
    ref = _ase(atoms, model_file)
    # split the Cu atoms over two LAMMPS types that both map to Cu

    elements = ["Cu", "O", "Cu"]
    symbols = atoms.get_chemical_symbols()
    out = _evaluate_with_types(atoms, model_file, elements, [1 if s == "Cu" and i % 2 else (2 if s == "O" else 3)
                                                             for i, s in enumerate(symbols)])
    np.testing.assert_allclose(out["energy"], ref["energy"], rtol=1e-12)
    np.testing.assert_allclose(out["forces"], ref["forces"], atol=1e-12)


def _evaluate_with_types(atoms, model_file, elements, types):
    from mlff.lammps.single_point import _setup_commands, to_lammps_frame
    from mlff.lammps.mpi import preload_mpi

    preload_mpi()
    import lammps

    frame, rotation = to_lammps_frame(atoms)
    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_list(_setup_commands(frame, elements))
        n = len(atoms)
        lmp.create_atoms(n, list(range(1, n + 1)), types, frame.positions.ravel().tolist())
        lmp.commands_list(["pair_style mlff", f"pair_coeff * * {model_file} {' '.join(elements)}", "run 0"])
        return {"energy": lmp.get_thermo("pe"),
                "forces": np.array(lmp.gather_atoms("f", 1, 3)).reshape(n, 3) @ rotation.T}
    finally:
        lmp.close()


def test_lammps_ignores_extra_heads(plugin, tmp_path):
    """A model with a dipole head and extra outputs runs in LAMMPS like any other."""
    from mlff.testing import tiny_model

    path = mlff.deploy(tiny_model(dipole=True, outputs={"polarizability": "1x0e+1x2e"}), tmp_path / "heads.pt")
    atoms = CASES["triclinic"]
    _assert_agree(lammps_evaluate(atoms, str(path), ["Cu", "O"]), _ase(atoms, path))


def test_centroid_stress_atom(plugin, model_file):
    """compute centroid/stress/atom gets the full per-atom virial (cvatom): its symmetric part is
    compute stress/atom, and both sum to the global virial."""
    from mlff.lammps.single_point import _setup_commands, to_lammps_frame
    from mlff.lammps.mpi import preload_mpi

    preload_mpi()
    import lammps

    atoms = CASES["triclinic"]
    frame, _ = to_lammps_frame(atoms)
    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_list(_setup_commands(frame, ["Cu", "O"]))
        n = len(atoms)
        lmp.create_atoms(n, list(range(1, n + 1)), [1 + (s == "O") for s in atoms.get_chemical_symbols()],
                         frame.positions.ravel().tolist())
        lmp.commands_list(["pair_style mlff", f"pair_coeff * * {model_file} Cu O",
                           "compute s all stress/atom NULL virial", "compute c all centroid/stress/atom NULL virial",
                           "compute p all pressure NULL virial", "thermo_style custom step c_p[1]", "run 0"])
        s = np.array(lmp.gather("c_s", 1, 6)).reshape(n, 6)
        c = np.array(lmp.gather("c_c", 1, 9)).reshape(n, 9)
        pxx = lmp.extract_compute("p", lammps.LMP_STYLE_GLOBAL, lammps.LMP_TYPE_VECTOR)[0]
    finally:
        lmp.close()
    symmetric = np.column_stack([c[:, 0], c[:, 1], c[:, 2], (c[:, 3] + c[:, 6]) / 2, (c[:, 4] + c[:, 7]) / 2,
                                 (c[:, 5] + c[:, 8]) / 2])
    np.testing.assert_allclose(symmetric, s, atol=1e-9 * np.abs(s).max())
    assert np.abs(c[:, 3] - c[:, 6]).max() > 0  # really the full, non-symmetrised tensor
    np.testing.assert_allclose(-c[:, 0].sum() / frame.get_volume(), pxx, rtol=1e-10)
