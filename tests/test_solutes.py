"""Solutes in element crystals (mlff.physics.solutes, `mlff physics --solutes`): exact bond
counting for a nearest-neighbour pair potential of two species (substitution, binding to a
vacancy, the unrelaxed exchange barrier), the relaxed exchange barrier against a climbing-image
NEB, solution energies and the report through the CLI."""

import json
import re

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.neighborlist import neighbor_list

from mlff.cli.main import main as mlff_main
from mlff.physics import (add_solution_energies, compare, crystal_properties, solute_energies, solute_keys,
                          vacancy_energies, vacancy_supercell)
from mlff.testing import hop_neb_barrier


class PairPotential(Calculator):
    """Lennard-Jones bonds up to ``rc`` (no shift), with a well depth per pair of species
    (``epsilon[frozenset((a, b))]``, symbols): the energy only."""

    implemented_properties = ["energy"]

    def __init__(self, epsilon, sigma=3.4, rc=6.0):
        super().__init__()
        self.epsilon, self.sigma, self.rc = epsilon, sigma, rc

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        i, j, d = neighbor_list("ijd", self.atoms, self.rc)
        symbols = np.array(self.atoms.get_chemical_symbols())
        depth = np.array([self.epsilon[frozenset((a, b))] for a, b in zip(symbols[i], symbols[j])])
        s6 = (self.sigma / d) ** 6
        self.results["energy"] = float(0.5 * np.sum(4.0 * depth * (s6 * s6 - s6)))  # each pair twice


def _bond(calc, a, b, distance):
    dimer = Atoms([a, b], positions=[[0, 0, 0], [distance, 0, 0]], cell=[30, 30, 30], pbc=True)
    dimer.calc = calc
    return dimer.get_potential_energy()


@pytest.mark.parametrize("lattice", ["fcc", "bcc"])
def test_unrelaxed_solutes_of_a_nearest_neighbour_pair_potential_count_bonds(lattice):
    """Bonds phi_AA and phi_AX between nearest neighbours only: X on a site replaces z bonds, so
    the substitution costs z phi_AX - z/2 phi_AA; next to a vacancy X loses one of its bonds
    instead of a host atom's, so the pair is bound by phi_AX - phi_AA; half-way into the vacancy
    X keeps the bonds to the sites within the cutoff of that point (phi_AX at their distance)
    and loses its z - 1 bonds. Computed here from dimers, apart from the code under test; X
    weaker (bound) and X stronger (repelled) than the host's bond."""
    a = 5.26 if lattice == "fcc" else 4.2
    nearest = a / np.sqrt(2) if lattice == "fcc" else a * np.sqrt(3) / 2
    rc = 0.5 * (nearest + a)
    z = 12 if lattice == "fcc" else 8
    cell = bulk("Ar", lattice, a=a, cubic=True)
    sites = cell.repeat(5).get_positions()
    origin = sites[np.argmin(np.linalg.norm(sites - 2 * cell.cell.sum(axis=0), axis=1))]
    distances = np.linalg.norm(sites - origin, axis=1)
    neighbour = sites[np.flatnonzero(np.isclose(distances, nearest))[0]]
    half_way = np.linalg.norm(sites - 0.5 * (origin + neighbour), axis=1)
    kept = half_way[(half_way > 1e-6) & (half_way < rc) & ~np.isclose(half_way, nearest / 2)]
    for depth in (0.006, 0.02):
        calc = PairPotential({frozenset(("Ar",)): 0.0104, frozenset(("Ar", "Kr")): depth}, rc=rc)
        host, solute = _bond(calc, "Ar", "Ar", nearest), _bond(calc, "Ar", "Kr", nearest)
        values = solute_energies(cell, ["Kr"], calc, relax=False)
        assert values["solute_sites"] == len(cell) * 8
        assert values["substitution_Kr"] == pytest.approx(z * solute - z / 2 * host, rel=1e-9)
        assert values["solute_vacancy_binding_Kr"] == pytest.approx(solute - host, rel=1e-9)
        barrier = sum(_bond(calc, "Ar", "Kr", r) for r in kept) - (z - 1) * solute
        assert values["solute_migration_Kr"] == pytest.approx(barrier, rel=1e-9)
        assert (values["solute_vacancy_binding_Kr"] > 0) == (depth < 0.0104)


