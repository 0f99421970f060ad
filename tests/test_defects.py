"""Defect energies (mlff.physics.defects, `mlff physics --defects`): exact bond counting for a
pair potential (fcc, bcc, hcp), relaxation and convergence with EMT, the vacancy's migration
energies against a climbing-image NEB (fcc, and hcp's two hops), and the report through the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.neighborlist import neighbor_list

from mlff.cli.main import main as mlff_main
from mlff.physics import (FACETS, UnstableCrystal, compare, crystal_properties, cubic_element, element_lattice,
                          mechanical_instability, parse_crystal, plane_column, relax, surface_energy,
                          vacancy_energies, vacancy_hop, vacancy_hops, vacancy_supercell)
from mlff.physics.defects import MJ_PER_M2
from mlff.testing import hop_neb_barrier

SHIPPED_CU = str(Path(__file__).resolve().parents[1] / "examples" / "potentials" / "cu" / "model.pt")


def _bond(calc, distance):
    """The pair energy at ``distance``, from a dimer in a box far larger than the cutoff."""
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [distance, 0, 0]], cell=[30, 30, 30], pbc=True)
    dimer.calc = calc
    return dimer.get_potential_energy()


@pytest.mark.parametrize("lattice", ["fcc", "bcc"])
def test_unrelaxed_defects_of_a_nearest_neighbour_pair_potential_count_broken_bonds(lattice):
    """With pair bonds phi between nearest neighbours only (a Lennard-Jones cutoff between the
    first and second shells), an unrelaxed vacancy costs z/2 bonds, -E_bulk per atom, and a
    surface costs half a bond per broken bond per area: fcc (111) breaks 3 bonds per surface
    atom, (100) 4; bcc (110) 2, (100) 4. Computed here from the bond energy of a dimer, apart
    from the code under test."""
    a = 5.26 if lattice == "fcc" else 4.2
    nearest = a / np.sqrt(2) if lattice == "fcc" else a * np.sqrt(3) / 2
    calc = LennardJones(sigma=3.4, epsilon=0.0104, rc=0.5 * (nearest + a), smooth=False)
    phi = _bond(calc, nearest)
    coordination = 12 if lattice == "fcc" else 8
    cell = bulk("Ar", lattice, a=a, cubic=True)
    assert cubic_element(cell) == lattice
    vacancy = vacancy_energies(cell, calc, relax=False)
    assert vacancy["vacancy_sites"] == len(cell) * 8  # each cell vector repeated to at least 8 Å
    assert vacancy["vacancy"] == pytest.approx(-coordination / 2 * phi, rel=1e-9)
    assert vacancy["vacancy_migration"] == pytest.approx(_unrelaxed_hop(cell, calc, phi, nearest, coordination),
                                                         rel=1e-9)
    broken = {("fcc", "111"): 3, ("fcc", "100"): 4, ("bcc", "110"): 2, ("bcc", "100"): 4}
    area = {("fcc", "111"): np.sqrt(3) / 2 * nearest ** 2, ("fcc", "100"): nearest ** 2,
            ("bcc", "110"): a * a / np.sqrt(2), ("bcc", "100"): a * a}
    for facet in FACETS[lattice]:
        expected = -broken[lattice, facet] * phi / (2 * area[lattice, facet]) * MJ_PER_M2
        assert surface_energy("Ar", lattice, facet, a, calc, relax=False) == pytest.approx(expected, rel=1e-9)


def _unrelaxed_hop(cell, calc, phi, nearest, coordination, basal=None):
    """The unrelaxed saddle of a pair potential's nearest-neighbour hop: the hopping atom half-way
    along the bond keeps the bonds to the sites within the cutoff of that point, and loses its
    z - 1 bonds. ``basal``: in hcp, a hop within the basal plane (True) or out of it (False)."""
    sites = cell.repeat(5).get_positions()
    origin = sites[np.argmin(np.linalg.norm(sites - 2 * cell.cell.sum(axis=0), axis=1))]  # a site in the middle
    distances = np.linalg.norm(sites - origin, axis=1)
    candidates = np.isclose(distances, nearest)
    if basal is not None:
        candidates &= np.isclose(sites[:, 2], origin[2]) == basal
    neighbour = sites[np.flatnonzero(candidates)[0]]
    half_way = np.linalg.norm(sites - 0.5 * (origin + neighbour), axis=1)
    kept = half_way[(half_way > 1e-6) & (half_way < calc.parameters.rc) & ~np.isclose(half_way, nearest / 2)]
    return sum(_bond(calc, r) for r in kept) - (coordination - 1) * phi


def _bonds_across(column, cutoff):
    """How many bonds (pairs closer than ``cutoff``) cross each plane half-way between two
    neighbouring planes of the periodic ``column`` (layers along z): what cutting it there breaks."""
    i, j, vectors = neighbor_list("ijD", column, cutoff)
    height = column.cell[2, 2]
    planes = np.sort(column.positions[:, 2])
    counts = []
    for cut in 0.5 * (planes + np.append(planes[1:], planes[0] + height)):
        lower, upper = column.positions[i, 2], column.positions[i, 2] + vectors[:, 2]
        upward = vectors[:, 2] > 0  # each bond once, from its lower atom
        crossed = np.floor((upper - cut) / height) - np.floor((lower - cut) / height)
        counts.append(int(crossed[upward].sum()))
    return counts


def test_unrelaxed_defects_of_hcp_count_broken_bonds():
    """hcp at the ideal c/a with nearest-neighbour pair bonds: the vacancy costs 6 bonds; the two
    hops (within the basal plane and out of it) keep the bonds of their half-way points; (0001)
    breaks 3 bonds per surface atom, and (10-10) is cut where the fewest bonds cross (between the
    pairs of closely spaced planes: 6 per a x c, not 8)."""
    a = 3.8
    c = a * np.sqrt(8.0 / 3.0)
    calc = LennardJones(sigma=3.4, epsilon=0.0104, rc=0.5 * (a + a * np.sqrt(2)), smooth=False)
    phi = _bond(calc, a)
    cell = bulk("Ar", "hcp", a=a, c=c)
    assert element_lattice(cell) == "hcp" and cubic_element(cell) is None
    vacancy = vacancy_energies(cell, calc, relax=False)
    assert vacancy["vacancy"] == pytest.approx(-6 * phi, rel=1e-9)
    for name, basal in (("vacancy_migration_basal", True), ("vacancy_migration_out_of_basal", False)):
        assert vacancy[name] == pytest.approx(_unrelaxed_hop(cell, calc, phi, a, 12, basal), rel=1e-9)
    assert surface_energy("Ar", "hcp", "0001", a, calc, relax=False, c=c) \
        == pytest.approx(-3 * phi / (2 * np.sqrt(3) / 2 * a * a) * MJ_PER_M2, rel=1e-9)
    prism = plane_column("Ar", "hcp", "10-10", a, 6, c)
    counts = _bonds_across(prism, calc.parameters.rc)
    assert sorted(set(counts)) == [6, 8]
    area = float(np.linalg.norm(np.cross(prism.cell[0], prism.cell[1])))
    assert area == pytest.approx(a * c)
    assert surface_energy("Ar", "hcp", "10-10", a, calc, relax=False, c=c) \
        == pytest.approx(-6 * phi / (2 * area) * MJ_PER_M2, rel=1e-9)
    assert _bonds_across(plane_column("Ar", "hcp", "0001", a, 6, c), calc.parameters.rc) == [3] * 6


def test_relaxed_defects_with_emt_lie_below_unrelaxed_and_converge_with_size():
    """Relaxing the ions lowers a vacancy's and a surface's energy (by a little, in copper); a
    larger supercell and a thicker slab change them by less than the tolerance of a comparison
    with DFT (EMT is short-ranged)."""
    cell = bulk("Cu", "fcc", a=3.59, cubic=True)
    relaxed = vacancy_energies(cell, EMT())
    unrelaxed = vacancy_energies(cell, EMT(), relax=False)
    assert 0 < relaxed["vacancy"] < unrelaxed["vacancy"] < relaxed["vacancy"] + 0.2
    larger = vacancy_energies(cell, EMT(), repeat=(3, 3, 3))
    assert larger["vacancy_sites"] == 108 and larger["vacancy"] == pytest.approx(relaxed["vacancy"], abs=0.02)
    for facet in ("111", "100"):
        six = surface_energy("Cu", "fcc", facet, 3.59, EMT())
        assert 0 < six < surface_energy("Cu", "fcc", facet, 3.59, EMT(), relax=False)
        assert surface_energy("Cu", "fcc", facet, 3.59, EMT(), layers=12) == pytest.approx(six, rel=0.01)


def test_vacancy_migration_is_the_saddle_of_a_climbing_image_neb():
    """The half-way point of the hop, the others relaxed, is the top of the minimum-energy path a
    climbing-image NEB finds (its middle image), to a few meV, in fcc aluminium (EMT: bcc is
    unstable in EMT's metals, whose relaxations wander); relaxing lowers the barrier."""
    cell = bulk("Al", "fcc", a=4.05, cubic=True)
    relaxed = vacancy_energies(cell, EMT())
    barrier, top = hop_neb_barrier(cell, EMT)
    assert top == 3
    assert relaxed["vacancy_migration"] == pytest.approx(barrier, abs=1e-3)
    assert 0.1 < relaxed["vacancy_migration"] < vacancy_energies(cell, EMT(), relax=False)["vacancy_migration"]
    assert "vacancy_migration" not in vacancy_energies(cell, EMT(), relax=False, migration=False)


def test_hcp_vacancy_migration_within_and_out_of_the_basal_plane_are_neb_saddles():
    """hcp copper in EMT: each of the two hops' barriers equals a climbing-image NEB's (the top at
    its middle image) to 1 meV, and they differ. Out of the basal plane the hopping atom stays
    half-way (inversion); within it, it relaxes sideways, off the straight line, on its plane."""
    cell = bulk("Cu", "hcp", a=2.55, c=2.55 * np.sqrt(8.0 / 3.0))
    values = vacancy_energies(cell, EMT())
    perfect = cell.repeat(vacancy_supercell(cell))
    hops = vacancy_hops(perfect, "hcp")
    assert set(hops) == {"vacancy_migration_basal", "vacancy_migration_out_of_basal"}
    for name, hop in hops.items():
        barrier, top = hop_neb_barrier(cell, EMT, hop)
        assert top == 3
        assert values[name] == pytest.approx(barrier, abs=1e-3)
        _, saddle = vacancy_hop(perfect, hop)
        half_way = saddle.positions[hop].copy()
        saddle.calc = EMT()
        relax(saddle, 1e-3)
        vector = perfect.get_distance(0, hop + 1, mic=True, vector=True)
        moved = saddle.positions[hop] - half_way
        assert abs(moved @ vector) < 1e-9  # on the plane normal to the hop
        assert (np.linalg.norm(moved) > 0.05) == (name == "vacancy_migration_basal")
    assert abs(values["vacancy_migration_basal"] - values["vacancy_migration_out_of_basal"]) > 0.02


def test_mechanical_instability_is_borns_criterion():
    """Cubic: unstable exactly when C11 - C12, C11 + 2 C12 or C44 is not positive, the lowest of
    them named; hexagonal: also when 2 C13^2 >= C33 (C11 + C12)."""
    copper = {"C11": 172.6, "C12": 115.4, "C44": 89.96}
    assert mechanical_instability(copper) is None
    for constants, lowest in (({"C11": 43.3, "C12": 84.6, "C44": 41.4}, 43.3 - 84.6),
                              ({"C11": 100.0, "C12": -60.0, "C44": 30.0}, 100.0 - 120.0),
                              ({"C11": 100.0, "C12": 50.0, "C44": -3.0}, -3.0)):
        reason = mechanical_instability(constants)
        assert reason.startswith("mechanically unstable") and f"{lowest:.1f} GPa" in reason
    magnesium = {"C11": 59.4, "C12": 25.6, "C13": 21.4, "C33": 61.6, "C44": 16.4}
    assert mechanical_instability(magnesium) is None
    assert mechanical_instability({**magnesium, "C13": 55.0}) is not None  # 2 C13^2 > C33 (C11 + C12)
    assert mechanical_instability({**magnesium, "C12": 60.0}) is not None  # C66 = (C11 - C12) / 2 < 0


def test_unstable_crystals_get_no_defect_energies():
    """bcc copper in EMT has C11 < C12: its defect energies are skipped, saying why (before, a
    vacancy energy came out, of a lattice that would shear away). Where the elastic constants
    are not computed, atoms leaving their sites (simple cubic copper) or a hop's half-way point
    relaxing below the vacancy (bcc aluminium in EMT) raise UnstableCrystal."""
    calls = []
    bcc = crystal_properties(bulk("Cu", "bcc", a=2.87, cubic=True), EMT(), defects=True,
                             progress=lambda done, total, what: calls.append((done, total)))
    assert bcc["C11"] < bcc["C12"] and "vacancy" not in bcc
    assert bcc["defects_skipped"].startswith("mechanically unstable")
    assert calls[-1][0] == calls[-1][1]
    with pytest.raises(UnstableCrystal, match="moved an atom .* of the nearest-neighbour distance"):
        vacancy_energies(bulk("Cu", "sc", a=2.4), EMT())
    with pytest.raises(UnstableCrystal, match="no saddle"):
        vacancy_energies(bulk("Al", "bcc", a=3.24, cubic=True), EMT())
    assert crystal_properties(bulk("Cu", "sc", a=2.4), EMT(), elastic=False, defects=True)["defects_skipped"]


def test_bad_defect_requests_are_clear_errors():
    with pytest.raises(ValueError, match="multiple of 3 layers"):
        surface_energy("Cu", "fcc", "111", 3.6, EMT(), layers=4)
    with pytest.raises(ValueError, match="surface energies are computed for the facets"):
        surface_energy("Fe", "bcc", "111", 2.87, EMT())
    with pytest.raises(ValueError, match="element crystals"):
        vacancy_energies(parse_crystal("NaCl:rocksalt:5.64"), EMT())
    with pytest.raises(ValueError, match="element crystals"):
        crystal_properties(parse_crystal("NaCl:rocksalt:5.64"), EMT(), defects=True)
    assert cubic_element(parse_crystal("NaCl:rocksalt:5.64")) is None
    hcp = parse_crystal("Cu:hcp:2.55")
    assert cubic_element(hcp) is None and element_lattice(hcp) == "hcp"
    assert element_lattice(parse_crystal("ZnO:wurtzite:3.25:5.21")) is None
    assert element_lattice(bulk("Cu", "hcp", a=2.55).repeat((1, 1, 2))) is None  # not the two-atom cell
    with pytest.raises(ValueError, match="needs c besides a"):
        surface_energy("Mg", "hcp", "0001", 3.21, EMT())


def test_vacancies_of_different_supercells_are_not_compared():
    model = {"vacancy": 1.0, "vacancy_sites": 32, "vacancy_migration": 0.5, "surface_111": 700.0}
    assert set(compare(model, {"vacancy": 1.1, "vacancy_sites": 32, "vacancy_migration": 0.6, "surface_111": 650.0})) \
        == {"vacancy", "vacancy_migration", "surface_111"}
    assert set(compare(model, {"vacancy": 1.1, "vacancy_sites": 108, "vacancy_migration": 0.6})) == set()
    assert set(compare(model, {"vacancy": 1.1})) == {"vacancy"}  # a reference that does not say: compared


def test_defects_in_the_report_through_the_cli(tmp_path, capsys):
    """`mlff physics --defects`: the vacancy, its migration and both fcc surfaces beside EMT's, the
    values in the JSON equal to EMT's computed directly at the reference's lattice constant; hcp
    gets its vacancy, its two hops and its two surfaces. The progress counts the defect steps."""
    out = tmp_path / "cu.json"
    assert mlff_main(["physics", SHIPPED_CU, "Cu:fcc:3.6", "Cu:hcp:2.55", "--reference", "emt", "--defects",
                      "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "surface_111" in printed and "vacancy" in printed
    record, hcp = json.loads(out.read_text())["crystals"]
    hops = ("vacancy_migration_basal", "vacancy_migration_out_of_basal")
    assert {"vacancy", *hops, "surface_0001", "surface_10-10"} <= set(hcp["comparison"])
    assert "vacancy_migration" not in hcp["model"] and "surface_111" not in hcp["model"]
    assert "out-of-basal migration" in printed or "vacancy_migration_out_of_basal" in printed
    a, c = hcp["reference"]["lattice_constant"], hcp["reference"]["lattice_constant"] * hcp["reference"]["c_over_a"]
    direct = vacancy_energies(bulk("Cu", "hcp", a=a, c=c), EMT())
    for key in hops:
        assert hcp["comparison"][key]["reference"] == pytest.approx(direct[key], abs=2e-3)
    assert hcp["comparison"]["surface_0001"]["reference"] \
        == pytest.approx(surface_energy("Cu", "hcp", "0001", a, EMT(), c=c), rel=1e-3)
    rows = record["comparison"]
    assert {"vacancy", "vacancy_migration", "surface_111", "surface_100"} <= set(rows)
    a0 = record["reference"]["lattice_constant"]
    assert rows["surface_111"]["reference"] == pytest.approx(surface_energy("Cu", "fcc", "111", a0, EMT()), rel=1e-6)
    direct = vacancy_energies(bulk("Cu", "fcc", a=a0, cubic=True), EMT())
    assert rows["vacancy"]["reference"] == pytest.approx(direct["vacancy"], abs=1e-3)
    assert rows["vacancy_migration"]["reference"] == pytest.approx(direct["vacancy_migration"], abs=1e-3)
    # the shipped potential was fitted to EMT copper's bulk, strained and rattled cells: its
    # defects are extrapolations, reported, not asserted close
    assert np.isfinite([rows[k]["model"] for k in ("vacancy", "vacancy_migration", "surface_111", "surface_100")]).all()
    calls = []
    crystal_properties(bulk("Cu", "fcc", a=3.6, cubic=True), EMT(), elastic=False, relax=False, defects=True,
                       progress=lambda done, total, what: calls.append((done, total, what)))
    assert len(calls) == calls[-1][1] == 9 + 4 and calls[-1][2] == "surface (100)"
    assert [what for _, _, what in calls[9:11]] == ["vacancy", "vacancy migration"]
