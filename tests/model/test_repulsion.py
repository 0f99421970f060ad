"""The fixed ZBL pair repulsion (ModelConfig.pair_repulsion): its energy is the published
formula under a smooth switch, its forces and stress are exact derivatives, every evaluation path
of a model file (whole, chunked, halo) carries it, and a model repels where no data were."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.data import covalent_radii

import mlff
from mlff.data import SpeciesMap, from_ase
from mlff.model import ModelConfig
from mlff.modelfile.halo import halo_evaluate, image_exchange
from mlff.testing import (evaluate, finite_difference_forces, finite_difference_stress, fold_ghosts, image_halo,
                          tiny_model)


def _zbl(z1, z2, r):
    """Ziegler-Biersack-Littmark universal repulsion (eV), r in Å, written out independently."""
    a = 0.46850 / (z1 ** 0.23 + z2 ** 0.23)  # 0.8854 Bohr, as LAMMPS's pair_style zbl rounds it
    x = r / a
    phi = (0.18175 * np.exp(-3.1998 * x) + 0.50986 * np.exp(-0.94229 * x) + 0.28022 * np.exp(-0.4029 * x)
           + 0.02817 * np.exp(-0.20162 * x))
    return 14.399645 * z1 * z2 / r * phi


def _switch(x, p=6):
    return np.where(x < 1, 1 - (p + 1) * (p + 2) / 2 * x ** p + p * (p + 2) * x ** (p + 1)
                    - p * (p + 1) / 2 * x ** (p + 2), 0.0)


def _pair(species, with_zbl):
    return tiny_model(species, seed=3, pair_repulsion="zbl" if with_zbl else "none")


def _compressed_cell():
    """Al and Cu packed to pairs of 1.6-2.4 Å, inside their covalent-radius sums (2.42-2.64 Å)."""
    rng = np.random.default_rng(5)
    atoms = bulk("Al", "fcc", a=3.0, cubic=True)
    atoms.numbers[[1, 2]] = 29
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.05 * rng.standard_normal((3, 3))), scale_atoms=True)
    atoms.positions += 0.15 * rng.standard_normal(atoms.positions.shape)
    return atoms


@pytest.mark.parametrize("pair, r", [(("Al", "Al"), 0.5), (("Al", "Al"), 1.75), (("Al", "Al"), 2.3),
                                     (("Al", "Cu"), 1.2), (("Cu", "Cu"), 2.6)])
def test_energy_is_zbl_under_the_switch(pair, r):
    """Same weights with and without the term: the dimer energies differ by ZBL x switch, and
    nothing beyond the covalent-radius sum."""
    species = sorted(set(pair))
    dimer = Atoms(pair, positions=[[0, 0, 0], [0, 0, r]])
    with_zbl, without = _pair(species, True), _pair(species, False)
    z1, z2 = dimer.numbers
    r_max = covalent_radii[z1] + covalent_radii[z2]
    expected = _zbl(z1, z2, r) * _switch(r / r_max)
    got = float(evaluate(with_zbl, dimer)["energy"] - evaluate(without, dimer)["energy"])
    assert expected > 1e-4
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    far = dimer.copy()
    far.positions[1, 2] = r_max + 0.05
    np.testing.assert_allclose(float(evaluate(with_zbl, far)["energy"]), float(evaluate(without, far)["energy"]),
                               rtol=0, atol=1e-12)


def test_a_given_radius_switches_the_term_off_there(tmp_path):
    """pair_repulsion_radii: the listed pair switches off at its radius (here inside the covalent
    sum), the others at the covalent sum; the model file keeps the radii."""
    radii = {"Cu-Al": 1.9}  # written either way round
    with_zbl = tiny_model(["Al", "Cu"], seed=3, pair_repulsion="zbl", pair_repulsion_radii=radii)
    without = _pair(["Al", "Cu"], False)
    assert with_zbl.config.pair_repulsion_radii == {"Al-Cu": 1.9}
    for pair, r, r_max in ((("Al", "Cu"), 1.5, 1.9), (("Al", "Cu"), 2.0, 1.9), (("Al", "Al"), 2.0, 2.42),
                           (("Cu", "Cu"), 2.0, 2.64)):
        dimer = Atoms(pair, positions=[[0, 0, 0], [0, 0, r]])
        z1, z2 = dimer.numbers
        assert r_max == pytest.approx(radii.get("-".join(sorted(pair, reverse=True)), covalent_radii[z1] + covalent_radii[z2]))
        expected = _zbl(z1, z2, r) * _switch(r / r_max)
        got = float(evaluate(with_zbl, dimer)["energy"] - evaluate(without, dimer)["energy"])
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
        assert (expected > 1e-4) == (r < r_max)
    deployed = mlff.load(mlff.deploy(with_zbl, tmp_path / "m.pt"), compiled=False)
    assert deployed.metadata.config["pair_repulsion_radii"] == {"Al-Cu": 1.9}
    atoms = _compressed_cell()
    calc = mlff.MLFFCalculator(deployed, min_distance=0.0)
    atoms.calc = calc
    np.testing.assert_allclose(atoms.get_potential_energy(), float(evaluate(with_zbl, atoms)["energy"]), rtol=1e-12)


@pytest.mark.parametrize("radii, message", [({"C-Xx": 1.0}, "not an element pair"), ({"CH": 1.0}, "not an element pair"),
                                            ({"C-H": 0.0}, "positive distance"), ({"C-H": "far"}, "positive distance"),
                                            ({"C-H": 1.0, "H-C": 1.1}, "twice"), ("covalent", "neither a mapping")])
def test_bad_radii_are_named(radii, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(pair_repulsion_radii=radii)


def test_radii_from_data_need_training():
    """``data`` is resolved by training from its frames; a model built without it says so."""
    assert ModelConfig.from_dict({"pair_repulsion_radii": "data"}).pair_repulsion_radii == "data"
    with pytest.raises(ValueError, match="set by training"):
        tiny_model(["Al"], pair_repulsion_radii="data")


def test_short_range_is_repulsive():
    """Two atoms pushed together where no data could have been: the energy rises steeply and the
    force pushes them apart, whatever the (random) learned part does."""
    model = _pair(["Al"], True)
    energies, forces = [], []
    for r in (0.6, 0.9, 1.2, 1.5):
        out = evaluate(model, Atoms("Al2", positions=[[0, 0, 0], [0, 0, r]]))
        energies.append(float(out["energy"]))
        forces.append(float(out["forces"][1, 2]))
    assert all(a > b for a, b in zip(energies, energies[1:]))
    assert min(forces) > 1.0  # eV/Å, along +z on the upper atom


def test_forces_and_stress_are_derivatives():
    model = _pair(["Al", "Cu"], True)
    atoms = _compressed_cell()
    out = evaluate(model, atoms)
    plain = evaluate(_pair(["Al", "Cu"], False), atoms)
    assert abs(float(out["energy"] - plain["energy"])) > 0.1  # the term is at work here
    energy = lambda a: float(evaluate(model, a)["energy"])
    np.testing.assert_allclose(out["forces"], finite_difference_forces(energy, atoms), atol=1e-6)
    np.testing.assert_allclose(out["stress"], finite_difference_stress(energy, atoms), atol=1e-7)
    np.testing.assert_allclose(out["atomic_energy"].sum(), out["energy"], rtol=1e-12)
    np.testing.assert_allclose(out["atomic_virial"].sum(axis=0), out["virial"], atol=1e-10)


def test_model_file_paths_agree(tmp_path):
    """The scripted file's whole, chunked and halo evaluations carry the term identically."""
    model = _pair(["Al", "Cu"], True)
    atoms = _compressed_cell().repeat((2, 1, 1))
    deployed = mlff.load(mlff.deploy(model, tmp_path / "m.pt"), compiled=False)
    data = from_ase(atoms, SpeciesMap(deployed.species), deployed.r_cut)
    args = (data["positions"], data["edge_index"], data["edge_shift"], data["species"], len(atoms))
    whole = deployed(*args)
    eager = evaluate(model, atoms)
    np.testing.assert_allclose(whole["energy"].item(), float(eager["energy"]), rtol=1e-12)
    np.testing.assert_allclose(whole["forces"].numpy(), eager["forces"], atol=1e-10)
    for chunk in (3, 10_000):
        chunked = deployed(*args, chunk_atoms=chunk)
        for name in ("energy", "atomic_energy", "forces", "virial"):
            torch.testing.assert_close(chunked[name], whole[name], rtol=1e-12, atol=1e-10)
    positions, edge_index, species, owner, n = image_halo(atoms, deployed.species, deployed.r_cut)
    forward, reverse = image_exchange(owner, n)
    for chunk in (0, 5):
        halo = halo_evaluate(deployed.module, positions, edge_index, species, n, forward, reverse, chunk)
        np.testing.assert_allclose(halo["energy"].item(), whole["energy"].item(), rtol=1e-12)
        np.testing.assert_allclose(halo["atomic_energy"].numpy(), whole["atomic_energy"].numpy(), atol=1e-10)
        np.testing.assert_allclose(fold_ghosts(halo["forces"].numpy(), owner.numpy(), n), whole["forces"].numpy(),
                                   atol=1e-10)
        np.testing.assert_allclose(halo["virial"].numpy(), whole["virial"].numpy(), atol=1e-10)


def test_saved_configs_without_the_option_have_none():
    """A model saved before the option existed had no pair term: loading its config must not add
    one (today's default is zbl)."""
    saved = {k: v for k, v in ModelConfig().to_dict().items() if k != "pair_repulsion"}
    assert ModelConfig.from_saved(saved).pair_repulsion == "none"
    assert ModelConfig().pair_repulsion == "zbl"
    with pytest.raises(ValueError, match="pair_repulsion"):
        ModelConfig(pair_repulsion="lj")
