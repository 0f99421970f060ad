import os

import ase
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from mlff.data.readers import LabelKeys, describe, read_frames

VASP_DATA = os.path.join(os.path.dirname(ase.__file__), "test", "testdata", "vasp")


def _labelled(seed=0):
    rng = np.random.default_rng(seed)
    atoms = Atoms("Cu2O", positions=rng.uniform(0, 4, (3, 3)) + [[0, 0, 0], [2, 0, 0], [0, 2, 0]],
                  cell=np.eye(3) * 5.0, pbc=True)
    energy, forces, stress = -3.5 - seed, rng.normal(size=(3, 3)), rng.normal(size=(3, 3)) * 0.01
    return atoms, energy, forces, (stress + stress.T) / 2


def test_extxyz_with_custom_keys(tmp_path):
    images = []
    for seed in range(3):
        atoms, e, f, s = _labelled(seed)
        atoms.info["REF_energy"] = e
        atoms.arrays["REF_forces"] = f
        atoms.info["REF_stress"] = s
        images.append(atoms)
    path = tmp_path / "data.extxyz"
    write(path, images)
    frames = read_frames(str(path), LabelKeys("REF_energy", "REF_forces", "REF_stress"))
    assert [f.source for f in frames] == [f"{path}:{i}" for i in range(3)]
    for frame, seed in zip(frames, range(3)):
        _, e, f, s = _labelled(seed)
        assert frame.energy == pytest.approx(e)
        np.testing.assert_allclose(frame.forces, f, atol=1e-7)
        np.testing.assert_allclose(frame.stress, s, atol=1e-7)
    assert describe(frames)["elements"] == {"Cu": 6, "O": 3}


def test_extxyz_standard_keys_and_missing_stress(tmp_path):
    atoms, e, f, _ = _labelled()
    atoms.pbc = False
    atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f)
    write(tmp_path / "mol.extxyz", atoms)
    (frame,) = read_frames(str(tmp_path / "mol.extxyz"))
    assert frame.energy == pytest.approx(e) and frame.stress is None
    np.testing.assert_allclose(frame.forces, f, atol=1e-7)


def test_vasp_outcar():
    frames = read_frames(os.path.join(VASP_DATA, "OUTCAR_example_1"))
    assert len(frames) >= 1
    frame = frames[0]
    assert frame.energy is not None and frame.forces.shape == (len(frame.atoms), 3)
    assert frame.stress.shape == (3, 3) and np.all(np.isfinite(frame.stress))


@pytest.mark.parametrize("energy_key", ["energy", "free_energy"])
def test_vasprun_pymatgen_matches_ase(energy_key):
    """pymatgen's Vasprun (stress in kBar, VASP sign) and ASE read the same numbers."""
    path = os.path.join(VASP_DATA, "vasprun_pstress.xml")
    keys = LabelKeys(energy_key=energy_key)
    by_ase = read_frames(path, keys, reader="ase")
    by_pymatgen = read_frames(path, keys, reader="pymatgen")
    assert len(by_ase) == len(by_pymatgen) >= 1
    for a, p in zip(by_ase, by_pymatgen):
        assert p.energy == pytest.approx(a.energy, abs=1e-6)
        np.testing.assert_allclose(p.forces, a.forces, atol=1e-6)
        np.testing.assert_allclose(p.stress, a.stress, atol=1e-8)
        assert np.abs(p.stress).max() > 0.01  # a real, non-zero stress (PSTRESS run)
        np.testing.assert_allclose(p.atoms.positions, a.atoms.positions, atol=1e-6)


def test_in_memory_ase_and_pymatgen():
    from pymatgen.core import Lattice, Structure

    atoms, e, f, s = _labelled()
    atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
    structure = Structure(Lattice.cubic(4.0), ["Cu", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]],
                          site_properties={"forces": [[0.1, 0, 0], [-0.1, 0, 0]]},
                          properties={"energy": -7.0})
    frames = read_frames([atoms, structure])
    assert frames[0].energy == pytest.approx(e) and frames[0].stress.shape == (3, 3)
    assert frames[1].energy == -7.0 and frames[1].forces.shape == (2, 3) and frames[1].stress is None
    assert frames[1].source == "memory:1"
