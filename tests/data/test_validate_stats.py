import numpy as np
import pytest
from ase import Atoms

from mlff.data.readers import Frame
from mlff.data.stats import average_num_neighbors, energy_shifts, force_rms
from mlff.data.validate import DataValidationError, validate_frames


def _frame(symbols="CuCuO", energy=-1.0, forces=True, positions=None, source="data.xyz:3"):
    n = len(Atoms(symbols))
    positions = positions if positions is not None else np.arange(3 * n).reshape(n, 3) * 1.1
    atoms = Atoms(symbols, positions=positions)
    return Frame(atoms, energy, np.zeros((n, 3)) if forces else None, None, source)


@pytest.mark.parametrize("frame,pattern", [
    (_frame(energy=None), r"data.xyz:3: no energy label"),
    (_frame(forces=False), r"data.xyz:3: no forces label"),
    (_frame(energy=float("nan")), r"data.xyz:3: energy contains NaN"),
    (_frame(positions=np.zeros((3, 3)) + [[0, 0, 0], [0.2, 0, 0], [3, 0, 0]]), r"data.xyz:3: atoms 0 and 1 are 0.200 Å apart"),
    (_frame("CuZnO"), r"data.xyz:3: element\(s\) \['Zn'\] not in the model's species"),
])
def test_validation_errors_name_the_frame(frame, pattern):
    with pytest.raises(DataValidationError, match=pattern):
        validate_frames([_frame(source="data.xyz:0"), frame], species=["Cu", "O"])


def test_valid_frames_pass():
    validate_frames([_frame(), _frame("CuO")], species=["Cu", "O"])


def test_a_cell_no_neighbour_search_takes_names_the_frame():
    frame = _frame()
    frame.atoms.cell = [[float("nan"), 0, 0], [0, 5, 0], [0, 0, 5]]
    frame.atoms.pbc = True
    for min_distance in (0.5, 0.0):
        with pytest.raises(DataValidationError, match=r"data.xyz:3: the cell contains NaN or inf"):
            validate_frames([frame], species=["Cu", "O"], min_distance=min_distance)


def test_min_distance_at_any_value_and_zero_disables_it():
    """The overlap check searches at least 1.5 Å and keeps the shortest pair: a min_distance above
    that still finds pairs just below it, periodic images included; 0 disables the check (as the
    option's error message says), where it used to stop in the neighbour search."""
    pair = _frame("Cu2", positions=np.array([[0.0, 0, 0], [1.9, 0, 0]]))
    with pytest.raises(DataValidationError, match=r"atoms 0 and 1 are 1.900 Å apart \(< min_distance 2.0"):
        validate_frames([pair], species=["Cu"], min_distance=2.0)
    validate_frames([pair], species=["Cu"], min_distance=1.8)
    image = _frame("Cu", positions=np.zeros((1, 3)))
    image.atoms.cell, image.atoms.pbc = np.diag([1.7, 8.0, 8.0]), True
    with pytest.raises(DataValidationError, match=r"atom 0 is 1.700 Å from its own periodic image"):
        validate_frames([image], species=["Cu"], min_distance=1.75)
    validate_frames([image], species=["Cu"], min_distance=1.65)
    overlapping = _frame("Cu2", positions=np.zeros((2, 3)))
    with pytest.raises(DataValidationError, match="atoms 0 and 1 are 0.000 Å apart"):
        validate_frames([overlapping], species=["Cu"])
    validate_frames([overlapping], species=["Cu"], min_distance=0.0)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match=r"must be >= 0 \(0 disables the check\), got"):
            validate_frames([overlapping], species=["Cu"], min_distance=bad)


def test_conversion_refuses_a_negative_min_distance_before_reading(tmp_path):
    from mlff.data.store import convert

    (tmp_path / "frames.extxyz").write_text("not read")
    with pytest.raises(ValueError, match=r"min_distance is a distance in Å and must be >= 0 \(0 disables the check\), "
                                         r"got -0.5"):
        convert([tmp_path / "frames.extxyz"], tmp_path / "out.db", min_distance=-0.5)
    assert not (tmp_path / "out.db").exists()


def test_least_squares_shifts_recover_per_species_energies():
    rng = np.random.default_rng(0)
    true = {"Cu": -3.7, "O": -1.9}
    frames = []
    for _ in range(6):
        n_cu, n_o = rng.integers(1, 5, size=2)
        symbols = "Cu" * n_cu + "O" * n_o
        frames.append(_frame(symbols, energy=n_cu * true["Cu"] + n_o * true["O"]))
    np.testing.assert_allclose(energy_shifts(frames, ["Cu", "O"]), [-3.7, -1.9], atol=1e-10)
    np.testing.assert_allclose(energy_shifts(frames, ["Cu", "O"], {"Cu": 1.0, "O": 2.0}), [1.0, 2.0])
    with pytest.raises(ValueError, match=r"no isolated-atom energy for \['O'\]"):
        energy_shifts(frames, ["Cu", "O"], {"Cu": 1.0})