def test_a_solute_like_the_host_is_the_host():
    """A 'solute' with the host's own bonds: no binding, no solution energy, the substitution is
    the host's energy per atom and the exchange barrier the vacancy's own migration energy
    (hcp: both hops)."""
    epsilon = {frozenset(("Ar",)): 0.0104, frozenset(("Ar", "Kr")): 0.0104, frozenset(("Kr",)): 0.0104}
    calc = PairPotential(epsilon, rc=6.0)
    for cell in (bulk("Ar", "fcc", a=5.26, cubic=True), bulk("Ar", "hcp", a=3.72, c=3.72 * np.sqrt(8 / 3))):
        values = solute_energies(cell, ["Kr"], calc, relax=False)
        vacancy = vacancy_energies(cell, calc, relax=False)
        assert set(values) == {"solute_sites"} | set(solute_keys(cell, "Kr")[1:])
        for name in (k for k in vacancy if k.startswith("vacancy_migration")):
            suffix = name[len("vacancy_migration"):]
            assert values[f"solute_vacancy_binding{suffix}_Kr"] == pytest.approx(0.0, abs=1e-10)
            assert values[f"solute_migration{suffix}_Kr"] == pytest.approx(vacancy[name], rel=1e-9)
        bulk_cell = cell.repeat(vacancy_supercell(cell))
        bulk_cell.calc = calc
        assert values["substitution_Kr"] == pytest.approx(bulk_cell.get_potential_energy() / len(bulk_cell), rel=1e-9)


def test_solute_exchange_is_the_saddle_of_a_climbing_image_neb():
    """Copper in EMT aluminium: the exchange barrier with the solute held half-way equals a
    climbing-image NEB's top (its middle image) to 1 meV, and differs from aluminium's own hop;
    relaxing lowers it. Binding and substitution match the cells computed directly."""
    cell = bulk("Al", "fcc", a=4.05, cubic=True)
    values = solute_energies(cell, ["Cu"], EMT())
    barrier, top = hop_neb_barrier(cell, EMT, solute="Cu")
    assert top == 3
    assert values["solute_migration_Cu"] == pytest.approx(barrier, abs=1e-3)
    host = vacancy_energies(cell, EMT())["vacancy_migration"]
    assert abs(values["solute_migration_Cu"] - host) > 0.05
    unrelaxed = solute_energies(cell, ["Cu"], EMT(), relax=False)
    assert 0.1 < values["solute_migration_Cu"] < unrelaxed["solute_migration_Cu"]
    assert "solute_migration_Cu" not in solute_energies(cell, ["Cu"], EMT(), relax=False, migration=False)


def test_bad_solutes_are_clear_errors():
    cell = bulk("Al", "fcc", a=4.05, cubic=True)
    with pytest.raises(ValueError, match="not an element symbol"):
        solute_energies(cell, ["Xx"], EMT())
    with pytest.raises(ValueError, match="host crystal's own element"):
        solute_energies(cell, ["Al"], EMT())
    with pytest.raises(ValueError, match="element crystals"):
        solute_energies(bulk("NaCl", "rocksalt", a=5.6, cubic=True), ["K"], EMT())


def test_solution_energies_from_the_solutes_lowest_crystal():
    """The solution energy is the substitution less the solute's lowest crystal's energy per
    atom, for the model and the reference each from its own numbers; the comparison is redone,
    solute energies of other supercells are not compared, and a solute without its crystal is
    named."""
    records = [{"crystal": "Al:fcc:4.05", "formula": "Al4",
                "model": {"energy": -3.0, "substitution_Cu": -3.2, "substitution_Ni": -4.0, "solute_sites": 32},
                "reference": {"energy": -3.1, "substitution_Cu": -3.5, "solute_sites": 32}},
               {"crystal": "Cu:fcc:3.6", "formula": "Cu4", "model": {"energy": -3.5}, "reference": {"energy": -3.7}},
               {"crystal": "Cu:bcc:2.9", "formula": "Cu2", "model": {"energy": -3.4}, "reference": {"energy": -3.9}}]
    missing = add_solution_energies(records)
    assert missing == [("Al:fcc:4.05", "Ni")]
    rows = records[0]["comparison"]
    assert rows["solution_Cu"]["model"] == pytest.approx(-3.2 + 3.5)
    assert rows["solution_Cu"]["reference"] == pytest.approx(-3.5 + 3.9)  # the reference's lowest: bcc
    assert rows["solution_Cu"]["relative"] is None
    other = dict(records[0]["reference"], solute_sites=108)
    assert "substitution_Cu" not in compare(records[0]["model"], other)


