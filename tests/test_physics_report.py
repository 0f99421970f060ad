"""The physics report (mlff.physics, `mlff physics`): properties that hold whatever the potential,
a reference compared with itself, and the shipped Cu potential against EMT, its reference."""

import json
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from mlff.cli.main import main as mlff_main
from mlff.physics import compare, crystal_properties, parse_crystal, stacking_fault_energy

SHIPPED_CU = str(Path(__file__).resolve().parents[1] / "examples" / "potentials" / "cu" / "model.pt")


@pytest.fixture(scope="module")
def emt_cu():
    return crystal_properties(bulk("Cu", "fcc", a=3.62, cubic=True), EMT(), phonons=("G", "X"))


def test_equation_of_state_and_elastic_constants_agree(emt_cu):
    """Two independent routes to the bulk modulus of a cubic crystal, B = (C11 + 2 C12) / 3: the
    energy-volume fit and the stresses under strain."""
    b_from_elastic = (emt_cu["C11"] + 2 * emt_cu["C12"]) / 3
    assert emt_cu["bulk_modulus"] == pytest.approx(b_from_elastic, rel=0.01)
    assert 3.5 < emt_cu["lattice_constant"] < 3.7 and emt_cu["C44"] > 0
    # started away from equilibrium (3.62 Å), the fit finds the same lattice constant as from near it
    again = crystal_properties(bulk("Cu", "fcc", a=3.59, cubic=True), EMT(), elastic=False)
    assert again["lattice_constant"] == pytest.approx(emt_cu["lattice_constant"], abs=2e-3)


def test_a_start_far_from_equilibrium_moves_the_scan(emt_cu):
    """A cell 6 % off in the lattice constant (the scan spans +-1.3 %): the scan moves to the
    minimum and fits the same lattice constant and bulk modulus as a start near it."""
    from mlff.physics import equation_of_state

    far = equation_of_state(bulk("Cu", "fcc", a=3.82, cubic=True), EMT(), relax=False)
    assert far["lattice_constant"] == pytest.approx(emt_cu["lattice_constant"], abs=2e-3)
    assert far["bulk_modulus"] == pytest.approx(emt_cu["bulk_modulus"], rel=0.01)
    assert min(far["curve"]["volume"]) <= far["volume"] <= max(far["curve"]["volume"])


def test_no_minimum_is_a_clear_error():
    """A purely repulsive potential has no equilibrium: the scan stops with the reason."""
    from ase.calculators.lj import LennardJones

    from mlff.physics import equation_of_state

    repulsive = LennardJones(sigma=3.0, epsilon=1.0, rc=6.0)  # fcc at a = 3.6: far inside the wall
    with pytest.raises(ValueError, match="no minimum near this cell"):
        equation_of_state(bulk("Cu", "fcc", a=3.0, cubic=True), repulsive, relax=False, recentre=1)


def test_phonons_have_three_acoustic_zeros_at_gamma(emt_cu):
    gamma, x = emt_cu["phonons"]["G"], emt_cu["phonons"]["X"]
    assert len(gamma) == len(x) == 12  # 4 atoms x 3
    assert np.max(np.abs(gamma[:3])) < 0.05 and min(gamma[3:]) > 1.0
    assert min(x) > 1.0


def test_progress_counts_every_calculation():
    """The progress hook is called once per relaxation or calculation and ends at its total."""
    calls = []
    crystal_properties(bulk("Cu", "fcc", a=3.6, cubic=True), EMT(), phonons=("G",),
                       progress=lambda done, total, what: calls.append((done, total, what)))
    assert [c[0] for c in calls] == list(range(1, len(calls) + 1))
    assert {c[1] for c in calls} == {len(calls)} and len(calls) == 9 + 1 + 4 + 1
    assert calls[0][2] == "volume 1/9" and calls[-1][2] == "phonons"
    calls.clear()        # no elastic constants for a non-cubic cell, no relaxation when asked
    crystal_properties(bulk("Cu", "fcc", a=3.6), EMT(), relax=False,
                       progress=lambda done, total, what: calls.append((done, total, what)))
    assert len(calls) == calls[-1][1] == 9


