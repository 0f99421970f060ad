"""A committee inside LAMMPS (pair_coeff * * a.pt b.pt c.pt <elements>): the first model drives,
the spread of all of them is the Python committee's (MLFFCalculator([a, b, c])) to 1e-10 on 1-4
MPI ranks and both halo modes; committee_every, out_file, fix halt and the errors."""

import numpy as np
import pytest
from ase.build import fcc100

import mlff
from mlff.lammps.single_point import lammps_evaluate, mpi_evaluate
from mlff.testing import tiny_model, triclinic_cell

ELEMENTS = ["Cu", "O"]


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Three float64 models of the same architecture, different seeds (as a committee is trained)."""
    folder = tmp_path_factory.mktemp("committee")
    paths = []
    for seed in range(3):
        paths.append(folder / f"seed{seed}.pt")
        mlff.deploy(tiny_model(seed=seed), paths[-1])
    return [str(p) for p in paths]


def _coeffs(paths):
    return [f"pair_coeff * * {' '.join(paths)} {' '.join(ELEMENTS)}"]


def _python(atoms, paths):
    calc = mlff.MLFFCalculator(paths)
    atoms = atoms.copy()
    atoms.calc = calc
    atoms.get_potential_energy()
    return calc.results


def _assert_spread(lmp, ref, relative_level=1.0):
    std = ref["forces_std"]
    np.testing.assert_allclose(lmp["forces_std"], std, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(lmp["deviation"][:4], [std.max(), std.min(), std.mean(), ref["energy_std"]],
                               rtol=1e-10, atol=1e-13)
    relative = std / (np.linalg.norm(ref["forces"], axis=1) + relative_level)
    np.testing.assert_allclose(lmp["forces_std_relative"], relative, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(lmp["deviation"][4], relative.max(), rtol=1e-10)


def _slab():
    """A vacuum slab: with several ranks along z, some subdomains hold no atoms."""
    atoms = fcc100("Cu", size=(2, 2, 3), vacuum=12.0, a=3.6)
    atoms.numbers[[0, 5]] = 8
    atoms.rattle(0.05, seed=1)
    atoms.pbc = True
    atoms.info.clear()
    return atoms


@pytest.mark.parametrize("halo", ["exchange", "exchange graph device", "exchange graph cells", "shell"])
def test_committee_spread_equals_python(plugin, members, halo):
    atoms = triclinic_cell(6)
    lmp = lammps_evaluate(atoms, members[0], ELEMENTS, f"pair_style mlff halo {halo}",
                          pair_coeffs=_coeffs(members), deviation=True)
    ref = _python(atoms, members)
    assert ref["max_forces_std"] > 1e-3  # the members differ: the comparison is not of zeros
    _assert_spread(lmp, ref)
    # the first model alone drives: energy, forces and virial are its own
    alone = lammps_evaluate(atoms, members[0], ELEMENTS, f"pair_style mlff halo {halo}")
    for key in ("energy", "energies", "forces", "stress", "stresses"):
        np.testing.assert_allclose(lmp[key], alone[key], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("ranks,case", [(2, "triclinic"), (3, "slab"), (4, "slab")])
def test_committee_on_ranks(plugin, members, tmp_path, ranks, case):
    atoms = triclinic_cell(7, repeat=(2, 1, 1)) if case == "triclinic" else _slab()
    out, read_back = mpi_evaluate(atoms, members[0], ranks, tmp_path, ELEMENTS, pair_coeffs=_coeffs(members),
                                  deviation=True)
    _assert_spread(out, _python(read_back, members))


def _md(members, commands, steps, pair_style="pair_style mlff", paths=None):
    """A short NVE run of the triclinic cell; returns LAMMPS after it."""
    from mlff.lammps.mpi import preload_mpi
    from mlff.lammps.single_point import _setup_commands, to_lammps_frame

    preload_mpi()
    import lammps

    atoms = triclinic_cell(6)
    frame, _ = to_lammps_frame(atoms)
    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    lmp.commands_list(_setup_commands(frame, ELEMENTS))
    lmp.create_atoms(len(atoms), list(range(1, len(atoms) + 1)), [ELEMENTS.index(s) + 1 for s in
                                                                   atoms.get_chemical_symbols()],
                     frame.positions.ravel().tolist())
    lmp.commands_list([pair_style, *_coeffs(paths or members), "velocity all create 600 12 dist gaussian",
                       "fix nve all nve", "timestep 0.001", *commands, f"run {steps}"])
    return lmp


def test_every_n_steps_and_out_file(plugin, members, tmp_path):
    out = tmp_path / "devi.out"
    lmp = _md(members, ["fix devi all pair 5 mlff force_deviation 0"], 10,
              pair_style=f"pair_style mlff committee_every 5 out_file {out}")
    x_committee = np.array(lmp.gather_atoms("x", 1, 3))
    lmp.close()
    rows = np.loadtxt(out)
    np.testing.assert_array_equal(rows[:, 0], [0, 5, 10])  # evaluated every 5 steps, one line each
    assert (rows[:, 1] >= rows[:, 3]).all() and (rows[:, 3] >= rows[:, 2]).all() and (rows[:, 1] > 0).all()
    # the committee never changes the dynamics: the same trajectory as the first model alone
    lmp = _md(members, [], 10, paths=members[:1])
    np.testing.assert_array_equal(np.array(lmp.gather_atoms("x", 1, 3)), x_committee)
    lmp.close()


def test_fix_halt_stops_on_uncertainty(plugin, members):
    lmp = _md(members, ["compute dev all pair mlff", "variable maxdev equal c_dev[1]",
                        "fix stop all halt 2 v_maxdev > 1e-6 error continue"], 50)
    assert lmp.extract_global("ntimestep") == 2  # stopped at the first check
    lmp.close()


def _expect_error(members, commands, pattern, paths=None, pair_style="pair_style mlff"):
    with pytest.raises(Exception, match=pattern):
        lmp = _md(members, commands, 4, pair_style=pair_style, paths=paths)
        lmp.close()


def test_reading_deviation_between_evaluations_is_an_error(plugin, members):
    _expect_error(members, ["fix devi all pair 2 mlff force_deviation 0"], "make the fix's interval a multiple",
                  pair_style="pair_style mlff committee_every 4")


def test_deviation_without_committee_is_an_error(plugin, members):
    _expect_error(members, ["fix devi all pair 1 mlff force_deviation 0"], "is the spread of a committee",
                  paths=members[:1])


def test_members_must_share_species_and_cutoff(plugin, members, tmp_path):
    other = tmp_path / "other_cutoff.pt"
    mlff.deploy(tiny_model(r_cut=3.0), other)
    _expect_error(members, [], "a committee needs models of the same species and cutoff",
                  paths=[members[0], str(other)])
    swapped = tmp_path / "swapped_species.pt"
    mlff.deploy(tiny_model(species=("O", "Cu")), swapped)
    _expect_error(members, [], "a committee needs models of the same species and cutoff",
                  paths=[members[0], str(swapped)])
