import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_stress
from ase.filters import FrechetCellFilter
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from ase.stress import full_3x3_to_voigt_6_stress

import mlff
from mlff.testing import evaluate, small_molecule, tiny_model, triclinic_cell


@pytest.fixture(scope="module")
def eager():
    return tiny_model()


def test_matches_eager_model(model_file, eager):
    atoms = triclinic_cell(20)
    atoms.calc = mlff.MLFFCalculator(model_file)
    ref = evaluate(eager, atoms)
    np.testing.assert_allclose(atoms.get_potential_energy(), ref["energy"], rtol=1e-12)
    np.testing.assert_allclose(atoms.get_potential_energies(), ref["atomic_energy"], atol=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), ref["forces"], atol=1e-12)
    np.testing.assert_allclose(atoms.get_stress(), full_3x3_to_voigt_6_stress(ref["stress"]), atol=1e-12)
    np.testing.assert_allclose(atoms.get_stresses().sum(axis=0), atoms.get_stress(), atol=1e-12)
    np.testing.assert_allclose(atoms.get_stress(), calculate_numerical_stress(atoms, eps=1e-5), atol=1e-8)


def test_molecule_has_no_stress(model_file):
    atoms = small_molecule()
    atoms.calc = mlff.MLFFCalculator(model_file)
    assert np.isfinite(atoms.get_potential_energy())
    with pytest.raises(PropertyNotImplementedError, match="periodic in all three"):
        atoms.get_stress()


def test_neighbour_list_rebuilt_only_on_change(model_file, monkeypatch):
    atoms = triclinic_cell(21)
    calc = mlff.MLFFCalculator(model_file)
    atoms.calc = calc
    builds = []
    original = calc._build_graph
    monkeypatch.setattr(calc, "_build_graph", lambda a: builds.append(1) or original(a))
    atoms.get_potential_energy()
    atoms.get_forces()
    atoms.get_stress()
    assert len(builds) == 1
    atoms.positions[0] += 0.01
    atoms.get_forces()
    assert len(builds) == 2


def test_unknown_element(model_file):
    atoms = Atoms("CuZn", positions=[[0, 0, 0], [2, 0, 0]])
    atoms.calc = mlff.MLFFCalculator(model_file)
    with pytest.raises(ValueError, match=r"\['Zn'\] not in the model, which knows \['Cu', 'O'\]"):
        atoms.get_potential_energy()


def test_empty_structure(model_file):
    atoms = Atoms()
    atoms.calc = mlff.MLFFCalculator(model_file)
    with pytest.raises(ValueError, match="no atoms"):
        atoms.get_potential_energy()


def test_cell_relaxation_and_md(model_file):
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 1, 1))
    atoms.numbers[0] = 8
    atoms.rattle(0.05, seed=3)
    atoms.calc = mlff.MLFFCalculator(model_file)
    e0 = atoms.get_potential_energy()
    opt = BFGS(FrechetCellFilter(atoms), logfile=None)
    opt.run(fmax=1e-3, steps=300)
    assert atoms.get_potential_energy() < e0
    assert np.abs(atoms.get_forces()).max() < 1e-3
    assert np.abs(atoms.get_stress()).max() < 1e-3

    atoms.rattle(0.05, seed=4)
    atoms.set_momenta(np.zeros((len(atoms), 3)))
    dyn = VelocityVerlet(atoms, timestep=1.0 * 0.09822694788464063)  # 1 fs in ASE time units
    energies = []
    dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=1)
    dyn.run(50)
    assert np.ptp(energies) < 1e-3


def test_pymatgen_predict(model_file):
    from pymatgen.core import Lattice, Molecule, Structure

    calc = mlff.MLFFCalculator(model_file)
    structure = Structure(Lattice.cubic(3.7), ["Cu", "Cu", "O", "Cu"],
                          [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.52]])
    result = mlff.predict(structure, calc)
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = mlff.MLFFCalculator(model_file)
    np.testing.assert_allclose(result["energy"], atoms.get_potential_energy(), rtol=1e-12)
    np.testing.assert_allclose(result["stress"], atoms.get_stress(), atol=1e-12)
    assert result["forces"].shape == (4, 3)

    molecule = Molecule(["Cu", "O"], [[0, 0, 0], [0, 0, 1.9]])
    result = mlff.predict(molecule, model_file)
    assert "stress" not in result and result["forces"].shape == (2, 3)
    np.testing.assert_allclose(result["forces"][0], -result["forces"][1], atol=1e-12)


def test_running_a_model_file_does_not_import_the_model_code(model_file):
    """The file carries its code: loading and evaluating it needs torch, not e3nn and the layers
    (whose import pulls in torch._dynamo, about a second more at every start of a script)."""
    import subprocess
    import sys

    script = ("import sys; import mlff; from ase.build import bulk\n"
              "atoms = bulk('Cu', 'fcc', a=3.6, cubic=True)\n"
              f"atoms.calc = mlff.MLFFCalculator({str(model_file)!r})\n"
              "atoms.get_potential_energy(); atoms.get_stress()\n"
              "print(sorted(m for m in ('e3nn', 'torch._dynamo', 'mlff.model', 'mlff.nn') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    from mlff.modelfile import deploy  # still there, imported when first used
    assert callable(deploy)
