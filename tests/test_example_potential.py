"""The shipped example potential: loads, reproduces its recorded validation metrics, runs MD in
ASE and in LAMMPS (one step each; the full demo is `make demo`)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.md.verlet import VelocityVerlet

import mlff
from mlff.model import ModelConfig
from mlff.modelfile import model_from_file
from mlff.evaluation import error_metrics, predict_frames
from mlff.lammps.mpi import lammps_env
from mlff.testing import edit_model_file, evaluate
from mlff.train import load_config
from mlff.train.prepare import load_datasets

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "examples" / "potentials" / "cu"
MODEL = FOLDER / "model.pt"


def test_loads_with_its_metadata():
    model = mlff.load(MODEL)
    assert model.species == ["Cu"]
    assert model.metadata.config == {**model.metadata.config, "r_cut": 4.5, "dtype": "float32"}
    assert MODEL.stat().st_size < 5e6


def _as_saved_before(model_file: Path, path: Path) -> Path:
    """A copy of ``model_file`` whose config lacks the options added since the first files
    (``ModelConfig.SAVED_BEFORE``), as the config of a file written then."""
    def without_newer_options(data: bytes) -> bytes:
        config = json.loads(data)
        assert {key: config.pop(key) for key in ModelConfig.SAVED_BEFORE} == ModelConfig.SAVED_BEFORE
        return json.dumps(config, sort_keys=True).encode()

    return edit_model_file(model_file, path, {"config.json": without_newer_options})


def test_rebuilds_with_the_options_it_was_saved_with(tmp_path):
    """A file from before `radial_species` and `pair_repulsion` (no such keys in its config, as
    this potential was until its re-export) rebuilds with the distance-only radial MLP and no
    repulsion it was trained with, not with today's defaults, and predicts the same."""
    older = _as_saved_before(MODEL, tmp_path / "older.pt")
    model = mlff.load(older)
    assert "radial_species" not in model.metadata.config and "pair_repulsion" not in model.metadata.config
    rebuilt = model_from_file(older)
    assert rebuilt.config.radial_species is False and rebuilt.config.pair_repulsion == "none"
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=1)
    first = evaluate(rebuilt, atoms)
    atoms.calc = mlff.MLFFCalculator(MODEL)
    np.testing.assert_allclose(first["energy"], atoms.get_potential_energy(), rtol=1e-6)
    np.testing.assert_allclose(first["forces"], atoms.get_forces(), atol=1e-5)


def test_matches_recorded_validation_metrics():
    _, valid, _ = load_datasets(load_config(FOLDER / "train.yaml"))
    metrics = error_metrics(valid, predict_frames(MODEL, valid))
    recorded = json.loads((FOLDER / "evaluation.json").read_text())
    best = json.loads((FOLDER / "training_summary.json").read_text())["best_metrics"]
    assert recorded["frames"] == len(valid) == 30
    for key in ("energy_mae", "energy_rmse", "forces_mae", "forces_rmse", "stress_mae", "stress_rmse"):
        assert metrics[key] == pytest.approx(recorded[key], rel=1e-5), key  # float32: thread-count rounding
        assert metrics[key] == pytest.approx(best[key], rel=1e-3), key  # float32 model, other batching
    assert metrics["forces_mae"] < 30.0  # meV/Å


def test_one_md_step_in_ase():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=0)
    atoms.calc = mlff.MLFFCalculator(MODEL)
    e0 = atoms.get_total_energy()
    VelocityVerlet(atoms, timestep=1 * units.fs).run(1)
    assert np.isfinite(atoms.get_forces()).all()
    assert abs(atoms.get_total_energy() - e0) < 1e-3


def test_one_md_step_in_lammps(plugin, tmp_path):
    cmd = [os.path.join(os.path.dirname(sys.executable), "lmp"), "-in", str(ROOT / "examples" / "md" / "in.nvt"),
           "-var", "model", str(MODEL), "-var", "reps", "2", "-var", "steps", "1", "-log", "none"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=dict(lammps_env(), OMP_NUM_THREADS="1"),
                         cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "mlff: atom type 1 -> Cu" in res.stdout and "Loop time" in res.stdout


def test_isolated_atom():
    """The shipped file carries the current model code: no edges gives zero forces (a stale
    export raised an autograd error here)."""
    from ase import Atoms

    atoms = Atoms("Cu", positions=[[0.0, 0.0, 0.0]])
    atoms.calc = mlff.MLFFCalculator(MODEL)
    assert np.isfinite(atoms.get_potential_energy())
    assert np.all(atoms.get_forces() == 0)


def _lmp(args, cwd):
    cmd = [os.path.join(os.path.dirname(sys.executable), "lmp"), *args, "-log", "none", "-nocite"]
    return subprocess.run(cmd, capture_output=True, text=True, env=dict(lammps_env(), OMP_NUM_THREADS="1"),
                          cwd=cwd, timeout=600)


@pytest.mark.parametrize("deck", ["in.nvt", "in.npt", "in.melt_quench"])
def test_decks_find_the_example_model_from_their_folder_and_the_root(plugin, tmp_path, deck):
    """Without -var model a deck runs from examples/md and from the repository root, and anywhere
    else stops with an error that says to pass -var model."""
    small = ["-var", "reps", "2", "-var", "steps", "10", "-var", "trajectory", str(tmp_path / "t.lammpstrj")]
    for where in (ROOT / "examples" / "md", ROOT):
        res = _lmp(["-in", str(ROOT / "examples" / "md" / deck), *small], cwd=where)
        assert res.returncode == 0 and "Loop time" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]
    res = _lmp(["-in", str(ROOT / "examples" / "md" / deck), *small], cwd=tmp_path)
    assert res.returncode != 0 and "pass -var model path/to/model.pt" in res.stdout + res.stderr


def test_melt_quench_reaches_its_temperatures(plugin, tmp_path):
    """in.melt_quench does what its header says: the liquid hold averages 2000 K and the final hold
    300 K (second halves of the holds; 108 atoms, so within the fluctuations of a small box)."""
    res = _lmp(["-in", str(ROOT / "examples" / "md" / "in.melt_quench"), "-var", "model", str(MODEL),
                "-var", "reps", "3"], cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    means = {m[0]: float(m[1]) for m in re.findall(r"stage (\w+): mean T (\d+) K", res.stdout)}
    assert abs(means["hold"] - 2000.0) < 0.1 * 2000.0 and abs(means["cold"] - 300.0) < 0.15 * 300.0, means
    assert (tmp_path / "melt_quench.lammpstrj").stat().st_size > 0