def test_force_rms_and_neighbours():
    frame = _frame()
    frame.forces[:] = [[3.0, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert force_rms([frame]) == pytest.approx(1.0)
    dimer = Frame(Atoms("Cu2", positions=[[0, 0, 0], [2, 0, 0]]), 0.0, np.zeros((2, 3)), None, "x")
    assert average_num_neighbors([dimer], 3.0) == pytest.approx(1.0)


def test_neighbours_counted_on_the_graphs_equal_a_count_of_their_own():
    """Training counts the neighbours on the graphs it builds anyway (one neighbour search per
    frame, not two): the same number as a search of its own, for cells, a slab and a molecule."""
    from ase.build import bulk, fcc111, molecule

    from mlff.data.dataset import to_atomic_data

    rattled = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
    rattled.rattle(0.1, seed=1)
    structures = [rattled, bulk("Cu", "hcp", a=2.55), fcc111("Cu", (2, 2, 3), vacuum=5.0), molecule("H2O")]
    frames = [Frame(a, 0.0, np.zeros((len(a), 3)), None, f"x:{k}") for k, a in enumerate(structures)]
    for r_cut in (3.0, 5.5):
        graphs = to_atomic_data(frames, ["H", "O", "Cu"], r_cut)
        counted = average_num_neighbors(frames, r_cut, graphs)
        assert counted == average_num_neighbors(frames, r_cut) and counted > 1.0


@pytest.mark.parametrize("name", ["cu_emt", "ethanol_xtb", "water_pyscf", "al_gpaw", "al_gpaw_k5", "almgsi_gpaw",
                                  "almgsi_gpaw_k5", "si_gpaw", "mgo_gpaw", "ethanol_pyscf"])
def test_shipped_datasets_are_valid(name):
    """Every committed reference set reads with its labels and passes the training checks."""
    from pathlib import Path

    from mlff.data.readers import read_frames

    path = Path(__file__).resolve().parents[2] / "datasets" / f"{name}.extxyz"
    frames = read_frames(str(path))
    species = sorted({s for f in frames for s in f.atoms.get_chemical_symbols()})
    validate_frames(frames, species, need_forces=True, min_distance=0.5)
    assert all(np.isfinite(f.energy) for f in frames)
    if name.startswith("al_gpaw"):
        assert len(frames) == 336 and species == ["Al"]
        assert all(f.stress is not None for f in frames)  # periodic in all directions, slabs included
    if name.startswith("almgsi_gpaw"):
        assert len(frames) == 300 and species == ["Al", "Mg", "Si"]
        assert all(f.stress is not None for f in frames)
        from ase.io import read

        kinds = {atoms.info["config_type"] for atoms in read(path, ":")}
        assert {"mg2si", "vacancy", "slab111", "si_slab100", "hcp_mg"} <= kinds
    if name == "si_gpaw":  # the ground state is in the data, beside distortions and other phases
        assert species == ["Si"] and all(f.stress is not None for f in frames)
        assert {f.atoms.info["config_type"] for f in frames} >= {"diamond_ground", "diamond8_hot", "beta_tin"}
        lowest = min(frames, key=lambda f: f.energy / len(f.atoms))
        assert lowest.atoms.info["config_type"].startswith("diamond")
    if name == "mgo_gpaw":  # rocksalt is the ground state; the other structures lie above it
        assert species == ["Mg", "O"] and all(f.stress is not None for f in frames)
        kinds = {f.atoms.info["config_type"] for f in frames}
        assert kinds >= {"rocksalt_ground", "schottky", "cscl", "zincblende", "wurtzite"}
        lowest = min(frames, key=lambda f: f.energy / len(f.atoms))
        assert lowest.atoms.info["config_type"].startswith("rocksalt")
    if name == "ethanol_pyscf":  # frame 0 is the DFT minimum: the lowest energy, forces below 1 meV/Å
        assert species == ["C", "H", "O"] and all(f.dipole is not None for f in frames)
        assert np.abs(frames[0].forces).max() < 1e-3
        assert frames[0].energy == min(f.energy for f in frames)


# MgO's two bulk moduli differ by 7 % (155.5 and 145.2 GPa; Si's by 0.1 %). The likely cause: at
# 600 eV the plane-wave basis is not complete for oxygen (the stress still moved by 30 meV/Å^3
# from 600 to 750 eV), and the stresses (C11, C12) and the energy-volume curve (B) feel that
# differently (the Pulay stress). A model fitted to both labels is compared with both. Al at
# k-point density 5: 77.7 and 76.5 GPa (its 2.5 file has no elastic constants: noise there).
@pytest.mark.parametrize("name, tolerance", [("si_gpaw", 0.01), ("mgo_gpaw", 0.08), ("al_gpaw_k5", 0.02)])
def test_stored_dft_references_are_consistent(name, tolerance):
    """The physical reference stored beside a DFT set: the bulk modulus of its energy-volume fit
    equals (C11 + 2 C12) / 3 of its strained cells (two different calculations of one quantity),
    and the lattice constant is the minimum of its stored E-V curve."""
    from pathlib import Path

    from mlff.physics import read_reference

    formula = {"si_gpaw": "Si8", "mgo_gpaw": "Mg4O4", "al_gpaw_k5": "Al4"}[name]
    path = Path(__file__).resolve().parents[2] / "datasets" / f"{name}_reference.json"
    reference = read_reference(str(path), formula)
    assert reference is not None, f"{path} has no record for {formula}"
    from_elastic = (reference["C11"] + 2.0 * reference["C12"]) / 3.0
    assert reference["bulk_modulus"] == pytest.approx(from_elastic, rel=tolerance)
    assert reference["C44"] > 0 and reference["C11"] > reference["C12"] > 0  # mechanically stable
    curve = reference["curve"]
    lowest = int(np.argmin(curve["energy"]))
    assert 0 < lowest < len(curve["energy"]) - 1  # the fitted minimum lies inside the sampled volumes
    assert min(curve["volume"]) < reference["volume"] < max(curve["volume"])


@pytest.mark.parametrize("name, generator", [("al_gpaw", "al_gpaw"), ("al_gpaw_k5", "al_gpaw"),
                                             ("almgsi_gpaw", "almgsi_gpaw"),
                                             ("almgsi_gpaw_k5", "almgsi_gpaw"), ("si_gpaw", "si_gpaw"),
                                             ("mgo_gpaw", "mgo_gpaw")])
def test_dft_generators_build_the_committed_structures(name, generator, monkeypatch):
    """datasets/generate_<generator>.py is the script that made the file: frame i's structure is
    structure(i) (labelling needs GPAW and is not rerun here; the two Al and the two Al-Mg-Si
    files are the same structures labelled with k-point densities of 2.5 and 5)."""
    import importlib
    from pathlib import Path

    from ase.io import read

    folder = Path(__file__).resolve().parents[2] / "datasets"
    monkeypatch.syspath_prepend(str(folder))
    generator = importlib.import_module(f"generate_{generator}")
    frames = read(folder / f"{name}.extxyz", ":")
    for ref in frames[::7]:
        atoms, kind = generator.structure(int(ref.info["index"]))
        assert kind == ref.info["config_type"]
        assert atoms.get_chemical_symbols() == ref.get_chemical_symbols()
        np.testing.assert_allclose(atoms.positions, ref.positions, atol=1e-6)
        np.testing.assert_allclose(atoms.cell.array, ref.cell.array, atol=1e-6)


def test_ethanol_generator_builds_the_committed_geometries(monkeypatch):
    """datasets/generate_ethanol_pyscf.py made the file: the displaced minima from frame 0, the MD
    frames from ethanol_xtb.extxyz (labelling needs PySCF and is not rerun here)."""
    import importlib
    from pathlib import Path

    from ase.io import read

    folder = Path(__file__).resolve().parents[2] / "datasets"
    monkeypatch.syspath_prepend(str(folder))
    generator = importlib.import_module("generate_ethanol_pyscf")
    frames = read(folder / "ethanol_pyscf.extxyz", ":")
    md = read(folder / "ethanol_xtb.extxyz", ":")
    for ref in frames[::9]:
        atoms, kind = generator.structure(int(ref.info["index"]), frames[0], md)
        assert kind == ref.info["config_type"]
        np.testing.assert_allclose(atoms.positions, ref.positions, atol=1e-6)


def test_the_data_summary_line_is_short():
    """The training log's data line: energies to the meV, forces to 0.01 eV/Å (not 17 digits)."""
    from ase.build import bulk

    from mlff.data.readers import Frame, describe, summary_line

    atoms = bulk("Cu", "fcc", a=3.6)
    frames = [Frame(atoms, -3.712345678901, np.full((1, 3), 0.123456789), None, "a:0"),
              Frame(atoms, -3.5, np.zeros((1, 3)), None, "a:1")]
    assert summary_line(describe(frames)) == "elements {'Cu': 2}, energy/atom -3.712 to -3.500 eV, max |F| 0.12 eV/Å"