def test_the_cli_shows_progress_on_a_terminal_only(tmp_path):
    import os
    import sys

    from terminal import stderr_on_a_terminal

    from mlff.testing import run_cli

    cmd = [sys.executable, "-m", "mlff.cli.main", "physics", SHIPPED_CU, "Cu:fcc:3.6", "--reference", "emt"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    piped = run_cli(cmd[3:])  # stderr is not a terminal
    assert piped.returncode == 0 and "step" not in piped.stderr and "C11" in piped.stdout
    shown = stderr_on_a_terminal(cmd, env)
    assert b"Cu:fcc:3.6, model" in shown and b"Cu:fcc:3.6, reference" in shown and b"/14 " in shown


def test_a_reference_compared_with_itself_is_exact(emt_cu):
    rows = compare(emt_cu, emt_cu)
    assert set(rows) >= {"lattice_constant", "energy", "bulk_modulus", "C11", "C12", "C44", "phonons G", "phonons X"}
    assert all(row["difference"] == 0.0 for row in rows.values())


def test_the_shipped_potential_against_emt_through_the_cli(tmp_path, capsys):
    """The example potential was fitted to EMT data: its crystal must be EMT's within a few per cent;
    the JSON it writes serves as --reference-values (the form in which DFT references are stored)."""
    out = tmp_path / "cu.json"
    assert mlff_main(["physics", SHIPPED_CU, "Cu:fcc:3.6", "--reference", "emt", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "lattice_constant" in table and "C44" in table
    record = json.loads(out.read_text())["crystals"][0]
    rows = record["comparison"]
    for key, tolerance in (("lattice_constant", 0.01), ("bulk_modulus", 0.05), ("C11", 0.05), ("C12", 0.05),
                           ("C44", 0.05)):
        assert abs(rows[key]["relative"]) < tolerance, (key, rows[key])
    assert abs(rows["energy"]["difference"]) < 20.0  # meV/atom
    # stored reference values (a DFT run saved as JSON) instead of a reference calculator
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps({"crystals": [{"formula": "Cu4", "reference": record["reference"]}]}))
    assert mlff_main(["physics", SHIPPED_CU, "Cu:fcc:3.6", "--reference-values", str(reference),
                      "--json", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())["crystals"][0]["comparison"]
    assert again["C11"]["difference"] == pytest.approx(rows["C11"]["difference"], abs=1e-6)


def test_bad_crystals_are_clear_errors():
    with pytest.raises(ValueError, match="write NAME:STRUCTURE:A"):
        parse_crystal("Cu-fcc")
    with pytest.raises(ValueError, match="crystal 'Cu:zincblende:3.6'"):
        parse_crystal("Cu:zincblende:3.6")
    with pytest.raises(ValueError, match="write NAME:STRUCTURE:A"):
        parse_crystal("Cu:fcc:3.6:3.6")  # c only for hexagonal structures
    with pytest.raises(ValueError, match="crystal 'Mg:hcp:3.2:x'"):
        parse_crystal("Mg:hcp:3.2:x")


def test_phase_energies_rank_crystals_of_one_composition():
    """fcc Cu lies below bcc Cu (EMT); energies are relative to each composition's lowest, and a
    reference compared with itself differs by zero. A composition with one crystal has no rows."""
    from mlff.physics import phase_energies, phase_table

    records = []
    for text in ("Cu:fcc:3.6", "Cu:bcc:2.87", "Ni:fcc:3.52"):
        atoms = parse_crystal(text)
        props = crystal_properties(atoms, EMT(), elastic=False)
        records.append({"crystal": text, "formula": props["formula"], "model": props, "reference": props})
    phases = phase_energies(records)
    assert list(phases) == ["Cu"]  # Cu4 and Cu2 share a composition; Ni has one crystal
    rows = phases["Cu"]
    assert rows["Cu:fcc:3.6"]["model"] == 0.0 and rows["Cu:bcc:2.87"]["model"] > 5.0
    assert all(row["difference"] == 0.0 for row in rows.values())
    assert "Cu:bcc:2.87" in phase_table(phases)
    records[1] = {k: v for k, v in records[1].items() if k != "reference"}
    assert phase_energies(records)["Cu"]["Cu:bcc:2.87"]["reference"] is None  # reference missing: no comparison


def test_physics_figures_are_written(tmp_path):
    out = tmp_path / "figures"
    assert mlff_main(["physics", SHIPPED_CU, "Cu:fcc:3.6", "--reference", "emt", "--plot", str(out)]) == 0
    figures = sorted(p.name for p in out.iterdir())
    assert figures == ["physics_Cu_fcc_3.6.png"] and (out / figures[0]).stat().st_size > 10_000


def test_hexagonal_crystals_relax_c_over_a_and_get_five_elastic_constants():
    """hcp (EMT Cu) started at c/a 1.57 and at 1.69 relaxes to one c/a, lattice constant and energy;
    its five elastic constants agree with two independent routes: the bulk modulus of the
    energy-volume fit (shape relaxed at each volume) is the Reuss bound
    ((C11 + C12) C33 - 2 C13^2) / (C11 + C12 + 2 C33 - 4 C13), and an xy shear gives C66 =
    (C11 - C12) / 2 (isotropy in the basal plane, so the cell's axes are where the code assumes)."""
    from mlff.physics import lattice_kind
    from mlff.physics.crystal import _stress_derivatives

    low, high = (crystal_properties(parse_crystal(text), EMT()) for text in ("Cu:hcp:2.55:4.0", "Cu:hcp:2.55:4.3"))
    assert high["c_over_a"] == pytest.approx(low["c_over_a"], abs=1e-3)
    assert 1.5 < low["c_over_a"] < 1.75 and abs(low["c_over_a"] - 4.0 / 2.55) > 0.03  # it moved
    assert high["lattice_constant"] == pytest.approx(low["lattice_constant"], abs=1e-3)
    assert high["energy"] == pytest.approx(low["energy"], abs=2e-5)
    c11, c12, c13, c33 = (low[k] for k in ("C11", "C12", "C13", "C33"))
    reuss = ((c11 + c12) * c33 - 2 * c13 ** 2) / (c11 + c12 + 2 * c33 - 4 * c13)
    assert low["bulk_modulus"] == pytest.approx(reuss, rel=5e-3) and low["C44"] > 0
    atoms = parse_crystal("Cu:hcp:2.55:4.0")
    atoms.set_cell(np.asarray(low["cell"]), scale_atoms=True)
    assert lattice_kind(atoms) == "hexagonal"
    c66 = _stress_derivatives(atoms, EMT(), ("xy",), 0.005, True, 1e-3, lambda what: None)["xy"][0, 1]
    assert c66 == pytest.approx((c11 - c12) / 2, rel=1e-2)
    # with the shape held (no relaxation) the bad start stays where it was, higher in energy
    fixed = crystal_properties(parse_crystal("Cu:hcp:2.55:4.0"), EMT(), elastic=False, relax=False)
    assert fixed["c_over_a"] == pytest.approx(4.0 / 2.55, abs=1e-9) and fixed["energy"] > low["energy"] + 1e-3


def test_hcp_in_the_report_beside_fcc_and_the_reference_matched_by_structure(tmp_path, capsys):
    """`mlff physics` with fcc and hcp Cu against EMT: hcp gets c/a and its elastic constants and a
    row in the phase table. Stored reference values match by structure: a bcc record (Cu2, like
    hcp) is not hcp's reference, and the message says so. Phonons are skipped for hcp, with a note."""
    out = tmp_path / "cu.json"
    assert mlff_main(["physics", SHIPPED_CU, "Cu:fcc:3.6", "Cu:hcp:2.55", "--reference", "emt",
                      "--stacking-fault", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "c_over_a" in printed and "C33" in printed and "Cu:hcp:2.55" in printed.split("energy above the lowest")[1]
    assert "no stacking fault energy" not in printed  # fcc's and hcp's (basal I2) both computed
    document = json.loads(out.read_text())
    fcc = document["crystals"][0]["comparison"]["stacking_fault"]
    assert fcc["reference"] == pytest.approx(-5.39, abs=0.05)  # EMT's (see the test above)
    assert abs(fcc["difference"]) < 10.0  # mJ/m^2: the shipped potential (l_max 1) was fitted to EMT
    hcp = document["crystals"][1]["comparison"]
    for key in ("c_over_a", "C11", "C12", "C13", "C33", "C44"):
        assert abs(hcp[key]["relative"]) < 0.1, (key, hcp[key])
    a = document["crystals"][1]["reference"]["lattice_constant"]
    c = a * document["crystals"][1]["reference"]["c_over_a"]
    assert hcp["stacking_fault"]["reference"] == pytest.approx(
        stacking_fault_energy("Cu", a, EMT(), lattice="hcp", c=c), abs=0.05)
    assert abs(document["phases"]["Cu"]["Cu:hcp:2.55"]["difference"]) < 5.0  # meV/atom
    # a stored bcc reference (two atoms, as hcp) must not be taken for hcp's
    bcc = crystal_properties(parse_crystal("Cu:bcc:2.87"), EMT(), elastic=False)
    stored = tmp_path / "reference.json"
    stored.write_text(json.dumps({"crystals": [{"crystal": "Cu:bcc:2.87", "formula": "Cu2", "reference": bcc}]}))
    supercell = tmp_path / "cu8.extxyz"  # fcc, but not its conventional cell: no faults, said
    bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1, 1, 2)).write(supercell)
    assert mlff_main(["physics", SHIPPED_CU, "Cu:hcp:2.55", str(supercell), "--reference-values", str(stored),
                      "--phonons", "--stacking-fault"]) == 0
    printed = capsys.readouterr().out
    assert f"{supercell}: no stacking fault energy (computed for fcc, hcp and bcc elements)" in printed
    assert "no reference for Cu2 of this structure" in printed
    assert "Cu:hcp:2.55: no phonons" in printed  # the cubic high-symmetry points: said, not an error
    from mlff.physics import read_reference

    assert read_reference(str(stored), "Cu2", "Cu:bcc:2.9")["volume"] == bcc["volume"]
    assert read_reference(str(stored), "Cu2", "Cu:hcp:2.55") is None
    unnamed = tmp_path / "unnamed.json"  # a record without a name matches by formula, and the report says so
    unnamed.write_text(json.dumps({"crystals": [{"formula": "Cu2", "reference": bcc}]}))
    assert read_reference(str(unnamed), "Cu2", "Cu:hcp:2.55")["matched_by"] == "formula"
    assert mlff_main(["physics", SHIPPED_CU, "Cu:hcp:2.55", "--reference-values", str(unnamed)]) == 0
    printed = capsys.readouterr().out
    assert "names no crystal, so it was matched by formula alone" in printed
    assert "no reference value for: c_over_a" in printed and " C33 " in printed  # computed, not dropped


def test_stacking_fault_energy_of_a_periodic_column_is_the_hcp_estimate():
    """The intrinsic stacking fault (two planes in hcp stacking) costs twice hcp's energy above
    fcc per (111) area when planes interact only with near neighbours (ANNNI's first term), which
    holds for EMT copper: the faulted column's energy against that estimate from the two bulk
    crystals, computed independently. A twin (one hcp plane) would give half. 12 and 24 planes
    agree (the faults do not see each other)."""
    from mlff.physics import is_fcc_element, stacking_fault_energy

    fcc = crystal_properties(parse_crystal("Cu:fcc:3.6"), EMT(), elastic=False)
    hcp = crystal_properties(parse_crystal("Cu:hcp:2.54"), EMT(), elastic=False)
    a0 = fcc["lattice_constant"]
    estimate = 2 * (hcp["energy"] - fcc["energy"]) / (np.sqrt(3) / 4 * a0 ** 2) * 16021.766
    column = stacking_fault_energy("Cu", a0, EMT())
    assert abs(estimate) > 2.0 and column == pytest.approx(estimate, rel=0.02)
    assert stacking_fault_energy("Cu", a0, EMT(), layers=24) == pytest.approx(column, abs=0.05)
    with pytest.raises(ValueError, match="multiple of 3"):
        stacking_fault_energy("Cu", a0, EMT(), layers=10)
    assert is_fcc_element(parse_crystal("Cu:fcc:3.6")) and not is_fcc_element(parse_crystal("Cu:bcc:2.87"))
    assert not is_fcc_element(parse_crystal("NaCl:rocksalt:5.64")) and not is_fcc_element(parse_crystal("Cu:hcp:2.54"))
    with pytest.raises(ValueError, match="fcc, hcp and bcc elements"):
        crystal_properties(parse_crystal("Cu:sc:2.4"), EMT(), stacking_fault=True)


def test_basal_stacking_fault_of_hcp_is_the_fcc_estimate():
    """hcp's basal I2 fault (...ABABCACA...) puts two planes in fcc stacking: twice fcc's energy
    above hcp per (0001) area, to ANNNI's first term, in EMT copper (where hcp lies just below
    fcc), whatever the column's height; crystal_properties computes it at hcp's own equilibrium."""
    fcc = crystal_properties(parse_crystal("Cu:fcc:3.6"), EMT(), elastic=False)
    hcp = crystal_properties(parse_crystal("Cu:hcp:2.54"), EMT(), elastic=False, stacking_fault=True)
    a, c = hcp["lattice_constant"], hcp["lattice_constant"] * hcp["c_over_a"]
    estimate = 2 * (fcc["energy"] - hcp["energy"]) / (np.sqrt(3) / 2 * a ** 2) * 16021.766
    column = stacking_fault_energy("Cu", a, EMT(), lattice="hcp", c=c)
    assert estimate > 2.0 and column == pytest.approx(estimate, rel=0.02)
    assert hcp["stacking_fault"] == pytest.approx(column, abs=0.05)
    assert stacking_fault_energy("Cu", a, EMT(), lattice="hcp", c=c, layers=24) == pytest.approx(column, abs=0.05)
    with pytest.raises(ValueError, match="multiple of 2"):
        stacking_fault_energy("Cu", a, EMT(), lattice="hcp", c=c, layers=9)
    with pytest.raises(ValueError, match="fcc and hcp elements"):
        stacking_fault_energy("Cu", 2.87, EMT(), lattice="bcc")


def test_unstable_stacking_fault_is_the_top_of_the_slip_curve():
    """The generalized stacking fault curve of EMT copper starts at zero and ends, one partial
    on, at the intrinsic fault (fcc) or I2 fault (hcp) computed with all ions relaxed; bcc's
    (110) [111] curve returns to zero after a full Burgers vector and is symmetric about half-way.
    The unstable fault found from four points is the top of a scan every 2.5 % of the slip, to
    0.1 mJ/m^2; crystal_properties reports both faults."""
    from mlff.physics import stacking_fault_curve, unstable_stacking_fault_energy

    c = 2.54 * np.sqrt(8.0 / 3.0)
    for lattice, a, extra in (("fcc", 3.59, {}), ("hcp", 2.54, {"c": c}), ("bcc", 2.87, {})):
        ends = stacking_fault_curve("Cu", lattice, a, EMT(), [0.0, 1.0], **extra)
        assert ends[0] == pytest.approx(0.0, abs=1e-9)
        if lattice == "bcc":
            assert ends[1] == pytest.approx(0.0, abs=1e-9)
            assert np.allclose(stacking_fault_curve("Cu", lattice, a, EMT(), [0.3, 0.45]),
                               stacking_fault_curve("Cu", lattice, a, EMT(), [0.7, 0.55]), atol=1e-6)
        else:
            assert ends[1] == pytest.approx(stacking_fault_energy("Cu", a, EMT(), lattice=lattice, **extra), abs=0.01)
        scan = stacking_fault_curve("Cu", lattice, a, EMT(), np.arange(0.3, 0.71, 0.025), **extra)
        unstable = unstable_stacking_fault_energy("Cu", lattice, a, EMT(), **extra)
        assert unstable > max(ends) + 100.0
        assert unstable == pytest.approx(max(scan), abs=0.1) and unstable >= max(scan) - 1e-6
    calls = []
    fcc = crystal_properties(parse_crystal("Cu:fcc:3.6"), EMT(), elastic=False, stacking_fault=True,
                             progress=lambda done, total, what: calls.append((done, total, what)))
    assert fcc["unstable_stacking_fault"] > fcc["stacking_fault"] + 100.0
    assert calls[-1][0] == calls[-1][1] and [what for *_, what in calls[-2:]] == ["stacking fault",
                                                                                   "unstable stacking fault"]
    bcc = crystal_properties(parse_crystal("Cu:bcc:2.87"), EMT(), elastic=False, stacking_fault=True)
    assert "stacking_fault" not in bcc and bcc["unstable_stacking_fault"] > 100.0
