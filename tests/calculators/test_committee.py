"""Committees of models (ensembles): mean predictions and their spread, in the ASE calculator,
in `mlff evaluate --committee`, and in the active-learning example."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.io import write

import mlff
from mlff.cli.main import main as mlff_main
from mlff.testing import small_molecule, tiny_model, triclinic_cell

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    folder = tmp_path_factory.mktemp("committee")
    return [mlff.deploy(tiny_model(seed=seed), folder / f"m{seed}.pt") for seed in (0, 1, 2)]


def _results(models, atoms):
    atoms = atoms.copy()
    atoms.calc = mlff.MLFFCalculator(models)
    atoms.get_stress()
    return atoms.calc.results


def test_identical_models_have_zero_spread(members):
    atoms = triclinic_cell(2)
    single, pair = _results(members[0], atoms), _results([members[0], members[0]], atoms)
    assert pair["energy_std"] == 0.0 and pair["max_forces_std"] == 0.0
    assert np.all(pair["forces_std"] == 0.0)
    for key in ("energy", "forces", "stress", "energies", "stresses"):
        np.testing.assert_allclose(pair[key], single[key], rtol=0, atol=1e-14)
    assert "forces_std" not in single


def test_committee_mean_and_spread(members):
    atoms = triclinic_cell(2)
    each = [_results(m, atoms) for m in members]
    committee = _results(members, atoms)
    np.testing.assert_allclose(committee["energy"], np.mean([r["energy"] for r in each]), rtol=1e-12)
    np.testing.assert_allclose(committee["stress"], np.mean([r["stress"] for r in each], axis=0), atol=1e-14)
    forces = np.stack([r["forces"] for r in each])
    np.testing.assert_allclose(committee["forces"], forces.mean(axis=0), atol=1e-14)
    expected = np.sqrt(((forces - forces.mean(axis=0)) ** 2).sum(axis=2).mean(axis=0))
    np.testing.assert_allclose(committee["forces_std"], expected, rtol=1e-12)
    assert committee["max_forces_std"] == pytest.approx(expected.max()) and committee["max_forces_std"] > 0
    np.testing.assert_allclose(committee["energy_std"], np.std([r["energy"] for r in each]), rtol=1e-12)


def test_committee_members_must_match(members, tmp_path):
    other = mlff.deploy(tiny_model(species=("Cu", "H")), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="a committee needs models of the same species and cutoff"):
        mlff.MLFFCalculator([members[0], other])


def test_evaluate_reports_the_spread(members, tmp_path):
    frames = []
    for seed in range(4):
        atoms = triclinic_cell(seed)
        atoms.calc = mlff.MLFFCalculator(members[0])  # labels from one member: the committee is off by its spread
        atoms.get_stress()
        frames.append(atoms)
    write(tmp_path / "data.extxyz", frames)
    out = tmp_path / "committee.json"
    assert mlff_main(["evaluate", str(members[0]), str(tmp_path / "data.extxyz"), "--committee", str(members[1]),
                      str(members[2]), "--json", str(out), "--no-plots"]) == 0
    document = json.loads(out.read_text())
    spread = document["committee_spread"]
    assert document["committee"] == [str(m) for m in members]
    assert 0 < spread["max_forces_std_mean"] <= spread["max_forces_std_max"]
    assert -1.0 <= spread["spread_error_rank_correlation"] <= 1.0
    assert len(spread["largest_spread_frames"]) == 4


def test_active_learning_example_flags_frames(members, tmp_path):
    trajectory = tmp_path / "traj.extxyz"
    frames = [small_molecule(seed) for seed in range(6)]
    write(trajectory, frames)
    script = ROOT / "examples" / "active_learning" / "flag_frames.py"

    def run(threshold):
        res = subprocess.run([sys.executable, str(script), "--models", *map(str, members), "--trajectory",
                              str(trajectory), "--threshold", str(threshold), "--out", str(tmp_path / "to_dft.extxyz")],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        return res.stdout

    assert "0 of 6 frames flagged" in run(1e6)
    assert "6 of 6 frames flagged" in run(0.0)
    from ase.io import read

    flagged = read(tmp_path / "to_dft.extxyz", ":")
    assert [a.info["frame"] for a in flagged] == list(range(6)) and all(a.info["max_forces_std"] > 0 for a in flagged)


def test_active_learning_example_runs_md(members, tmp_path):
    write(tmp_path / "start.extxyz", triclinic_cell(3))
    script = ROOT / "examples" / "active_learning" / "flag_frames.py"
    res = subprocess.run([sys.executable, str(script), "--models", *map(str, members), "--structure",
                          str(tmp_path / "start.extxyz"), "--steps", "20", "--interval", "10", "--temperature", "300",
                          "--threshold", "0", "--out", str(tmp_path / "to_dft.extxyz")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "2 of 2 frames flagged" in res.stdout
