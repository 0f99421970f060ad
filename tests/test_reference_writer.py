"""The DFT reference writer of the datasets (datasets/gpaw_labels.py's ``write_reference``), run
with EMT in GPAW's place: its record reads as ``mlff physics`` reads it and holds what
``crystal_properties`` computes with the same calculator; the host's relaxed supercell and vacancy
are made once for the vacancy and every solute; an interrupted run resumes without redoing
what is saved."""

import importlib.util
import json
from pathlib import Path

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

import mlff.physics as physics
from mlff.physics import crystal_properties, read_reference

DATASETS = Path(__file__).resolve().parents[1] / "datasets"


@pytest.fixture()
def writer(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpaw_labels", DATASETS / "gpaw_labels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "calculator", lambda *args, **kwargs: EMT())
    made = []
    relaxed = physics.defects.vacancy_cells
    monkeypatch.setattr(physics, "vacancy_cells", lambda *a, **k: made.append(1) or relaxed(*a, **k))
    return module, made


def _write(module, out, **options):
    module.write_reference("Al:fcc", bulk("Al", "fcc", a=4.05), lambda a: bulk("Al", "fcc", a=a, cubic=True), 4,
                           str(out), **options)


def test_the_reference_writer_relaxes_the_host_once_and_matches_mlff_physics(writer, tmp_path):
    module, made = writer
    out = tmp_path / "reference.json"
    _write(module, out, defects=True, solutes=("Cu", "Ni"))
    assert len(made) == 1  # the vacancy and both solutes from one relaxed host
    record = json.loads(out.read_text())["crystals"][0]
    assert record["crystal"].startswith("Al:fcc:")
    values = record["reference"]
    a0 = values["lattice_constant"]  # EMT's 3.99 Å: 3x3x3 cubic cells, 108 sites
    model = crystal_properties(bulk("Al", "fcc", a=a0, cubic=True), EMT(), elastic=False, defects=True,
                               solutes=["Cu", "Ni"])
    assert values["solute_sites"] == values["vacancy_sites"] == model["vacancy_sites"] == 108
    keys = ["vacancy", "vacancy_migration"] + [f"{prefix}_{solute}" for solute in ("Cu", "Ni") for prefix in
                                                ("substitution", "solute_vacancy_binding", "solute_migration")]
    for key in keys:  # the writer relaxes to 0.01 eV/Å and rounds to 0.1 meV
        assert values[key] == pytest.approx(model[key], abs=3e-3), key
    assert values["surface_111"] == pytest.approx(model["surface_111"], rel=1e-3)
    assert read_reference(str(out), "Al4", f"Al:fcc:{a0}")["vacancy"] == values["vacancy"]

    made.clear()  # a second run finds everything saved: nothing is relaxed again
    before = out.read_text()
    _write(module, out, defects=True, solutes=("Cu", "Ni"))
    assert made == [] and out.read_text() == before
    _write(module, out, defects=True, solutes=("Cu", "Ni", "Pd"))  # a new solute: the host once more
    assert len(made) == 1 and "solute_migration_Pd" in json.loads(out.read_text())["crystals"][0]["reference"]