def test_solutes_in_the_report_through_the_cli(tmp_path, capsys, monkeypatch):
    """`mlff physics --solutes` (EMT standing in for the model file, against EMT's values from a
    JSON with known offsets): the solute rows beside the reference's, the solution energy from
    the solute's crystal among the CRYSTALs, and crystals that get no solutes (the solute's own,
    a compound) said so. A solute the model does not know is an error before any computing."""
    import mlff.calculators

    class FakeModel(EMT):
        class model:
            species = ["Al", "Cu"]

    monkeypatch.setattr(mlff.calculators, "MLFFCalculator", lambda path, device="cpu": FakeModel())
    options = dict(elastic=False, relax=True)
    al = crystal_properties(bulk("Al", "fcc", a=4.05, cubic=True), EMT(), solutes=["Cu"], **options)
    cu = crystal_properties(bulk("Cu", "fcc", a=3.6, cubic=True), EMT(), **options)
    offsets = {"substitution_Cu": 0.05, "solute_vacancy_binding_Cu": -0.01, "solute_migration_Cu": 0.1}
    reference = dict(al, **{key: al[key] + offset for key, offset in offsets.items()})
    values = tmp_path / "ref.json"
    values.write_text(json.dumps([{"crystal": "Al:fcc:4.05", "formula": "Al4", "reference": reference},
                                  {"crystal": "Cu:fcc:3.6", "formula": "Cu4", "reference": cu}]))
    out = tmp_path / "report.json"
    assert mlff_main(["physics", "model.pt", "Al:fcc:4.05", "Cu:fcc:3.6", "--solutes", "Cu",
                      "--reference-values", str(values), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "solution energies" in printed and "solute_migration_Cu" in printed
    host, solute = json.loads(out.read_text())["crystals"]
    for key, offset in offsets.items():
        assert host["comparison"][key]["difference"] == pytest.approx(-offset, abs=1e-9)
    assert host["model"]["substitution_Cu"] == pytest.approx(al["substitution_Cu"], abs=1e-9)
    assert host["comparison"]["solution_Cu"]["model"] == pytest.approx(al["substitution_Cu"] - cu["energy"], abs=1e-9)
    assert host["comparison"]["solution_Cu"]["difference"] == pytest.approx(-0.05, abs=1e-9)
    assert not any(key.startswith("solute_") for key in solute["model"])
    assert mlff_main(["physics", "model.pt", "Al:fcc:4.05", "--solutes", "Cu"]) == 0
    assert "no solution energy of Cu" in capsys.readouterr().out
    calls = []
    monkeypatch.setattr("mlff.physics.crystal_properties", lambda *a, **k: calls.append(a))
    assert mlff_main(["physics", "model.pt", "Al:fcc:4.05", "--solutes", "Ni"]) == 1
    assert "solute Ni is not among the model's elements ['Al', 'Cu']" in capsys.readouterr().err
    assert not calls


def test_progress_counts_the_solute_steps():
    """The progress hook counts the solute cells; hcp gets both hops."""
    for cell, steps in ((bulk("Al", "fcc", a=4.05, cubic=True), 1 + 3), (bulk("Cu", "hcp", a=2.55), 1 + 5)):
        calls = []
        crystal_properties(cell, EMT(), elastic=False, relax=False, solutes=["Ni"],
                           progress=lambda done, total, what: calls.append((done, total, what)))
        solute_calls = [what for _, _, what in calls if not what.startswith("volume")]  # the scan may move
        assert len(solute_calls) == steps and calls[-1][1] == 9 + steps
        assert solute_calls[0] == "host and vacancy" and solute_calls[-1] == "Ni half-way"


def test_defects_and_solutes_share_the_relaxed_host_and_vacancy(monkeypatch):
    """With both --defects and --solutes the perfect supercell and the vacancy are relaxed once,
    and every value is what each gives alone."""
    import mlff.physics.crystal as crystal
    from mlff.physics import vacancy_cells

    made = []
    monkeypatch.setattr(crystal, "vacancy_cells", lambda *a, **k: made.append(1) or vacancy_cells(*a, **k))
    cell = bulk("Al", "fcc", a=4.05, cubic=True)
    both = crystal_properties(cell, EMT(), elastic=False, defects=True, solutes=["Cu"])
    assert len(made) == 1
    equilibrium = cell.copy()
    equilibrium.set_cell(np.asarray(both["cell"]), scale_atoms=True)
    alone = {**vacancy_energies(equilibrium, EMT()), **solute_energies(equilibrium, ["Cu"], EMT())}
    assert set(alone) <= set(both)
    for key, value in alone.items():
        assert both[key] == pytest.approx(value, abs=1e-6), key


def test_a_solute_that_leaves_its_site_is_skipped_alone(monkeypatch):
    """A solute whose cell beside the vacancy relaxes off its site (copper made to jump 1 Å when
    its cell relaxes with the vacancy): its binding and barrier are skipped with the reason, its
    substitution stands, nickel's energies are all there, and the progress still counts every
    step."""
    import mlff.physics.defects as defects
    from mlff.physics.cells import relax as relax_ions

    def relax_jumping(atoms, fmax, *args):
        relax_ions(atoms, fmax, *args)
        if len(atoms) % 2 and "Cu" in atoms.get_chemical_symbols():
            atoms.positions[atoms.get_chemical_symbols().index("Cu")] += 1.0

    monkeypatch.setattr(defects, "relax_ions", relax_jumping)
    cell = bulk("Al", "fcc", a=4.05, cubic=True)
    calls = []
    values = solute_energies(cell, ["Cu", "Ni"], EMT(), step=lambda what: calls.append(what))
    assert "substitution_Cu" in values and "solute_vacancy_binding_Cu" not in values
    assert re.search(r"relaxing Cu beside the vacancy moved an atom 1\.7\d Å", values["solutes_skipped"]["Cu"])
    assert "split vacancy" in values["solutes_skipped"]["Cu"] and "Ni" not in values["solutes_skipped"]
    assert {"substitution_Ni", "solute_vacancy_binding_Ni", "solute_migration_Ni"} <= set(values)
    assert len(calls) == 1 + 2 * 3 and calls[2:4] == ["no Cu energies"] * 2
    with pytest.raises(ValueError, match="fcc, bcc and hcp element crystals"):
        solute_energies(bulk("Si", "diamond", a=5.43, cubic=True), ["Ge"], EMT())


def test_the_stored_al_mg_si_reference_reads_as_mlff_physics_reads_it():
    """datasets/almgsi_gpaw_k5_reference.json: found for the crystals its script names, fcc Al's
    values those of the aluminium set's reference (the same DFT settings), both solutes complete
    in the vacancy's 32-site cell, and their solution energies formed from the stored crystals."""
    from pathlib import Path

    from mlff.physics import read_reference

    folder = Path(__file__).resolve().parents[1] / "datasets"
    path = str(folder / "almgsi_gpaw_k5_reference.json")
    records = [{"crystal": crystal, "formula": formula, "model": read_reference(path, formula, crystal)}
               for crystal, formula in (("Al:fcc:4.04", "Al4"), ("Mg:hcp:3.19:5.18", "Mg2"),
                                        ("Si:diamond:5.47", "Si8"))]
    al = records[0]["model"]
    assert all(record["model"] is not None and "matched_by" not in record["model"] for record in records)
    aluminium = read_reference(str(folder / "al_gpaw_k5_reference.json"), "Al4", "Al:fcc:4.04")
    for key in ("lattice_constant", "energy", "C11", "C44", "vacancy", "vacancy_migration"):
        assert al[key] == aluminium[key]
    assert al["solute_sites"] == al["vacancy_sites"] == 32
    for solute in ("Mg", "Si"):
        assert {f"substitution_{solute}", f"solute_vacancy_binding_{solute}", f"solute_migration_{solute}"} <= set(al)
        assert 0 < al[f"solute_migration_{solute}"] < 1.0 and abs(al[f"solute_vacancy_binding_{solute}"]) < 0.2
    assert add_solution_energies(records) == []
    for solute, record in (("Mg", records[1]), ("Si", records[2])):
        expected = al[f"substitution_{solute}"] - record["model"]["energy"]
        assert al[f"solution_{solute}"] == pytest.approx(expected, abs=1e-12)


def test_the_stored_solute_frames_are_their_generators_structures():
    """datasets/almgsi_gpaw_k5_solute.extxyz: each frame is ``structure(i)`` of its generator (the
    solute beside the vacancy, on its way into it, dilute), labelled with energy, forces and
    stress, one solute per frame."""
    import importlib.util
    import sys
    from pathlib import Path

    from ase.io import read

    folder = Path(__file__).resolve().parents[1] / "datasets"
    sys.path.insert(0, str(folder))  # the generator imports gpaw_labels from its folder
    try:
        spec = importlib.util.spec_from_file_location("solute_frames", folder / "generate_almgsi_solute_gpaw.py")
        generator = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(generator)
    finally:
        sys.path.remove(str(folder))
    frames = read(folder / "almgsi_gpaw_k5_solute.extxyz", ":")
    assert len(frames) == 24
    for index, frame in enumerate(frames):
        atoms, kind = generator.structure(index)
        assert frame.info["config_type"] == kind and frame.get_chemical_symbols() == atoms.get_chemical_symbols()
        assert np.allclose(frame.positions, atoms.positions, atol=1e-6)
        assert np.isfinite(frame.get_potential_energy()) and np.isfinite(frame.get_forces()).all()
        assert frame.get_stress().shape == (6,)
        solute = ("Mg", "Si")[index % 2]
        assert frame.get_chemical_symbols().count(solute) == 1
        assert len(frame) == (32 if kind == "dilute_solute" else 31)
